"""A local OpenAI-compatible model server for the llm tests: llama-cpp-python's server on a tiny
model written here with the gguf package — llama architecture, random weights, a vocabulary of
bytes and printable characters with a SentencePiece tokenizer in its metadata. Nothing is
downloaded; `scripts/llama-server.sh` installs the server (CI runs it).

Register with `pytest_plugins`; the `llm_server` fixture is the server's `/v1` URL. Without
llama_cpp the test is skipped, or fails under REYNOLDS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MODEL_NAME = "reynolds-tiny"
READY_BOUND_S = 60.0
# Sizes: small enough to load and answer in milliseconds on one core.
EMBEDDING = 64
HEADS = 4
LAYERS = 2
FEED_FORWARD = 128
CONTEXT = 2048


@dataclass(frozen=True)
class LlmServer:
    base_url: str  # ends in /v1
    model: str
    log: Path


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types: unknown, BOS, EOS, the 256 byte tokens (so any text
    can be encoded), then the printable ASCII characters and the SentencePiece space."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    chars = ["\u2581", *(chr(c) for c in range(33, 127))]
    tokens += chars
    types += [gguf.TokenType.NORMAL] * len(chars)
    return tokens, [0.0] * len(tokens), [int(t) for t in types]


def write_tiny_model(path: Path, seed: int = 0) -> Path:
    """A llama-architecture GGUF file with random float32 weights at `path`."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(MODEL_NAME)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_tensor("token_embd.weight", weights(n_vocab, EMBEDDING))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, EMBEDDING))
    for i in range(LAYERS):
        block = f"blk.{i}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(EMBEDDING, FEED_FORWARD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_BOUND_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the model server exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the model server did not answer within {READY_BOUND_S:g} s")


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServer]:
    """llama-cpp-python's OpenAI-compatible server on the tiny model, on a free port."""
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        message = (
            f"the local model server is not available: {exc.name} is not installed "
            "(scripts/llama-server.sh installs it)"
        )
        if os.environ.get("REYNOLDS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message} (REYNOLDS_REQUIRE_SERVICES=1 makes this a failure)")
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("llm")
    model = write_tiny_model(folder / "tiny.gguf")
    port = free_port()
    log = folder / "server.log"
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(CONTEXT),
        "--n_threads",
        "1",
        "--chat_format",
        "chatml",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, url, log)
        yield LlmServer(url, MODEL_NAME, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
