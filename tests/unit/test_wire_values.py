"""The rules every value a caller sends must follow, wherever it sits: text a system call and a
database can take, integers a database column and JSON can hold, finite numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from reynolds.core import wire_values
from reynolds.core.wire_values import NUL_REASON, Problem, problems

INT_REASON = "must be an integer from -9223372036854775808 to 9223372036854775807"
FINITE_REASON = "Input should be a finite number"
SURROGATE_REASON = "must be valid Unicode (a lone surrogate is not a character)"


def test_plain_json_has_no_problems() -> None:
    value = {"a": ["text", 1, -(2**63), 2**63 - 1, 1.5e308, True, None, "😀 \\u0000 literally"]}
    assert problems(value) == []


def test_nul_is_found_in_values_and_keys_with_their_paths() -> None:
    found = problems({"a": ["ok", "b\x00"], "k\x00": {"deeper": "x"}})
    assert found == [
        Problem(("a", 1), NUL_REASON, "b\x00"),
        Problem(("k\\u0000",), NUL_REASON, "k\x00"),
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2**63, INT_REASON),
        (-(2**63) - 1, INT_REASON),
        (10**5000, INT_REASON),
        (math.nan, FINITE_REASON),
        (math.inf, FINITE_REASON),
        (-math.inf, FINITE_REASON),
        ("a\ud800", SURROGATE_REASON),
    ],
    ids=["2**63", "-2**63-1", "10**5000", "nan", "inf", "-inf", "surrogate"],
)
def test_values_the_store_or_json_cannot_hold_are_found(value: Any, reason: str) -> None:
    assert problems({"kwargs": {"v": [value]}}) == [Problem(("kwargs", "v", 0), reason, value)]


def test_a_key_with_a_lone_surrogate_is_named_with_it_escaped() -> None:
    assert problems({"k\udc80": 1}) == [Problem(("k\\udc80",), SURROGATE_REASON, "k\udc80")]


def test_a_value_that_holds_itself_is_walked_once() -> None:
    loop: list[Any] = ["\x00"]
    loop.append(loop)
    assert problems(loop) == [Problem((0,), NUL_REASON, "\x00")]


def test_printable_spells_what_may_not_be_stored_as_escapes() -> None:
    assert wire_values.printable("a\x00b") == "a\\u0000b"
    assert wire_values.printable("plain") == "plain"


def test_encodable_keeps_text_and_replaces_only_lone_surrogates() -> None:
    assert wire_values.encodable("plain") == "plain"
    assert wire_values.encodable("😀 é \x00") == "😀 é \x00"
    kept = wire_values.encodable("a\ud800b")
    assert kept.startswith("a\ufffd") and kept.endswith("b")
    kept.encode("utf-8")
