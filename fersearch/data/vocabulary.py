"""One emotion vocabulary across datasets.

Every layout numbers and spells its classes its own way (RAF-DB 1-7 from Surprise, FER2013 0-6
from Angry, AffectNet 0-7 from Neutral); a model trained on one and scored on another must be
matched by meaning, never by label number. ``canonical`` maps a dataset's spelling to the one
name used everywhere (FER2013's "Angry" and ImageFolder's "angry" are both Anger); the dataset's
own spelling stays its display name. A name this table does not know (an ImageFolder folder
called "calm", RAER's "Confusion") is its own canonical name, matched only by that exact name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

BASIC = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")
CONTEMPT = "Contempt"
# RAF-DB compound's eleven classes and RAF-CE's fourteen, each the blend of two basic emotions.
COMPOUND: dict[str, tuple[str, str]] = {
    "Happily Surprised": ("Happiness", "Surprise"),
    "Happily Disgusted": ("Happiness", "Disgust"),
    "Happily Fearful": ("Happiness", "Fear"),
    "Happily Sad": ("Happiness", "Sadness"),
    "Sadly Fearful": ("Sadness", "Fear"),
    "Sadly Angry": ("Sadness", "Anger"),
    "Sadly Surprised": ("Sadness", "Surprise"),
    "Sadly Disgusted": ("Sadness", "Disgust"),
    "Fearfully Angry": ("Fear", "Anger"),
    "Fearfully Surprised": ("Fear", "Surprise"),
    "Fearfully Disgusted": ("Fear", "Disgust"),
    "Angrily Surprised": ("Anger", "Surprise"),
    "Angrily Disgusted": ("Anger", "Disgust"),
    "Disgustedly Surprised": ("Disgust", "Surprise"),
}
CANONICAL = (*BASIC, CONTEMPT, *COMPOUND)

# Spellings seen in the official layouts and in common ImageFolder exports (FER2013's image
# release, CK+, KDEF folders); matched case-insensitively, '_' and '-' read as spaces.
_SPELLINGS = {
    "Anger": ("anger", "angry"),
    "Disgust": ("disgust", "disgusted"),
    "Fear": ("fear", "fearful", "afraid", "scared"),
    "Happiness": ("happiness", "happy"),
    "Sadness": ("sadness", "sad"),
    "Surprise": ("surprise", "surprised"),
    "Neutral": ("neutral",),
    CONTEMPT: ("contempt", "contemptuous"),
}
_LOOKUP = {spelling: name for name, spellings in _SPELLINGS.items() for spelling in spellings}
_LOOKUP.update({name.lower(): name for name in COMPOUND})


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def canonical(name: str) -> str:
    """The canonical name of a class spelling ("Happy" -> "Happiness"); an unknown spelling is
    returned as it is: it is its own canonical name."""
    return _LOOKUP.get(_key(name), name)


def is_known(name: str) -> bool:
    return _key(name) in _LOOKUP


def components(name: str) -> tuple[str, str] | None:
    """The two basic emotions a compound class blends (canonical names), or None."""
    return COMPOUND.get(canonical(name))


def canonical_names(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical names in the given order. Two spellings of one emotion in one dataset ("happy"
    and "Happiness" folders) would make two classes of one: a ValueError naming both."""
    out: dict[str, str] = {}
    for name in names:
        c = canonical(name)
        if c in out:
            raise ValueError(f"classes {out[c]!r} and {name!r} both mean {c}")
        out[c] = name
    return tuple(out)
