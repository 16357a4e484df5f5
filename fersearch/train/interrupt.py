"""Graceful stop on SIGINT/SIGTERM: finish the current step, save, then stop.

Inside ``with GracefulStop() as stop:`` the first SIGINT or SIGTERM only sets a flag that the
training loop polls between steps (``fit(..., should_stop=stop)``); the loop then writes an
``interrupted`` checkpoint and raises ``TrainingInterrupted``. A second signal raises
KeyboardInterrupt at once, for a user who really wants out. The previous handlers come back on
exit. Only the main thread may install signal handlers; elsewhere this is a no-op flag.
"""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None  # the signal number received first
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.requested is not None

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}")
        self.requested = signum

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""
