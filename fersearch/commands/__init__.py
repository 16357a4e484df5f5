"""One module per CLI verb (accelerate-style); importing this package registers them all.

To add a verb: write ``commands/<verb>.py`` with an ``@app.command()`` function that parses
arguments and calls the library, then import it below.
"""

# The imports register the verbs.
from . import data, demo, explain, export_onnx, finalize, predict, search, service, synth  # noqa: F401
from ._common import app

__all__ = ["app"]
