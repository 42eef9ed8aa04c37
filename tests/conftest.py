"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from tests.helpers.redis_keys import delete_redis_keys
from tests.helpers.redis_server import RedisServer

# The `llm_server` fixture: the local model server the llm tests run against.
pytest_plugins = ["tests.helpers.llm_server"]

# Redis tests use their own database number and touch only keys under their own prefix.
REDIS_URL = os.environ.get("REYNOLDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _require_service(name: str, reason: str) -> NoReturn:
    message = f"{name} is not available: {reason}"
    if os.environ.get("REYNOLDS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (REYNOLDS_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_service() -> Callable[[str, str], NoReturn]:
    """`require_service(name, reason)`: call it when a service a test needs is unreachable.
    It skips the test, or fails it when REYNOLDS_REQUIRE_SERVICES=1 (as in CI)."""
    return _require_service


@pytest.fixture
def redis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server of the test's own on a free port (so it can be restarted), keeping
    nothing on disk. Needs `redis-server` on PATH."""
    if shutil.which("redis-server") is None:
        _require_service("redis-server", "not on PATH; the Celery backend tests start their own")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = RedisServer(tmp_path_factory.mktemp("redis"), port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(require_service: Callable[[str, str], NoReturn]) -> str:
    """REYNOLDS_TEST_REDIS_URL (default: database 15 on this machine), once it answers."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        require_service("Redis", f"cannot connect to {REDIS_URL} ({type(exc).__name__})")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own; every key under it is deleted afterwards."""
    prefix = f"reynolds-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_redis_keys(redis_url, prefix)
