"""fersearch/config.py declares each field once: Python keeps the last of two declarations
silently (a second ``au_loss_weight`` once turned the documented default 0.3 into 1.0)."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import fersearch.config as config_module
from fersearch.config import TrialConfig


def test_no_config_field_is_declared_twice():
    tree = ast.parse(Path(config_module.__file__).read_text())
    twice = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        names = [
            s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
        ]
        repeated = [n for n, c in collections.Counter(names).items() if c > 1]
        if repeated:
            twice[cls.name] = repeated
    assert not twice, f"declared more than once: {twice}"


def test_the_au_loss_weight_default_is_the_documented_one():
    assert TrialConfig.model_fields["au_loss_weight"].default == 0.3
