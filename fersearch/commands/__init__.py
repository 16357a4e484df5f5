"""The CLI verbs (accelerate-style), one module per verb or per group of verbs a user runs
together; importing this package registers them all:

    search.py     search (one process: create + worker), worker
    service.py    create, status, dashboard, storage-proxy (a study run as a service)
    data.py       data inspect, data prepare
    finalize.py, evaluate.py, predict.py, explain.py, export_onnx.py, demo.py, synth.py    one verb each
    weights.py    weights list (the pretrained files a space needs, present or missing)

A verb's function parses its arguments and calls the library, nothing else. To add one: an
``@app.command()`` function in the module of its group (or ``commands/<verb>.py``), imported below.
"""

# The imports register the verbs.
from . import data, demo, evaluate, explain, export_onnx, finalize, predict, search, service, synth, weights  # noqa: F401
from ._common import app

__all__ = ["app"]
