"""Which class of a dataset is which output of a model, by canonical name (data/vocabulary.py),
never by label number: RAF-DB's label 1 is Surprise, FER2013's label 1 is Disgust.

A data class the model does not know (Contempt for a RAF-DB model) has no output to be scored
against: ``evaluate`` reports it apart. The two cases where the label sets differ in a way a
rule could bridge are options, never guessed: ``compound_to_basic`` scores a compound class
(Happily Surprised) against a basic model, either component counting as correct;
``restrict_to_data`` (applied in evaluate) makes a model with a class the data lacks (an
8-class model on 7-class data) choose among the data's classes only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.vocabulary import components
from ..errors import DataError


@dataclass(frozen=True)
class ClassMap:
    model_names: list[str]  # the model's outputs, its own spelling
    model_canonical: list[str]
    data_names: list[str]  # the dataset's classes, its own spelling
    data_canonical: list[str]
    to_model: list[int | None]  # data class -> model output of the same meaning, None: unknown
    compound: dict[int, tuple[int, int]]  # data class -> model outputs of its two components

    @property
    def scored(self) -> list[int]:
        """Data classes that count in UAR: the shared ones, then the compounds scored by parts."""
        return [d for d, m in enumerate(self.to_model) if m is not None] + sorted(self.compound)

    @property
    def unknown(self) -> list[int]:
        """Data classes the model cannot be scored on: reported apart, out of every figure."""
        return [d for d, m in enumerate(self.to_model) if m is None and d not in self.compound]

    @property
    def model_shared(self) -> list[bool]:
        """Per model output: whether a data class is that very class (it has a per-class row)."""
        shared = {m for m in self.to_model if m is not None}
        return [i in shared for i in range(len(self.model_names))]

    @property
    def model_in_data(self) -> list[bool]:
        """Per model output: whether any scored data class is scored against it (itself, or a
        compound it is a component of). The others are classes the data lacks."""
        used = {m for m in self.to_model if m is not None} | {i for p in self.compound.values() for i in p}
        return [i in used for i in range(len(self.model_names))]

    def rows(self) -> list[dict]:
        """One row per canonical class on either side, for the report's class table (None: that
        side has no such class; a compound's model side names the components it is scored by)."""
        parts = {i for p in self.compound.values() for i in p}
        rows = []
        for i, (name, canon) in enumerate(zip(self.model_names, self.model_canonical)):
            d = self.to_model.index(i) if i in self.to_model else None
            data = (
                self.data_names[d] if d is not None else ("(a compound's component)" if i in parts else None)
            )
            rows.append({"canonical": canon, "model": name, "data": data})
        for d in sorted(self.compound):
            a, b = (self.model_names[i] for i in self.compound[d])
            rows.append(
                {"canonical": self.data_canonical[d], "model": f"{a} or {b}", "data": self.data_names[d]}
            )
        for d in self.unknown:
            rows.append({"canonical": self.data_canonical[d], "model": None, "data": self.data_names[d]})
        return rows


def build_class_map(
    model_names: list[str],
    model_canonical: list[str],
    data_names: list[str],
    data_canonical: list[str],
    compound_to_basic: bool = False,
) -> ClassMap:
    index = {c: i for i, c in enumerate(model_canonical)}
    to_model = [index.get(c) for c in data_canonical]
    compound: dict[int, tuple[int, int]] = {}
    for d, c in enumerate(data_canonical):
        parts = components(c)
        if compound_to_basic and to_model[d] is None and parts and all(p in index for p in parts):
            compound[d] = (index[parts[0]], index[parts[1]])
    cmap = ClassMap(
        list(model_names), list(model_canonical), list(data_names), list(data_canonical), to_model, compound
    )
    if not cmap.scored:
        raise DataError(_nothing_to_score(cmap, compound_to_basic))
    return cmap


def _nothing_to_score(cmap: ClassMap, compound_to_basic: bool) -> str:
    msg = (
        f"none of the data's classes ({', '.join(cmap.data_names)}) is a class of the model "
        f"({', '.join(cmap.model_names)}), by canonical name: there is nothing to score"
    )
    could = any(
        (p := components(n)) and all(x in cmap.model_canonical for x in p) for n in cmap.data_canonical
    )
    if could and not compound_to_basic:
        return f"{msg}. Its compound classes can be scored by their components: pass --compound-to-basic"
    return f"{msg}; point --data at a dataset with the model's classes"
