"""The user that actions run as (REYNOLDS_ACTION_USER), and whether this process may switch.

Without one, actions run as the server's user and can read whatever that user can. With one,
shell actions are started as that user and python workers become it before they run anything;
the server must hold the capabilities that takes (root has them).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reynolds.errors import InvalidInput

SETTING = "REYNOLDS_ACTION_USER"
# Capability bits (linux/capability.h): switching users, signalling the action's processes
# (timeouts, cancellation), and setting limits on a process of another user (prlimit).
_CAPABILITY_BITS = {"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_RESOURCE": 24}
_SWITCHING = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL")


@dataclass(frozen=True)
class ActionUser:
    """Who actions run as: uid, primary gid (no supplementary groups) and home directory."""

    name: str
    uid: int
    gid: int
    home: str

    def spawn_options(self) -> dict[str, Any]:
        """`subprocess.Popen` arguments that start a process as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def resolve_action_user(spec: str) -> ActionUser:
    """`user` or `user:group`, each a name or a number; InvalidInput names what is wrong."""
    user_part, _, group_part = spec.strip().partition(":")
    entry = _passwd_entry(spec, user_part)
    if entry is None:
        if not group_part:
            raise _invalid(spec, f"uid {user_part} has no passwd entry: name its group too")
        uid, gid, home, name = int(user_part), -1, "/", user_part
    else:
        uid, gid, home, name = entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name
    if group_part:
        gid = _group_id(spec, group_part)
    return ActionUser(name=name, uid=uid, gid=gid, home=home or "/")


def missing_capabilities(
    needed: tuple[str, ...], status: Path = Path("/proc/self/status")
) -> list[str]:
    """Which of `needed` this process's effective capability set lacks."""
    try:
        text = status.read_text(encoding="ascii")
    except OSError:
        return list(needed)
    effective = next(
        (int(line.split()[1], 16) for line in text.splitlines() if line.startswith("CapEff:")), 0
    )
    return [cap for cap in needed if not effective >> _CAPABILITY_BITS[cap] & 1]


def check_can_switch(spec: str, user: ActionUser, *, limits: bool) -> None:
    """InvalidInput unless this process can run actions as `user` (and set their resource
    limits when `limits`): refusing to start beats actions that cannot run."""
    needed = _SWITCHING + (("CAP_SYS_RESOURCE",) if limits else ())
    missing = missing_capabilities(needed)
    if missing:
        raise _invalid(
            spec,
            f"this process (uid {os.geteuid()}) cannot run actions as {user.name} without "
            f"{', '.join(missing)}; it needs {', '.join(needed)} (root normally has them)",
        )


def check_code_paths(spec: str, user: ActionUser, paths: Iterable[str]) -> None:
    """InvalidInput when `user` may change one of `paths` (directories this server, or the
    forkserver it starts, imports Python code from) or a folder above one: a module put there
    would run as the server's user."""
    for path in paths:
        writable = writable_by(Path(path or os.getcwd()), user)
        if writable is not None:
            raise _invalid(
                spec,
                f"{user.name} may write {writable}, where this server imports Python code "
                "from; take that right away (actions may write in a folder of their own)",
            )


def check_private(spec: str, user: ActionUser, folders: dict[str, Path]) -> None:
    """InvalidInput when `user` may enter one of `folders` (named by their keys), which hold
    what actions must not read."""
    for what, path in folders.items():
        if enterable_by(path, user):
            raise _invalid(
                spec,
                f"{user.name} may enter {path} ({what}); make it readable by this server's "
                "user alone (mode 0700)",
            )


def writable_by(path: Path, user: ActionUser) -> Path | None:
    """`path`, or the folder above it that `user` could replace it from, when `user` may
    write there (with no supplementary groups); None when it may not, or `path` is no folder."""
    try:
        if not path.is_dir() or _may(path.stat(), user, _WRITE):
            return path if path.is_dir() else None
        for parent in path.resolve().parents:
            info = parent.stat()
            # In a sticky folder (/tmp) only an entry's owner may rename or remove it.
            if _may(info, user, _WRITE) and not info.st_mode & stat.S_ISVTX:
                return parent
    except OSError:
        return None
    return None


def enterable_by(path: Path, user: ActionUser) -> bool:
    """Whether `user` may reach `path` and open what is in it (search rights on it and on
    every folder above it); False when it does not exist."""
    try:
        resolved = path.resolve(strict=True)
        return all(_may(folder.stat(), user, _SEARCH) for folder in (resolved, *resolved.parents))
    except OSError:
        return False


_WRITE = (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)
_SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)


def _may(info: os.stat_result, user: ActionUser, rights: tuple[int, int, int]) -> bool:
    # The permission class that applies is the first that matches, as the kernel decides.
    if info.st_uid == user.uid:
        return bool(info.st_mode & rights[0])
    if info.st_gid == user.gid:
        return bool(info.st_mode & rights[1])
    return bool(info.st_mode & rights[2])


def _passwd_entry(spec: str, user_part: str) -> pwd.struct_passwd | None:
    if not user_part:
        raise _invalid(spec, "no user named before the ':'")
    try:
        return pwd.getpwuid(int(user_part)) if user_part.isdigit() else pwd.getpwnam(user_part)
    except KeyError:
        if user_part.isdigit():
            return None
        raise _invalid(spec, f"no user named {user_part!r}") from None


def _group_id(spec: str, group_part: str) -> int:
    if group_part.isdigit():
        return int(group_part)
    try:
        return grp.getgrnam(group_part).gr_gid
    except KeyError:
        raise _invalid(spec, f"no group named {group_part!r}") from None


def _invalid(spec: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{SETTING}={spec}: {reason}", field=SETTING)
