"""What the audit keeps of one attempt is bounded: at most 4 KiB of each argv element and
64 KiB of the whole argv (UTF-8 bytes, markers included), each cut marked."""

from __future__ import annotations

import random

import pytest

from reynolds.core.audit import describe_action, redact_text
from reynolds.core.models import ShellAction


def utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def recorded(argv: list[str], **action: object) -> dict[str, object]:
    shell = ShellAction.model_validate({"kind": "shell", "argv": ["placeholder"], **action})
    return describe_action(shell, argv)


def test_a_long_element_keeps_its_first_four_kibibytes_and_says_how_long_it_was() -> None:
    element = "a/" * 10_000
    (kept,) = recorded([element])["argv"]  # type: ignore[misc]
    assert utf8(kept) <= 4096
    assert kept.endswith("…[cut from 20000 bytes]")
    assert element.startswith(kept.removesuffix("…[cut from 20000 bytes]"))
    assert len(kept) > 4000


def test_an_element_is_cut_by_utf8_bytes_and_never_inside_a_character() -> None:
    (kept,) = recorded(["é" * 5000])["argv"]  # type: ignore[misc]
    assert utf8(kept) <= 4096
    assert kept == "é" * ((4096 - utf8("…[cut from 10000 bytes]")) // 2) + "…[cut from 10000 bytes]"


def test_past_sixty_four_kibibytes_the_elements_left_are_counted_not_kept() -> None:
    argv = [f"{i:04d}" + "x" * 2996 for i in range(40)]  # 40 × 3000 bytes
    kept: list[str] = recorded(argv)["argv"]  # type: ignore[assignment]
    assert sum(utf8(e) for e in kept) <= 65536
    whole = [e for e in kept if e in argv]
    assert whole == argv[: len(whole)] and len(whole) == 21
    mark = "…[cut from 3000 bytes]"
    assert kept[21] == argv[21][: len(kept[21]) - len(mark)] + mark
    assert kept[-1] == f"…[{40 - 22} more elements cut]"
    assert len(kept) == 23


def test_a_huge_substituted_argv_is_recorded_in_at_most_sixty_four_kibibytes() -> None:
    argv = ["echo", "x" * 500 * 3500] + ["y" * 200_000] * 100
    kept: list[str] = recorded(argv)["argv"]  # type: ignore[assignment]
    assert sum(utf8(e) for e in kept) <= 65536
    assert all(utf8(e) <= 4096 for e in kept)
    assert kept[1].endswith("…[cut from 1750000 bytes]")
    assert kept[-1].endswith("more elements cut]")


def test_cwd_and_environment_names_are_bounded_too() -> None:
    env = {f"NAME_{i:05d}_" + "V" * 90: "x" for i in range(2000)}
    described = recorded(["true"], cwd="é" * 4096, env=env)
    cwd = described["cwd"]
    assert isinstance(cwd, str) and utf8(cwd) <= 4096 and cwd.endswith("…[cut from 8192 bytes]")
    names = described["env_names"]
    assert isinstance(names, list) and sum(utf8(n) for n in names) <= 4096
    assert names[0] == sorted(env)[0]
    assert names[-1].endswith("more names cut]")


def test_a_secret_cut_in_two_by_the_length_of_a_message_leaves_no_part_behind() -> None:
    rng = random.Random(1)
    keys = " ".join(f"{rng.getrandbits(160):040x}" for _ in range(24))  # 24 × 41 characters
    message = f"{keys} https://u:{'p' * 20}@host"
    assert len(message.split(" https")[0]) < 1000 < len(message)
    shown = redact_text(message)
    assert "ppp" not in shown
    assert "https://" in shown


def random_key(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(
        rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        for _ in range(chars)
    )


def test_a_url_password_cut_before_its_at_sign_is_left_out() -> None:
    element = "x " * 2030 + "https://u:" + "p" * 100 + "@host"
    (kept,) = recorded([element])["argv"]  # type: ignore[misc]
    assert "pp" not in kept
    assert kept.startswith("x x ") and "https://…[cut from" in kept


def test_the_start_of_a_key_cut_shorter_than_a_key_is_left_out() -> None:
    key = random_key(60, seed=2)
    (kept,) = recorded(["x " * 2036 + key])["argv"]  # type: ignore[misc]
    assert key[:6] not in kept
    assert kept.endswith("x …[cut from 4132 bytes]")


def test_a_longer_start_of_a_key_is_judged_as_a_key() -> None:
    key = random_key(400, seed=3)
    (kept,) = recorded(["x " * 2000 + key])["argv"]  # type: ignore[misc]
    assert all(key[i : i + 12] not in kept for i in range(len(key) - 12))
    assert kept.endswith("x ***…[cut from 4400 bytes]")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["mysql", "--password", "s" * 10_000],
            ["mysql", "--password", "***…[cut from 10000 bytes]"],
        ),
        (
            ["curl", "-H", "Authorization: Bearer " + "t" * 10_000],
            ["curl", "-H", "Authorization: ***…[cut from 10022 bytes]"],
        ),
        (
            ["curl", "http://h/x?token=" + "v" * 10_000],
            ["curl", "http://h/x?token=***…[cut from 10017 bytes]"],
        ),
        (["tool", "--password=" + "s" * 10_000], ["tool", "--password=***…[cut from 10011 bytes]"]),
    ],
)
def test_secrets_in_long_elements_are_hidden_like_in_short_ones(
    argv: list[str], expected: list[str]
) -> None:
    assert recorded(argv)["argv"] == expected


def test_an_option_name_too_long_to_read_whole_hides_the_next_element() -> None:
    kept: list[str] = recorded(["tool", "--" + "x" * 5000, "value"])["argv"]  # type: ignore[assignment]
    assert kept[1].endswith("…[cut from 5002 bytes]")
    assert kept[2] == "***"


def test_short_command_lines_are_recorded_as_they_are() -> None:
    argv = ["git", "commit", "-m", "fix: the parser"]
    assert recorded(argv)["argv"] == argv
