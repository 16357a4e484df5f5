"""Processes on one host share its cores: real processes hold real flocks, and die by SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from fersearch.cpu_share import CpuShare
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
    with CpuShare(folder=tmp_path, cores=4) as share:
        holder = _holder(tmp_path)
        try:
            assert share.refresh() == 4  # counted less than REFRESH_SECONDS ago: unchanged
            assert share.refresh(force=True) == 2
        finally:
            holder.kill()
            holder.wait(timeout=10)


def test_threads_below_one_is_a_clear_error():
    with pytest.raises(InvalidArgument, match="--threads must be at least 1"):
        CpuShare(threads=0)
