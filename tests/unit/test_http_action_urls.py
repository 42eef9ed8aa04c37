"""An http action's URL is read when the task is submitted: one that cannot be parsed is a
422 naming the field, never a server error later."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reynolds.core.models import TaskSpec


def task(url: str) -> dict[str, object]:
    return {"type": "t", "subtasks": [{"id": "a", "action": {"kind": "http", "url": url}}]}


@pytest.mark.parametrize(
    ("url", "words"),
    [("http://\u0081];x~", "not a URL that can be read"), ("http://", "names no host")],
)
def test_a_url_that_cannot_be_read_is_refused_naming_the_field(url: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate(task(url))
    (error,) = caught.value.errors()
    assert error["loc"][-1] == "url" and words in error["msg"]


def test_ordinary_urls_are_accepted() -> None:
    for url in ("http://127.0.0.1:8080/x?y=1", "https://[::1]/", "http://example.com"):
        TaskSpec.model_validate(task(url))
