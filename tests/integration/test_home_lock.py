"""The lock that allows one scheduler per REYNOLDS_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reynolds.adapters.store.lock import HomeLock
from reynolds.errors import AlreadyRunning


def test_a_second_lock_on_the_same_home_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "home" / "scheduler.lock"
    with HomeLock(path):
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}") as refused:
            HomeLock(path).acquire()
        assert refused.value.details["pid"] == os.getpid()

    again = HomeLock(path)
    again.acquire()
    assert again.held
    again.release()


def test_the_lock_of_another_process_is_refused_and_freed_when_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib\n"
            "from reynolds.adapters.store.lock import HomeLock\n"
            f"HomeLock(pathlib.Path({str(path)!r})).acquire()\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"):
            HomeLock(path).acquire()
    finally:
        holder.communicate(timeout=30)

    lock = HomeLock(path)
    lock.acquire()
    lock.release()
