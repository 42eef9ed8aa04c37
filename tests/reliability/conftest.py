"""The fault-injection suite: real servers (and Celery workers, Redis, PostgreSQL) hurt in one
way each, then held to one invariant (fault_ledger.py).

The e2e suite's support modules (cli_support, celery_support) are imported as that suite
imports them, by their bare names, so its folder is put on the path here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from fault_rig import Rig  # noqa: E402  (needs the e2e folder on the path)
from tests.helpers.postgres import unreachable  # noqa: E402

PLATFORM_LIMITS = "{memorySoft: 256MiB, memoryHard: 256MiB}"


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Start servers of the test's own (`make_rig(env=..., platform_limits=...)`); each is
    stopped, and whatever its actions left is killed, at the end."""
    rigs: list[Rig] = []

    def make(
        name: str = "rig",
        env: Mapping[str, str] | None = None,
        platform_limits: str | None = None,
    ) -> Rig:
        rig = Rig(tmp_path / name, env, platform_limits)
        rigs.append(rig)
        rig.start()
        return rig

    yield make
    for rig in rigs:
        rig.stop()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """A started server of the test's own on SQLite, the local backend."""
    return make_rig()


@pytest.fixture(scope="module")
def module_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One server for a module's tests whose faults leave it serving (each test checks the
    ledger over every task the server accepted so far). Its platform pool has a memory
    limit of 256 MiB per action process."""
    rig = Rig(tmp_path_factory.mktemp("module-rig"), platform_limits=PLATFORM_LIMITS)
    rig.start()
    yield rig
    rig.stop()


@pytest.fixture
def postgres_base(require_service: Callable[[str, str], NoReturn]) -> None:
    """Skip (or fail, with REYNOLDS_REQUIRE_SERVICES=1) when PostgreSQL does not answer."""
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
