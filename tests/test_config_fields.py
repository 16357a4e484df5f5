"""fersearch/config.py declares each field once: Python keeps the last of two declarations
silently (a second ``au_loss_weight`` once turned the documented default 0.3 into 1.0), and so
does pydantic when two of TrialConfig's groups declare the same field."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import fersearch.config as config_module
from fersearch.config import FIELD_GROUPS, TrialConfig


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


def test_every_trial_field_is_in_exactly_one_group():
    owners = collections.defaultdict(list)
    for name, group in FIELD_GROUPS.items():
        for field in group.__annotations__:
            if field != "model_config":
                owners[field].append(name)
    twice = {f: groups for f, groups in owners.items() if len(groups) > 1}
    assert not twice, f"fields declared in two groups (pydantic keeps one silently): {twice}"
    assert set(owners) == set(TrialConfig.model_fields) - {"data"}
    # TrialConfig itself adds only the study's data settings
    assert set(TrialConfig.__annotations__) - {"model_config"} == {"data"}
