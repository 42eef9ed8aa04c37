"""A kill of tagged processes returns once they have exited, not once they stop showing.

A process killed with SIGKILL drops its memory map (and with it /proc/PID/environ, where its
tag is read) before it has freed that memory and become a zombie; for a process holding
hundreds of megabytes that takes milliseconds, during which it still shows as running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from tests.helpers.processes import is_running

from reynolds.adapters.actions.proc import wait_exited
from reynolds.adapters.actions.tags import TAG_NAME, kill_where

HOLD = (
    "import sys, time\n"
    "held = b'x' * (int(sys.argv[1]) << 20)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A tagged process holding 512 MB of touched memory, and its tag."""
    tag = f"test/{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, "512"],
        env={**os.environ, TAG_NAME: tag},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc, tag
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_kill_returns_once_what_it_killed_has_exited(
    holder: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, tag = holder
    assert kill_where(lambda value: value == tag) == 1
    # Read at once: a zombie waiting for its parent counts as gone, a process still exiting not.
    assert not is_running(proc.pid)
    assert proc.wait(timeout=5) == -9


def test_waiting_for_a_process_that_was_not_killed_ends_at_the_timeout(
    holder: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, _ = holder
    assert wait_exited([os.pidfd_open(proc.pid)], 0.2) == 1
    assert is_running(proc.pid)
