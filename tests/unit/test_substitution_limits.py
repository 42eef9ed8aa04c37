"""Substitution cannot grow an argv past what the kernel would run: a request of 1 MiB that
repeats `{component}` could otherwise make tens of megabytes per running subtask."""

from __future__ import annotations

import pytest

from reynolds.core import substitution
from reynolds.core.substitution import substitute
from reynolds.errors import ActionDenied


def test_an_element_that_would_outgrow_the_kernels_limit_is_refused_before_it_is_built() -> None:
    limit = substitution.MAX_ELEMENT_BYTES
    element = "{component}" * 30_000  # 330 KB of text, 3 MB once substituted
    with pytest.raises(ActionDenied) as refused:
        substitute(["echo", element], {"component": "x" * 100}, allow_option_values=False)
    assert "3,000,000 bytes" in refused.value.message
    assert f"{limit:,}" in refused.value.message


def test_an_argv_that_would_outgrow_the_limit_in_all_is_refused() -> None:
    element, whole = substitution.MAX_ELEMENT_BYTES, substitution.MAX_ARGV_BYTES
    value = "y" * (element // 2)
    argv = ["echo", *(["{component}"] * (2 * whole // element + 1))]
    with pytest.raises(ActionDenied) as refused:
        substitute(argv, {"component": value}, allow_option_values=False)
    assert f"{whole:,}" in refused.value.message


def test_sizes_count_in_utf8_bytes_and_the_limits_themselves_are_allowed() -> None:
    value = "é" * ((substitution.MAX_ELEMENT_BYTES - 1) // 2)  # two bytes each
    (out,) = substitute(["{component}"], {"component": value}, allow_option_values=False)
    assert out == value
    with pytest.raises(ActionDenied):
        substitute(["{component}é"], {"component": value + "é"}, allow_option_values=False)
