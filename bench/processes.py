"""Worker processes for the benchmarks: start N copies of a command at once, wait for all."""

from __future__ import annotations

import subprocess
import time


def run_together(cmd: list[str], n: int, env: dict, what: str) -> float:
    """Seconds until the last of ``n`` processes running ``cmd`` exits; a failed one stops the
    benchmark with the end of its stderr."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]  # fmt: skip
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - t0
    for p, err in zip(procs, errors):
        if p.returncode != 0:
            raise SystemExit(f"{what}: a worker failed:\n{err[-3000:]}")
    return seconds
