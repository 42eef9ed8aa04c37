"""Decode a file returned by the contents API, optionally only some of its lines."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/get_file_contents"


class GetFileContentsController(Controller):
    """Decode base64 file contents to text (or report binary), optionally a range of lines."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        path, content = self.require(request, "path", "content")
        if request.get("encoding", "base64") != "base64":
            raise BadRequest("only base64 content is supported")
        raw = self._decode(content)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"path": path, "binary": True, "bytes": len(raw)}
        lines = text.splitlines()
        start, end = request.get("startLine", 1), request.get("endLine", len(lines))
        if start < 1 or end < start - 1 or end > len(lines):
            raise BadRequest(f"lines {start}-{end} are outside 1-{len(lines)}")
        return {
            "path": path,
            "binary": False,
            "bytes": len(raw),
            "lines": len(lines),
            "text": "\n".join(lines[start - 1 : end]),
        }

    @staticmethod
    def _decode(content: str) -> bytes:
        try:
            # the API wraps base64 at 60 columns
            return base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("content is not valid base64") from None


TEST_CASES = [
    (
        {"path": "README.md", "content": "IyBSb2NrZXQK\nR28gZmFzdC4K\nTm8gYnJha2VzLgo=\n"},
        {
            "path": "README.md",
            "binary": False,
            "bytes": 29,
            "lines": 3,
            "text": "# Rocket\nGo fast.\nNo brakes.",
        },
    ),
    (
        {
            "path": "README.md",
            "content": "IyBSb2NrZXQKR28gZmFzdC4KTm8gYnJha2VzLgo=",
            "startLine": 2,
            "endLine": 3,
        },
        {
            "path": "README.md",
            "binary": False,
            "bytes": 29,
            "lines": 3,
            "text": "Go fast.\nNo brakes.",
        },
    ),
    (
        {"path": "logo.png", "content": "iVBORw0KGgo="},
        {"path": "logo.png", "binary": True, "bytes": 8},
    ),
    ({"path": "x", "content": "not base64!"}, {"error": "content is not valid base64"}),
    (
        {"path": "x", "content": "YQpiCg==", "startLine": 2, "endLine": 5},
        {"error": "lines 2-5 are outside 1-2"},
    ),
]
