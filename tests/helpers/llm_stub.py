"""A chat-completions endpoint that answers as a test scripts it: an HTTP error, an answer of
the test's choosing, or none until released. Real HTTP on a loopback port, for what a real
model will not do on demand (503s, a plan that ignores the schema, an answer that never comes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How long a held answer waits for its release at most.
HOLD_BOUND_S = 30.0


@dataclass
class Answer:
    status: int = 200
    content: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # wait for `LlmStub.release` before answering
    prompt_tokens: int = 3
    completion_tokens: int = 2


@dataclass
class LlmStub:
    base_url: str = ""
    # Answered in turn; the last is repeated.
    answers: list[Answer] = field(default_factory=lambda: [Answer()])
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The Authorization header of each request (None: none sent).
    authorizations: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def next_answer(self) -> Answer:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def completion(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


def serve_stub(stub: LlmStub) -> Iterator[LlmStub]:
    """Serve `stub` on a free loopback port for the duration of the generator."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            stub.authorizations.append(self.headers.get("Authorization"))
            answer = stub.next_answer()
            if answer.hold:
                stub.release.wait(HOLD_BOUND_S)
            if answer.status == 200:
                payload = completion(answer, body.get("model", ""))
            else:
                payload = {"error": {"message": answer.content, "type": "server_error"}}
            data = json.dumps(payload).encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting: the timeout test's point

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.release.set()
        httpd.shutdown()
        httpd.server_close()
