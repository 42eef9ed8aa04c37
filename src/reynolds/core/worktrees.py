"""Task workspaces in git (pure): the branch each subtask works on, in which order branches
are merged, and what a merge that failed says. The git work itself is the adapter's."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reynolds.core.graph import Graph

BRANCH_PREFIX = "reynolds"
INTEGRATE_ID = "integrate"
SLUG_MAX = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str) -> str:
    """A form of `text` that is one ref component and one directory name: letters, digits,
    `.`, `_` and `-`, no leading or trailing dot or dash, never `.lock` at the end."""
    out = _UNSAFE.sub("-", text)
    out = re.sub(r"\.{2,}", ".", out)
    out = re.sub(r"-{2,}", "-", out)[:SLUG_MAX].strip(".-")
    if out.endswith(".lock"):
        out = out[: -len(".lock")] + "-lock"
    return out or "subtask"


def slugs(ids: Iterable[str]) -> dict[str, str]:
    """A slug per id, unique even where a file system ignores case (`-2`, `-3`, ... added in
    order); `integrate` is taken first when present, so the integration keeps its name."""
    ordered = sorted(ids, key=lambda nid: nid != INTEGRATE_ID)  # stable: others keep order
    out: dict[str, str] = {}
    taken: set[str] = set()
    for nid in ordered:
        base = slug(nid)
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            suffix = f"-{n}"
            candidate = base[: SLUG_MAX - len(suffix)].rstrip(".-") + suffix
        taken.add(candidate.lower())
        out[nid] = candidate
    return out


def branch_of(task_id: str, slug_: str) -> str:
    return f"{BRANCH_PREFIX}/{task_id}/{slug_}"


def merge_order(graph: Graph, candidates: Iterable[str]) -> list[str]:
    """`candidates` in dependency order (upstream first; submission order within a level),
    so that a branch built on others merges after them."""
    wanted = set(candidates)
    order = []
    for level in graph.levels():
        order.extend(sorted((n for n in level if n in wanted), key=lambda n: graph.nodes[n].seq))
    return order


@dataclass(frozen=True, slots=True)
class Change:
    """What a subtask's commit holds (commit None: it changed nothing)."""

    commit: str | None
    files: tuple[str, ...]
    diffstat: str

    def view(self, branch: str) -> dict[str, object]:
        return {
            "branch": branch,
            "commit": self.commit,
            "filesChanged": list(self.files),
            "diffstat": self.diffstat,
        }


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a commit says made it."""

    name: str
    email: str

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


def identity(task_id: str) -> Identity:
    return Identity(f"Reynolds (task {task_id})", f"reynolds+{task_id}@localhost")


def commit_message(task_type: str, task_id: str, node_id: str, step: str | None,
                   component: str | None) -> str:  # fmt: skip
    """A subtask's commit message: what it did in its first line, the task in trailers."""
    title = " ".join(p for p in (step or node_id, component) if p)
    lines = [f"{task_type}: {title}"[:200], "", f"Reynolds-Task: {task_id}",
             f"Reynolds-Subtask: {node_id}"]  # fmt: skip
    if step:
        lines.append(f"Reynolds-Step: {step}")
    if component:
        lines.append(f"Reynolds-Component: {component}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A branch the integration left out: its merge conflicted or the check failed on it."""

    subtask: str
    branch: str
    reason: str  # "conflict" or "check_failed"
    files: tuple[str, ...] = ()
    # Merged branches that changed the same files (what it conflicts with).
    against: tuple[str, ...] = ()
    detail: str = ""

    def view(self) -> dict[str, object]:
        return {
            "subtask": self.subtask,
            "branch": self.branch,
            "reason": self.reason,
            "files": list(self.files),
            "conflictsWith": list(self.against),
            **({"detail": self.detail} if self.detail else {}),
        }

    def sentence(self) -> str:
        if self.reason == "conflict":
            files = ", ".join(self.files) or "unknown files"
            against = f" with {', '.join(self.against)}" if self.against else ""
            return f"{self.branch} conflicts{against} in {files}"
        return f"{self.branch} fails the check: {self.detail or 'non-zero exit'}"


@dataclass(slots=True)
class Integration:
    """What merging a task's branches did, in order."""

    into: str
    merged: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    commit: str | None = None
    check_failed: str | None = None  # a check at the end that failed on the merged result

    @property
    def ok(self) -> bool:
        return not self.skipped and self.check_failed is None

    def view(self) -> dict[str, object]:
        return {
            "into": self.into,
            "commit": self.commit,
            "merged": list(self.merged),
            "unchanged": list(self.unchanged),
            "skipped": [s.view() for s in self.skipped],
            **({"checkFailed": self.check_failed} if self.check_failed else {}),
        }

    def summary(self) -> str:
        parts = [f"merged {len(self.merged)} branch(es) into {self.into}"]
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} changed nothing")
        if self.skipped:
            parts.append(
                f"skipped {len(self.skipped)}: " + "; ".join(s.sentence() for s in self.skipped)
            )
        if self.check_failed:
            parts.append(f"the check failed on the merged result: {self.check_failed}")
        return "; ".join(parts)


def touched_by(
    files: Sequence[str], merged: Sequence[str], changed: Mapping[str, Iterable[str]]
) -> tuple[str, ...]:
    """The merged branches whose changes touch any of `files` (`changed`: files per branch)."""
    wanted = set(files)
    return tuple(b for b in merged if wanted & set(changed.get(b, ())))
