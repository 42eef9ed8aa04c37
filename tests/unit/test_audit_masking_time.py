"""Masking secrets takes time in proportion to the text: no input makes a pattern backtrack.

Each family is a shape of input that made a pattern backtrack over every position it could
start from. Times are compared with each other (never with a number of seconds): four times
the text may take at most eight times as long, and 1 MiB at most 32 times as long as 64 KiB,
where linear work takes 4 and 16 times and quadratic work 16 and 256 times. Each time is the
thread's CPU time (a busy machine's other processes do not count), the best of a few runs,
plus a floor for the timer's resolution and the fixed cost of a call.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable

from reynolds.core.audit import redact_argv

KIB = 1024
# 16 KiB first: a pattern that is quadratic fails there in seconds, not minutes at 256 KiB.
SIZES = (16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)
STEP_MAX_RATIO = 8.0  # each size is four times the one before
WHOLE_MAX_RATIO = 32.0  # 1 MiB against 64 KiB: sixteen times the text
FLOOR_S = 0.003
BEST_OF = 5
REPEAT_BUDGET_S = 0.2  # runs after the first only while they are this cheap


def _random_runs(n: int) -> str:
    """Runs of 24 random key characters between slashes: each looks like a key."""
    rng = random.Random(n)
    alphabet = string.ascii_letters + string.digits
    run = 24
    return "/".join(
        "".join(rng.choice(alphabet) for _ in range(run)) for _ in range(n // (run + 1))
    )


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: unit * (n // len(unit))


FAMILIES: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "x" * n,
    "a scheme, then letters": lambda n: "a://" + "y" * (n - 4),
    "schemes and user names": _repeat("a://b:"),
    "a user name, then a password without @": lambda n: "a://b:" + "c" * (n - 6),
    "question marks": lambda n: "?" * n,
    "query names": _repeat("?x"),
    "query names with values": _repeat("?x="),
    "secret query parameters": lambda n: "?page=1" + "&token=1" * ((n - 7) // 8),
    "a header name, spaces, then two lines": lambda n: "a:" + " " * (n - 5) + "x\ny",
    "bearer, then spaces": lambda n: "Bearer" + " " * (n - 6),
    "bearer words": _repeat("bearer "),
    "runs one short of a key": _repeat("a" * 19 + "/"),
    "random-looking runs": _random_runs,
    "an option name": lambda n: "--" + "x" * (n - 2),
    "a name before =": lambda n: "x" * (n - 1) + "=",
    "secret-looking names": _repeat("pass-"),
    "words": _repeat("ab "),
}


def best_time_s(argv: list[str]) -> float:
    best = float("inf")
    for _ in range(BEST_OF):
        started = time.thread_time()
        redact_argv(argv)
        best = min(best, time.thread_time() - started)
        if best > REPEAT_BUDGET_S:
            break
    return best


def test_masking_time_grows_linearly_with_the_text_for_every_adversarial_shape() -> None:
    times: dict[str, list[float]] = {name: [] for name in FAMILIES}
    for size in SIZES:
        for name, make in FAMILIES.items():
            text = make(size)
            assert abs(len(text) - size) < 64, name
            took = best_time_s(["tool", text])
            if times[name]:
                before = times[name][-1]
                assert took <= STEP_MAX_RATIO * before + FLOOR_S, (
                    f"{name}: {size // KIB} KiB took {took:.4f} s, "
                    f"{size // 4 // KIB} KiB {before:.4f} s"
                )
            times[name].append(took)
    for name, (_, at_64k, _, at_1m) in times.items():
        assert at_1m <= WHOLE_MAX_RATIO * at_64k + FLOOR_S, (
            f"{name}: 1 MiB took {at_1m:.4f} s, 64 KiB {at_64k:.4f} s"
        )
