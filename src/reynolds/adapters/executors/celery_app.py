"""The Celery application shared by the orchestrator (which sends) and the workers (which run).

Celery carries the work; the orchestrator's store stays the source of truth. A message is
acknowledged only after its action ran (`acks_late`), a worker takes one message at a time
per process (`worker_prefetch_multiplier=1`), and a message whose worker died is handed
back (`reject_on_worker_lost`). Redis redelivers an unacknowledged message only after its
visibility timeout, so the orchestrator does not wait for that: leases and fencing (see
`adapters/executors/celery.py`) re-dispatch lost work within seconds.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

TASK_NAME = "reynolds.run_action"
# The pool a worker process serves, set by `reynolds agent` before it execs Celery.
AGENT_TYPE_ENV = "REYNOLDS_AGENT_TYPE"


def make_app(broker_url: str, queues: list[str]) -> Celery:
    """A Celery app on `broker_url` with one durable queue per pool."""
    app = Celery("reynolds", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(name) for name in queues],
        task_default_queue=queues[0] if queues else "celery",
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Lost work comes back through leases within seconds; this only bounds how long a
        # message of a dead worker stays hidden in Redis before Redis itself hands it back.
        broker_transport_options={"visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        # Sending must not block the orchestrator for long when Redis is away: a lease
        # expiry re-sends whatever could not be sent.
        broker_connection_timeout=2.0,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app
