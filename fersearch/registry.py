"""One registry per pluggable family (backbones, necks, heads... and dataset layouts), with
timm's verbs.

Each family module builds a ``Registry`` and exposes ``register_x`` / ``list_x`` / ``create_x``
around it, so every family is extended and queried the same way::

    @register_neck("se")
    class SqueezeExcite(nn.Module): ...

    list_necks()            # ['cbam', 'dual', 'eca', 'se', ...]
    create_neck("se", 256)  # an unknown name raises ModelError listing the valid ones

A family whose unknown names are another kind of error says which (``Registry("data format",
error=DataError)``). ``values()`` keeps registration order, for families tried in turn.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from .errors import FersearchError, ModelError


class Registry:
    def __init__(self, family: str, error: type[FersearchError] = ModelError):
        self.family = family
        self.error = error
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        """Decorator: ``@registry.register("name")`` over a class or a builder function (or call
        it on an object: ``registry.register("name")(obj)``)."""

        def wrap(builder):
            if name in self._builders:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return wrap

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise self.error(f"unknown {self.family} {name!r}{hint}; valid: {', '.join(self.names())}")
        return self._builders[name]

    def values(self) -> list[Any]:
        """What was registered, in registration order."""
        return list(self._builders.values())

    def create(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)
