"""Time to mask the secrets of one argv element, per shape of hostile input and per size.

Run with `.venv/bin/python benchmarks/audit_masking.py [--sizes 64,256,1024] [--json]`.
Each figure is the best of three runs of `redact_argv(["tool", element])` (what the audit
applies to a command line) on an element of that many KiB; the last column is the 1 MiB time
over the 64 KiB time: 16 for work in proportion to the text, 256 for quadratic work. The same
shapes are checked by tests/unit/test_audit_masking_time.py. Also prints the cost of recording
one ordinary short command line (`describe_action`, as the engine calls it per attempt).
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from collections.abc import Callable

from reynolds.core.audit import describe_action, redact_argv
from reynolds.core.models import ShellAction

KIB = 1024
BEST_OF = 3


def _random_runs(n: int) -> str:
    rng = random.Random(n)
    alphabet = string.ascii_letters + string.digits
    return "/".join("".join(rng.choice(alphabet) for _ in range(24)) for _ in range(n // 25))


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: unit * (n // len(unit))


# The pattern each shape used to make backtrack is in brackets.
SHAPES: dict[str, Callable[[int], str]] = {
    "letters [URL userinfo]": lambda n: "x" * n,
    "a://, then letters [URL userinfo]": lambda n: "a://" + "y" * (n - 4),
    "a://b: repeated [URL userinfo]": _repeat("a://b:"),
    "? repeated [query]": lambda n: "?" * n,
    "?x repeated [query]": _repeat("?x"),
    "?page=1, then &token=1 repeated [query]": lambda n: "?page=1" + "&token=1" * (n // 8),
    "a:, spaces, two lines [header]": lambda n: "a:" + " " * (n - 5) + "x\ny",
    "Bearer, then spaces [bearer]": lambda n: "Bearer" + " " * (n - 6),
    "19-letter runs [key runs]": _repeat("a" * 19 + "/"),
    "random 24-character runs [key runs]": _random_runs,
    "--xxxx… [secret option name]": lambda n: "--" + "x" * (n - 2),
    "pass- repeated [secret name]": _repeat("pass-"),
    "ab, space, repeated [plain words]": _repeat("ab "),
}


def best_s(call: Callable[[], object], runs: int = BEST_OF) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def measure(sizes_kib: list[int]) -> dict[str, dict[str, float]]:
    report: dict[str, dict[str, float]] = {}
    for name, make in SHAPES.items():
        row: dict[str, float] = {}
        for kib in sizes_kib:
            element = make(kib * KIB)
            row[f"{kib} KiB"] = best_s(lambda element=element: redact_argv(["tool", element]))
        report[name] = row
    return report


def short_command_line_s() -> float:
    """Per call: recording `["true"]`-like command lines, as most attempts are."""
    action = ShellAction.model_validate(
        {"kind": "shell", "argv": ["git", "commit", "-m", "{component}"]}
    )
    argv = ["git", "commit", "-m", "web-frontend"]
    calls = 20_000
    took = best_s(lambda: [describe_action(action, argv) for _ in range(calls)])
    return took / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,1024", help="element sizes in KiB")
    parser.add_argument("--json", action="store_true", help="print only JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    report = measure(sizes)
    short_s = short_command_line_s()
    if args.json:
        print(json.dumps({"shapes": report, "shortCommandLineSeconds": short_s}, indent=2))
        return
    width = max(len(name) for name in report)
    ratio = f"{sizes[-1]}/{sizes[0]} KiB" if len(sizes) > 1 else ""
    print(f"{'shape':<{width}}" + "".join(f"{s:>10} KiB" for s in sizes) + f"  {ratio}")
    for name, row in report.items():
        times = list(row.values())
        cells = "".join(f"{t * 1000:>11.2f}ms" for t in times)
        tail = f"  {times[-1] / times[0]:>6.1f}×" if len(times) > 1 and times[0] > 0 else ""
        print(f"{name:<{width}}{cells}{tail}")
    print(f"recording one short command line (describe_action): {short_s * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
