"""REYNOLDS_ACTION_USER read into a user, and the capabilities a server needs to switch."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from reynolds.adapters.actions.identity import (
    ActionUser,
    enterable_by,
    missing_capabilities,
    resolve_action_user,
    writable_by,
)
from reynolds.adapters.private_dirs import make_private_dir, tighten
from reynolds.bootstrap import action_user, load_pools
from reynolds.errors import InvalidInput
from reynolds.settings import Settings

ROOT_ENTRY = pwd.getpwuid(0)


def status_with(tmp_path: Path, effective_hex: str) -> Path:
    path = tmp_path / "status"
    path.write_text(f"Name:\tx\nCapInh:\t0\nCapEff:\t{effective_hex}\nCapBnd:\t0\n")
    return path


def test_a_user_is_named_by_name_or_uid_with_its_primary_group_and_home() -> None:
    expected = ActionUser(ROOT_ENTRY.pw_name, 0, ROOT_ENTRY.pw_gid, ROOT_ENTRY.pw_dir)

    assert resolve_action_user(ROOT_ENTRY.pw_name) == expected
    assert resolve_action_user("0") == expected


def test_a_group_after_the_colon_replaces_the_primary_group() -> None:
    group = grp.getgrgid(0).gr_name

    assert resolve_action_user(f"0:{group}").gid == 0
    assert resolve_action_user("0:4242").gid == 4242


def test_a_uid_without_a_passwd_entry_needs_its_group() -> None:
    unknown = next(uid for uid in range(42_000, 43_000) if not _has_entry(uid))

    with pytest.raises(InvalidInput, match="has no passwd entry: name its group too"):
        resolve_action_user(str(unknown))
    assert resolve_action_user(f"{unknown}:{unknown}") == ActionUser(
        str(unknown), unknown, unknown, "/"
    )


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no-such-user-91c2", "no user named 'no-such-user-91c2'"),
        ("0:no-such-group-91c2", "no group named 'no-such-group-91c2'"),
        (":0", "no user named before the ':'"),
    ],
)
def test_an_impossible_action_user_names_the_setting_and_the_reason(spec: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as error:
        resolve_action_user(spec)

    assert error.value.message == f"REYNOLDS_ACTION_USER={spec}: {reason}"


def test_missing_capabilities_are_read_from_the_effective_set(tmp_path: Path) -> None:
    needed = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_RESOURCE")
    # CAP_KILL (5), CAP_SETGID (6) and CAP_SETUID (7), without CAP_SYS_RESOURCE (24).
    assert missing_capabilities(needed, status_with(tmp_path, "00000000000000e0")) == [
        "CAP_SYS_RESOURCE"
    ]
    assert missing_capabilities(needed, status_with(tmp_path, "0000000000000000")) == list(needed)
    assert missing_capabilities(needed, status_with(tmp_path, "000001ffffffffff")) == []


def test_naming_the_servers_own_user_changes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", action_user=str(os.geteuid()))
    own = pwd.getpwuid(os.geteuid())
    if own.pw_gid != os.getegid():
        pytest.skip("this process runs with another group than its user's own")

    assert action_user(settings, load_pools(settings)) is None


def test_a_home_is_created_private_and_an_open_one_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    make_private_dir(home)
    opened = tmp_path / "secrets"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)
    tighten(opened)

    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(opened.stat().st_mode) == 0o700


def test_a_folder_of_another_users_is_left_as_it_is(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    theirs.chmod(0o755)
    os.chown(theirs, 65534, 65534)

    tighten(theirs)

    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755


def _has_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_a_folder_is_writable_by_the_class_of_the_user_that_applies(tmp_path: Path) -> None:
    other = ActionUser("other", os.geteuid() + 4242, os.getegid() + 4242, "/")
    grouped = ActionUser("grouped", os.geteuid() + 4242, os.getegid(), "/")
    folder = tmp_path / "code"
    folder.mkdir()
    tmp_path.chmod(0o755)

    folder.chmod(0o755)
    assert [writable_by(folder, u) for u in (other, grouped)] == [None, None]
    folder.chmod(0o757)
    assert [writable_by(folder, u) for u in (other, grouped)] == [folder, None]
    folder.chmod(0o775)  # the group's class applies to a member, whatever the others may
    assert [writable_by(folder, u) for u in (other, grouped)] == [None, folder]
    assert writable_by(folder / "missing", other) is None


def test_a_folder_that_could_be_replaced_from_above_is_named(tmp_path: Path) -> None:
    other = ActionUser("other", os.geteuid() + 4242, os.getegid() + 4242, "/")
    folder = tmp_path / "code"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)

    tmp_path.chmod(0o777)
    assert writable_by(folder, other) == tmp_path.resolve()
    tmp_path.chmod(0o1777)  # sticky, as /tmp: only an entry's owner may move it
    assert writable_by(folder, other) is None
    tmp_path.chmod(0o755)


def test_a_folder_that_is_no_reynolds_home_or_secrets_folder_keeps_its_mode(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes").mkdir()
    shared.chmod(0o755)
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    home = tmp_path / "old-home"
    home.mkdir()
    (home / "scheduler.lock").touch()
    home.chmod(0o755)

    for folder in (shared, sticky):
        make_private_dir(folder)
        tighten(folder)
    make_private_dir(home)

    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_folder_is_enterable_only_through_folders_the_user_may_search() -> None:
    other = ActionUser("other", os.geteuid() + 4242, os.getegid() + 4242, "/")
    base = Path(tempfile.mkdtemp(prefix="reynolds-enterable-"))
    try:
        inner = base / "inner"
        inner.mkdir()
        base.chmod(0o755)
        inner.chmod(0o755)
        assert enterable_by(inner, other)
        inner.chmod(0o750)
        assert not enterable_by(inner, other)
        inner.chmod(0o755)
        base.chmod(0o700)  # the folder above keeps it out of reach
        assert not enterable_by(inner, other)
        assert not enterable_by(base / "missing", other)
    finally:
        shutil.rmtree(base)
