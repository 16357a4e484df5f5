"""fersearch.ensemble.cost: a model's predict latency and size on disk, measured for real."""

from __future__ import annotations

import pytest
import torch

from fersearch.config import build_config
from fersearch.ensemble import save_ensemble, size_on_disk, tta
from fersearch.ensemble.cost import measure, size_mib, torch_threads
from fersearch.models import create_model


def _model(backbone: str, size: int = 32):
    config = build_config({"data": {"root": "."}, "backbone": backbone, "image_size": size})
    return create_model(config, 7)


def test_size_is_the_exported_member_file(tmp_path):
    model = _model("test_resnet")
    save_ensemble(tmp_path / "e", [(model, {"id": "m"})], [str(i) for i in range(7)], [1.0])
    member = (tmp_path / "e" / "member_0.safetensors").stat().st_size
    assert size_mib(model) * 2**20 == pytest.approx(member, abs=1024)  # the header, estimated
    assert member < size_on_disk(tmp_path / "e")  # the manifest is not counted


def test_latency_grows_with_views_and_model_size_and_threads_are_restored():
    torch.set_num_threads(2)
    small, big = _model("test_resnet"), _model("resnet18", 64)
    one = measure(small, threads=1, batch=1, views=1, repeats=5)
    assert one.latency_ms > 0 and (one.device, one.threads, one.batch, one.views) == ("cpu", 1, 1, 1)
    assert torch.get_num_threads() == 2  # measured on one thread, then given back
    many = measure(small, threads=1, batch=8, views=4, repeats=5)
    assert measure(small, views=tta.view_set("flip"), repeats=2).views == 2  # a view set's own views
    assert many.latency_ms > one.latency_ms  # 32 images' work against 1
    heavy = measure(big, threads=1, repeats=5)
    assert heavy.latency_ms > one.latency_ms and heavy.size_mib > 10 * one.size_mib
    assert heavy.as_dict()["size_mib"] == round(heavy.size_mib, 3)


def test_torch_threads_restores_after_an_error():
    torch.set_num_threads(2)
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.get_num_threads() == 2


def test_a_model_far_over_the_time_limit_is_timed_once(monkeypatch):
    import fersearch.ensemble.cost as cost

    calls = []
    real = cost.TorchRunner.__call__

    def counted(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(cost.TorchRunner, "__call__", counted)
    far = measure(_model("test_resnet"), repeats=5, stop_above_ms=1e-6)
    assert len(calls) == 2 and far.latency_ms > 1e-6  # the warm-up and one timed call
    calls.clear()
    measure(_model("test_resnet"), repeats=5, stop_above_ms=1e9)
    assert len(calls) == 6
