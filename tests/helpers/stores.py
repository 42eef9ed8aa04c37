"""Tasks put into a store and read back, for tests that look at a store from outside."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from reynolds.adapters.store.schema import tasks
from reynolds.adapters.store.sql import SqlStore


def task_row(task_id: str) -> dict[str, Any]:
    return {
        "id": task_id,
        "type": "build",
        "description": f"task {task_id}",
        "priority": "medium",
        "status": "succeeded",
        "spec": {"components": [task_id]},
        "strategy": {"approach": "direct"},
        "created_at": 1000.0,
    }


def put_tasks(url: str, *task_ids: str) -> None:
    """Start a store on `url` (migrating it), write these tasks, close it."""
    store = SqlStore(url)
    store.start()
    try:
        for task_id in task_ids:
            store.put_task(task_row(task_id))
        store.flush_sync()
    finally:
        store.close()


def task_ids(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(tasks.c.id)).scalars())
    finally:
        engine.dispose()
