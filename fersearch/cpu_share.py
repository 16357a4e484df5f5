"""Each fersearch process on a host takes its share of the host's CPU cores.

torch's intra-op threads collapse when oversubscribed: on a 2-core machine, two training
processes with torch's default 2 threads each ran 9.5x slower each than one alone, while with 1
thread each they ran 1.4x faster in all (BENCHMARKS.md, "Workers sharing a host"). So every
worker, ``search``, ``finalize`` and ``predict`` holds a slot: an flock on one of the files
``cpu-slot<N>.lock`` under ``$FERSEARCH_LOCK_DIR`` (default ``/tmp/fersearch-gpu-locks``, the
folder ``--gpu auto`` already shares between compose replicas). A process's share is the cores
it may run on divided by the slots held on the host, at least 1; it is counted again while the
process runs (``refresh``), so a worker that started alone gives up threads when a second one
arrives, and takes them back when it leaves. An flock dies with its process, however it dies.

``threads=N`` (``--threads N``) fixes the count and takes no part in the division, although
the process still holds a slot so that the others count it.

A CPU-only worker also waits for a core (``wait_for_core``): it takes one of the first
``cores`` slots, and while all of them are held it waits instead of training. Four workers on two
cores time-sliced ran slower than one worker alone; two at a time, the other two queued, run as
fast as two. GPU workers, ``finalize`` and ``predict`` never wait.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import InvalidArgument

LOCK_DIR_ENV = "FERSEARCH_LOCK_DIR"
DEFAULT_LOCK_DIR = "/tmp/fersearch-gpu-locks"
MAX_SLOTS = 4096
REFRESH_SECONDS = 2.0  # how often a running process counts its neighbours again
WAIT_SECONDS = 1.0  # how often a worker waiting for a core looks again


def host_cores() -> int:
    """The cores this process may run on (taskset / cgroup cpusets), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV, DEFAULT_LOCK_DIR))


def _slot_path(folder: Path, index: int) -> Path:
    return folder / f"cpu-slot{index}.lock"


def _held_by_other(path: Path) -> bool:
    """True when another process holds the flock on ``path``."""
    try:
        fh = open(path, "a")  # noqa: SIM115
    except OSError:
        return False
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
    finally:
        fh.close()


class CpuShare:
    """``with CpuShare() as share:`` holds a slot and sets torch's (and OpenCV's) threads to
    the process's share; ``share.refresh()`` re-counts at most every REFRESH_SECONDS."""

    def __init__(
        self,
        threads: int | None = None,
        folder: Path | None = None,
        cores: int | None = None,
        wait_for_core: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ):
        if threads is not None and threads < 1:
            raise InvalidArgument(
                f"--threads must be at least 1 (got {threads}); leave it out for a fair share"
            )
        self.fixed = threads
        self.folder = Path(folder) if folder is not None else lock_dir()
        self.cores = cores or host_cores()
        self._fh: IO | None = None
        self._slot: int | None = None
        self._last_count = 0.0
        self.clock = time.monotonic  # when refresh last counted (a test steps its own clock)
        self.threads = threads or self.cores
        self.processes = 1
        self._threads_before: int | None = None
        self.wait_for_core = wait_for_core and threads is None
        self.on_wait = on_wait

    # ---- the slot ----
    def __enter__(self) -> CpuShare:
        self._threads_before = current_threads()
        self._take_slot()
        self.refresh(force=True)
        return self

    def __exit__(self, *exc) -> None:
        # A library caller (a test, the demo) gets its process back as it was.
        if self._threads_before is not None:
            _set_threads(self._threads_before)
        if self._fh is not None:
            self._fh.close()  # releases the flock
            self._fh, self._slot = None, None

    def _take_slot(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # no lock folder: run alone with a share of all cores rather than not at all
        if not self.wait_for_core:
            self._try_slots(MAX_SLOTS)
            return
        told = False
        while not self._try_slots(self.cores):
            if not told and self.on_wait is not None:
                self.on_wait(
                    f"all {self.cores} cores of this host are taken by other fersearch processes; "
                    "waiting for one to finish (Ctrl+C stops this worker)"
                )
                told = True
            time.sleep(WAIT_SECONDS)

    def _try_slots(self, count: int) -> bool:
        """Take the first free slot among the first ``count``; True when one was taken (or
        when there is no lock folder to take one in: then the process runs uncounted)."""
        for index in range(count):
            try:
                fh = open(_slot_path(self.folder, index), "a")  # noqa: SIM115 (held for the process's life)
            except OSError:
                return True
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self._fh, self._slot = fh, index
            return True
        return False

    def count_processes(self) -> int:
        """Slots held on this host, this process's included."""
        if self._slot is None:
            return 1
        held = 1
        for path in self.folder.glob("cpu-slot*.lock"):
            if path != _slot_path(self.folder, self._slot) and _held_by_other(path):
                held += 1
        return held

    # ---- the threads ----
    def refresh(self, force: bool = False) -> int:
        """Count the processes sharing the host again and set the threads; returns the count."""
        now = self.clock()
        if not force and now - self._last_count < REFRESH_SECONDS:
            return self.threads
        self._last_count = now
        self.processes = self.count_processes()
        threads = self.fixed or max(1, self.cores // self.processes)
        if force or threads != self.threads:
            _set_threads(threads)
        self.threads = threads
        return threads

    def describe(self) -> str:
        how = "fixed by --threads" if self.fixed else f"{self.cores} cores / {self.processes} process(es)"
        return f"{self.threads} CPU thread(s) ({how})"


def current_threads() -> int:
    import torch

    return torch.get_num_threads()


def _set_threads(n: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)
