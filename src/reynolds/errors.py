"""The errors Reynolds raises, translated once at each edge.

ReynoldsError
├── InvalidInput        (422) the request is well-formed JSON but says something impossible
├── PlanError           (422)
│   ├── CycleDetected
│   └── UnknownDependency
├── ActionDenied        a subtask asked for something its pool does not permit
├── StoreError
│   ├── NotFound        (404)
│   ├── Conflict        (409)
│   ├── AlreadyRunning  another scheduler holds this REYNOLDS_HOME
│   ├── HomeNotWritable REYNOLDS_HOME cannot be written
│   ├── BackupError     a backup or restore was refused or failed
│   └── StoreUnavailable (503) the database did not answer, or failed what was asked
│       └── StoreDamaged     it is corrupt, or not the store this home had
├── CannotListen        the server's address is taken or not permitted
├── WorkspaceError      git could not do what a task's workspace needed
└── TransientError      worth retrying
"""

from __future__ import annotations

from typing import Any


class ReynoldsError(Exception):
    """Root of every error Reynolds raises on purpose."""

    status_code = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class InvalidInput(ReynoldsError):
    """The input names something impossible: the field and reason are in the message."""

    status_code = 422


class PlanError(ReynoldsError):
    """The task cannot be turned into a runnable graph."""

    status_code = 422


class CycleDetected(PlanError):
    """The dependencies form a cycle; `cycle` lists it."""


class UnknownDependency(PlanError):
    """A dependency names a subtask or step that does not exist."""


class ActionDenied(ReynoldsError):
    """The action is not permitted for its pool."""

    status_code = 403


class StoreError(ReynoldsError):
    """The store could not do what was asked."""


class NotFound(StoreError):
    """No such task (or subtask)."""

    status_code = 404


class Conflict(StoreError):
    """The request conflicts with the current state."""

    status_code = 409


class AlreadyRunning(StoreError):
    """Another scheduler already holds this REYNOLDS_HOME."""

    status_code = 409


class HomeNotWritable(StoreError):
    """REYNOLDS_HOME (or a folder in it) cannot be written: read-only, full, not permitted."""


class StoreUnavailable(StoreError):
    """The database did not answer, or failed a statement; the message names it and says why."""

    status_code = 503


class StoreDamaged(StoreUnavailable):
    """The store is corrupt, missing or emptied, or not the one this REYNOLDS_HOME had: the
    message says what to do (put a backup back, or knowingly start afresh)."""


class CannotListen(ReynoldsError):
    """The server cannot listen on its host and port (in use, or not permitted)."""


class WorkspaceError(ReynoldsError):
    """Git could not do what a task's workspace needed (the message is git's own words)."""


class BackupError(StoreError):
    """A backup could not be made or restored; the message says why, in one line."""


class TransientError(ReynoldsError):
    """A failure worth retrying."""

    status_code = 503
