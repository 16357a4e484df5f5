"""Processes on one host share its cores: real processes hold real flocks, and die by SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from fersearch.cpu_share import REFRESH_SECONDS, CpuShare
from fersearch.errors import InvalidArgument

HOLDER = textwrap.dedent(
    """
    import sys
    from fersearch.cpu_share import CpuShare
    with CpuShare(folder=sys.argv[1], cores=4) as share:
        print(share.threads, flush=True)
        sys.stdin.read()  # hold the slot until the test closes stdin or kills us
    """
)


def _holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    proc.stdout.readline()  # its slot is held once it has printed its share
    return proc


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_share_divides_the_cores_among_live_processes_and_recovers_from_sigkill(tmp_path, restore_threads):
    torch.set_num_threads(3)
    with CpuShare(folder=tmp_path, cores=4) as share:
        assert share.threads == 4 and torch.get_num_threads() == 4
        first = _holder(tmp_path)
        second = _holder(tmp_path)
        try:
            assert share.refresh(force=True) == 1  # 4 cores // 3 processes
            assert torch.get_num_threads() == 1 and share.processes == 3
            second.send_signal(signal.SIGKILL)
            second.wait(timeout=10)
            assert share.refresh(force=True) == 2  # a killed process's flock is gone with it
            assert torch.get_num_threads() == 2
        finally:
            for proc in (first, second):
                proc.kill()
                proc.wait(timeout=10)
        assert share.refresh(force=True) == 4
    assert torch.get_num_threads() == 3  # the caller's own count is back


def test_exit_restores_the_threads_the_caller_had(tmp_path, restore_threads):
    torch.set_num_threads(1)
    with CpuShare(folder=tmp_path, cores=2) as share:
        assert share.threads == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1


def test_a_late_process_sees_the_early_one(tmp_path, restore_threads):
    first = _holder(tmp_path)
    try:
        with CpuShare(folder=tmp_path, cores=4) as share:
            assert share.threads == 2 and share.processes == 2
    finally:
        first.stdin.close()
        first.wait(timeout=10)


def test_fixed_threads_ignore_the_division_but_still_count(tmp_path, restore_threads):
    with CpuShare(threads=3, folder=tmp_path, cores=4) as fixed:
        assert fixed.threads == 3 and torch.get_num_threads() == 3
        with CpuShare(folder=tmp_path, cores=4) as other:
            assert other.threads == 2  # the fixed process still holds a slot
        assert "fixed by --threads" in fixed.describe()


def test_refresh_is_throttled(tmp_path, restore_threads):
    now = [100.0]  # the share's clock, stepped by hand: a slow machine cannot move it
    with CpuShare(folder=tmp_path, cores=4) as share:
        share.clock = lambda: now[0]
        share.refresh(force=True)  # counted at t = 100
        holder = _holder(tmp_path)
        try:
            now[0] += REFRESH_SECONDS - 0.01
            assert share.refresh() == 4  # counted less than REFRESH_SECONDS ago: unchanged
            now[0] += 0.01
            assert share.refresh() == 2  # due again: the holder is counted
        finally:
            holder.kill()
            holder.wait(timeout=10)
        assert share.refresh(force=True) == 4


def test_threads_below_one_is_a_clear_error():
    with pytest.raises(InvalidArgument, match="--threads must be at least 1"):
        CpuShare(threads=0)


def test_a_cpu_worker_waits_for_a_free_core_and_starts_when_one_is_freed(tmp_path, restore_threads):
    # cores=1 in the holder too: it takes the one core slot
    holder = _holder_cores(tmp_path, 1)
    said: list[str] = []
    share = CpuShare(folder=tmp_path, cores=1, wait_for_core=True, on_wait=said.append)
    started = threading.Event()

    def enter():
        share.__enter__()
        started.set()

    thread = threading.Thread(target=enter, daemon=True)
    thread.start()
    try:
        # it says why it waits, once, and does not start while the core is held
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said and "waiting for one to finish" in said[0]
        assert not started.is_set()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert started.wait(timeout=10), "the worker must start once the core is free"
        assert share.threads == 1 and len(said) == 1
    finally:
        holder.kill()
        holder.wait(timeout=10)
        share.__exit__(None, None, None)


def test_predict_and_finalize_never_wait_for_a_core(tmp_path, restore_threads):
    holder = _holder_cores(tmp_path, 1)
    try:
        with CpuShare(folder=tmp_path, cores=1) as share:  # wait_for_core defaults to False
            assert share.processes == 2 and share.threads == 1
    finally:
        holder.kill()
        holder.wait(timeout=10)


def _holder_cores(folder, cores: int) -> subprocess.Popen:
    code = HOLDER.replace("cores=4", f"cores={cores}, wait_for_core=True")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    proc.stdout.readline()
    return proc
