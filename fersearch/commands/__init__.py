"""One module per CLI verb (accelerate-style); importing this package registers them all.

To add a verb: write ``commands/<verb>.py`` with an ``@app.command()`` function that parses
arguments and calls the library, then import it below.
"""

from . import demo, explain, finalize, predict, search, synth  # noqa: F401  (registration by import)
from ._common import app

__all__ = ["app"]
