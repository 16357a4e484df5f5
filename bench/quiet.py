"""Benchmarks measure only on a quiet machine: every script calls ``start()`` first and ``end()``
last. ``start`` prints the 1-minute load average and refuses to run when it is above
MAX_LOAD (other jobs would share the cores, and torch's threads collapse when oversubscribed),
unless the script was given ``--allow-load``; then every figure is flagged as taken under load.
"""

from __future__ import annotations

import os
import sys

MAX_LOAD = 1.0  # on this 2-core VM: above it, another job holds a core


def add_argument(parser) -> None:
    parser.add_argument(
        "--allow-load",
        action="store_true",
        help=f"run even when the load average is above {MAX_LOAD} (the output says so)",
    )


def start(allow_load: bool = False) -> bool:
    """Print the load; exit when it is too high unless allowed. Returns True when quiet."""
    load = os.getloadavg()[0]
    quiet = load <= MAX_LOAD
    print(f"load average at start: {load:.2f} ({os.cpu_count()} CPUs)", flush=True)
    if not quiet and not allow_load:
        sys.exit(
            f"refusing to benchmark: load average {load:.2f} > {MAX_LOAD}; other jobs share the cores. "
            "Wait for `uptime` to show a load under 1.0, or pass --allow-load to flag the figures."
        )
    if not quiet:
        print(f"WARNING: figures taken under load {load:.2f}; not comparable with quiet runs", flush=True)
    return quiet


def end() -> None:
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)


def guard(main) -> None:
    """``if __name__ == "__main__": quiet.guard(main)``: the check around a script's ``main``;
    ``--allow-load`` is taken out of the command line before the script parses it."""
    allow = "--allow-load" in sys.argv
    if allow:
        sys.argv.remove("--allow-load")
    if {"-h", "--help"} & set(sys.argv[1:]):
        return main()  # usage only: nothing is measured
    start(allow)
    main()
    end()
