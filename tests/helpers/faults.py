"""Parts of the fault-injection suite (tests/reliability) that are neither fixtures nor the
ledger check: the actions that keep a journal of every run, callables that crash the worker
running them, and small views of processes in /proc.

A journal is a file every run of an action appends one line to when it starts (and one when it
ends): `start|end TAB task TAB subtask TAB attempt TAB pid TAB ppid`. Lines are short and
written with O_APPEND in one write, so concurrent runs never interleave them. The journal is
what really ran; the store's attempts table is what Reynolds says ran; the ledger check
compares the two.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

# argv: journal task subtask attempt seconds [mode]. Modes: "" sleeps `seconds` every attempt;
# "first-slow" sleeps only on the first attempt; "kill-parent" SIGKILLs the process that
# started it (a Celery pool process, for a shell action on a worker) right after the start line.
JOURNAL_STEP = (
    "import os, signal, sys, time\n"
    "journal, task, sub, attempt, seconds = sys.argv[1:6]\n"
    "mode = sys.argv[6] if len(sys.argv) > 6 else ''\n"
    "def note(kind):\n"
    "    line = '\\t'.join([kind, task, sub, attempt, str(os.getpid()), str(os.getppid())])\n"
    "    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "    os.write(fd, (line + '\\n').encode())\n"
    "    os.close(fd)\n"
    "note('start')\n"
    "if mode == 'kill-parent':\n"
    "    os.kill(os.getppid(), signal.SIGKILL)\n"
    "    time.sleep(30)\n"
    "if mode == 'first-slow' and attempt != '1':\n"
    "    seconds = '0'\n"
    "time.sleep(float(seconds))\n"
    "note('end')\n"
    "print(os.getppid())\n"
)

# The same journal from `sh`: no interpreter to start, for subtasks that only finish.
# argv after the script: journal task subtask attempt.
SHELL_JOURNAL = (
    'printf "start\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "$2" "$3" "$4" $$ $PPID >> "$1"; '
    'printf "end\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "$2" "$3" "$4" $$ $PPID >> "$1"'
)


def journal_argv(journal: Path, seconds: float, mode: str = "") -> list[str]:
    """A shell action's argv that journals each run, sleeps, and prints its parent's pid."""
    argv = [PY, "-c", JOURNAL_STEP, str(journal), "{taskId}", "{subtaskId}", "{attempt}"]
    return [*argv, str(seconds), *([mode] if mode else [])]


def quick_journal_argv(journal: Path) -> list[str]:
    """A shell action that journals its run from `sh` and ends at once."""
    return ["sh", "-c", SHELL_JOURNAL, "sh", str(journal), "{taskId}", "{subtaskId}", "{attempt}"]


def journal_step(name: str, journal: Path, seconds: float, **options: Any) -> dict[str, Any]:
    """An explicit subtask (`id` name) running `journal_argv`; `mode` is the script's."""
    mode = options.pop("mode", "")
    action = {"kind": "shell", "argv": journal_argv(journal, seconds, mode)}
    return {"id": name, "action": action, **options}


# -- callables that crash the python worker running them ----------------------------------


def _note(journal: str, tag: str, subtask: str) -> None:
    """A start line for a callable, which knows no task id or attempt: `tag` stands for the
    task (the test maps it), and the attempt is this run's number among the subtask's runs."""
    path = Path(journal)
    seen = path.read_text().splitlines() if path.exists() else []
    attempt = 1 + sum(1 for line in seen if line.split("\t")[1:3] == [tag, subtask])
    line = "\t".join(["start", tag, subtask, str(attempt), str(os.getpid()), str(os.getppid())])
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (line + "\n").encode())
    os.close(fd)


def crash_worker(journal: str, tag: str, subtask: str) -> None:
    """Journal the run, then SIGKILL the worker process running this call."""
    _note(journal, tag, subtask)
    os.kill(os.getpid(), signal.SIGKILL)


def exit_worker(journal: str, tag: str, subtask: str) -> None:
    """Journal the run, then leave the worker process at once, no clean-up."""
    _note(journal, tag, subtask)
    os._exit(70)


# -- processes ------------------------------------------------------------------------------


def vm_rss_kib(pid: int) -> int:
    """The resident set of `pid`, in KiB (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def parent_of(pid: int) -> int | None:
    """The parent of `pid`, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def tagged_actions(owner_pid: int) -> set[int]:
    """Live processes carrying the tag of an action that `owner_pid` (a server or a Celery pool
    process) started: `REYNOLDS_ACTION=<namespace>.<pid>.<ticks>/<runner>.<n>`. The owner's
    long-lived helpers (python workers: `<owner>/-`) are not actions and are left out."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] == "Z":
            continue
        for entry in environ:
            name, _, tag = entry.decode(errors="replace").partition("=")
            owner, _, runner = tag.partition("/")
            mine = owner.split(".")[1:2] == [str(owner_pid)]
            if name == "REYNOLDS_ACTION" and mine and runner != "-":
                found.add(int(proc.name))
    return found


def read_pid(path: Path) -> int | None:
    """The pid a file holds, None while it is missing or half written."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pools_yaml(callables: list[str], platform_limits: str | None = None) -> str:
    """The shipped `agents.yaml` with `callables` declared for devops and, when given, resource
    limits (`{memorySoft: 256MB, ...}`) for the platform pool."""
    pools = (ROOT / "config" / "agents.yaml").read_text()
    declared = f"    callables: [{', '.join(repr(c) for c in callables)}]"
    pools = pools.replace("    callables: []", declared, 1)
    if platform_limits is not None:
        head, marker, tail = pools.partition("  platform:\n")
        assert marker, "the shipped agents.yaml has no platform pool"
        tail = tail.replace(
            "    callables: []", f"    callables: []\n    limits: {platform_limits}", 1
        )
        pools = head + marker + tail
    return pools
