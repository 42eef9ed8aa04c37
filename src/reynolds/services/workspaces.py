"""Task workspaces: the repository a task works on, a git worktree and branch per subtask, the
branches committed and merged, and the worktrees removed when the task ends.

A task's workspace is decided when it is submitted and kept in its plan (`plan.workspace`:
the repository, the base commit, a branch per subtask), so a restarted server finds the same
branches. Git runs in threads; what a task has in flight is awaited before its worktrees are
removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from reynolds.core import worktrees as wt
from reynolds.core.graph import Graph
from reynolds.core.models import Status, TaskSpec
from reynolds.errors import InvalidInput, WorkspaceError
from reynolds.services.ports import ActionResult, WorktreeGit
from reynolds.services.runs import SubState, TaskRun

log = logging.getLogger("reynolds.workspaces")
T = TypeVar("T")
FIELD = "task.workspace"
CHECK_OUTPUT_CHARS = 2000

# Why a check did not run at all (its pool refused it, no runner for its kind...): the
# branches are not to blame.
CHECK_REFUSED = frozenset({"denied", "not_available", "not_configured", "option_value"})
# Runs the merge step's check in a directory (the integration worktree).
CheckRunner = Callable[[str], Awaitable[ActionResult]]


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class Workspaces:
    """Worktrees under `root`, in the repositories `allowed` names or inside `project`."""

    def __init__(
        self, git: WorktreeGit | None, *, root: Path, allowed: list[str], project: str
    ) -> None:
        self.git = git
        self.root = root
        self.allowed = [os.path.realpath(p) for p in allowed]
        self.project = os.path.realpath(project)
        self._busy: dict[str, set[asyncio.Future[Any]]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- submission -----------------------------------------------------------------------

    async def open(self, spec: TaskSpec, graph: Graph, task_id: str) -> dict[str, Any] | None:
        """The task's `plan.workspace`, or None without one. InvalidInput (422) naming the
        field when the repository is not allowed or not a git repository, the base names no
        commit, or the merge branch exists."""
        ws = spec.workspace
        if ws is None:
            return None
        git = self._git_or_refuse()
        asked = await asyncio.to_thread(_resolve, self.project, ws.repo)
        self._allow(asked, ws.repo)
        top = await asyncio.to_thread(git.toplevel, asked)
        if top is None:
            raise InvalidInput(
                f"{ws.repo!r} is not a git repository with a working tree", field=f"{FIELD}.repo"
            )
        self._allow(top, ws.repo)
        base = await asyncio.to_thread(git.commit_of, top, ws.base)
        if base is None:
            raise InvalidInput(f"{ws.base!r} names no commit in {top}", field=f"{FIELD}.base")
        plan: dict[str, Any] = {
            "repo": top,
            "isolate": ws.isolate,
            "base": ws.base,
            "baseCommit": base,
        }
        if ws.isolate == "none":
            return plan
        slugs = wt.slugs(graph.nodes)
        integrate = next((nid for nid, n in graph.nodes.items() if n.always), None)
        branches = {nid: wt.branch_of(task_id, s) for nid, s in slugs.items()}
        if ws.merge is not None and integrate is not None:
            branches[integrate] = ws.merge.into
            if await asyncio.to_thread(git.branch_exists, top, ws.merge.into):
                raise self._taken(ws.merge.into)
            plan |= {"into": ws.merge.into, "integrate": integrate}
        plan |= {
            "worktrees": str(self.root / task_id),
            "slugs": slugs,
            "branches": branches,
            "keepBranches": ws.keep_branches,
        }
        return plan

    async def reserve(self, plan: dict[str, Any] | None) -> None:
        """Take the merge branch (created at the base commit) so no other task can."""
        if plan is None or "into" not in plan:
            return
        git = self._git_or_refuse()
        try:
            taken = not await asyncio.to_thread(
                git.reserve_branch, plan["repo"], plan["into"], plan["baseCommit"]
            )
        except WorkspaceError as exc:  # a name git refuses that our rules let through
            raise InvalidInput(exc.message, field=f"{FIELD}.merge.into") from None
        if taken:
            raise self._taken(plan["into"])

    def _allow(self, path: str, asked: str) -> None:
        if _inside(path, self.project) or any(_inside(path, root) for root in self.allowed):
            return
        raise InvalidInput(
            f"{asked!r} is not an allowed repository: list it in REYNOLDS_WORKSPACE_REPOS "
            "(or keep it inside the server's working directory)",
            field=f"{FIELD}.repo",
        )

    @staticmethod
    def _taken(into: str) -> InvalidInput:
        return InvalidInput(
            f"branch {into!r} exists already; merge into a new branch",
            field=f"{FIELD}.merge.into",
        )

    def _git_or_refuse(self) -> WorktreeGit:
        if self.git is None:
            raise InvalidInput("task workspaces are not available in this process", field=FIELD)
        return self.git

    # -- attempts -------------------------------------------------------------------------

    @staticmethod
    def plan_of(run: TaskRun) -> dict[str, Any] | None:
        plan = run.plan.get("workspace")
        return plan if isinstance(plan, dict) else None

    def path(self, run: TaskRun, nid: str) -> str:
        plan = self.plan_of(run)
        assert plan is not None
        return str(self.root / run.id / plan["slugs"][nid])

    async def enter(self, run: TaskRun, sub: SubState) -> tuple[str, str | None]:
        """The directory the attempt runs in and the commit it starts from (None: the shared
        repository). A worktree starts at the base, or at its upstream's branch with the
        other upstream branches merged in; WorkspaceError when they conflict."""
        plan = self.plan_of(run)
        assert plan is not None and self.git is not None
        if plan["isolate"] == "none":
            return plan["repo"], None
        git, branches, repo = self.git, plan["branches"], plan["repo"]
        path = self.path(run, sub.node.id)
        upstream = [branches[d] for d in sub.node.depends_on]
        start = upstream[0] if upstream else plan["baseCommit"]
        await self._call(run.id, git.enter, repo, path, branches[sub.node.id], start)
        if not upstream:
            return path, start
        if len(upstream) > 1:
            message = f"Merge the upstream branches of {sub.node.id}"
            files = await self._call(
                run.id, git.merge_all, path, upstream[1:], message, wt.identity(run.id)
            )
            if files:
                raise WorkspaceError(
                    f"the upstream branches of {sub.node.id} conflict in {', '.join(files)}",
                    reason="conflict",  # another attempt would meet the same conflict
                )
        return path, await self._call(run.id, git.head, path)

    async def commit(
        self, run: TaskRun, sub: SubState, path: str, start: str, result: ActionResult
    ) -> ActionResult:
        """A succeeded attempt's changes committed on its branch, shown in its detail."""
        plan = self.plan_of(run)
        assert plan is not None and self.git is not None
        node = sub.node
        message = wt.commit_message(run.spec.type, run.id, node.id, node.step, node.component)
        try:
            change = await self._call(
                run.id, self.git.commit_all, path, start, message, wt.identity(run.id)
            )
        except WorkspaceError as exc:
            return ActionResult(False, reason="workspace", error=exc.message)
        sub.detail = {**(sub.detail or {}), "workspace": change.view(plan["branches"][node.id])}
        return result

    async def integrate(
        self, run: TaskRun, sub: SubState, check: CheckRunner | None, check_after: str
    ) -> ActionResult:
        """Merge the succeeded subtasks' branches, upstream first, into the merge branch; a
        branch that conflicts or fails the check is left out and named."""
        plan = self.plan_of(run)
        assert plan is not None and self.git is not None
        path = self.path(run, sub.node.id)
        last: list[ActionResult] = []  # the check's latest run, whose output the step shows

        async def checked(where: str) -> ActionResult:
            assert check is not None
            last[:] = [await check(where)]
            return last[0]

        try:
            await self._call(
                run.id, self.git.enter, plan["repo"], path, plan["into"], plan["baseCommit"]
            )
            each = checked if check is not None and check_after == "each" else None
            done = await self._merge_each(run, plan, path, each)
            if check is not None and check_after == "end" and done.merged:
                ended = await checked(path)
                if ended.reason in CHECK_REFUSED:
                    await self._refused_check(run.id, path, plan, ended)
                if not ended.ok:
                    done.check_failed = _tail(ended)
            done.commit = await self._call(run.id, self.git.head, path)
        except WorkspaceError as exc:
            return ActionResult(False, reason="workspace", error=exc.message)
        sub.detail = {**(sub.detail or {}), "workspace": {"integration": done.view()}}
        summary = text = done.summary()
        if last:
            shown = (last[0].output or last[0].error).strip()[-CHECK_OUTPUT_CHARS:]
            text += f"\n--- the check's output (its latest run) ---\n{shown}"
        if done.ok:
            return ActionResult(True, exit_code=0, output=text)
        return ActionResult(False, exit_code=1, output=text, error=summary, reason="merge")

    async def _merge_each(
        self, run: TaskRun, plan: dict[str, Any], path: str, check: CheckRunner | None
    ) -> wt.Integration:
        git = self.git
        assert git is not None
        done = wt.Integration(plan["into"])
        changed: dict[str, list[str]] = {}
        succeeded = [n for n, s in run.subs.items() if s.status is Status.SUCCEEDED]
        who = wt.identity(run.id)
        for nid in wt.merge_order(run.graph, succeeded):
            branch = plan["branches"][nid]
            own = ((run.subs[nid].detail or {}).get("workspace") or {}).get("commit")
            if own is None:
                done.unchanged.append(branch)
                continue
            before = await self._call(run.id, git.head, path)
            files = await self._call(run.id, git.merge, path, branch, f"Merge {branch}", who)
            if files is not None:
                against = wt.touched_by(files, done.merged, changed)
                done.skipped.append(wt.Skipped(nid, branch, "conflict", tuple(files), against))
                continue
            after = await self._call(run.id, git.head, path)
            if check is not None:
                ended = await check(path)
                if ended.reason in CHECK_REFUSED:
                    await self._refused_check(run.id, path, plan, ended)
                if not ended.ok:
                    await self._call(run.id, git.reset, path, before)
                    done.skipped.append(
                        wt.Skipped(nid, branch, "check_failed", detail=_tail(ended))
                    )
                    continue
            changed[branch] = await self._call(run.id, git.changed_files, path, before, after)
            done.merged.append(branch)
        return done

    async def _refused_check(
        self, task_id: str, path: str, plan: dict[str, Any], ended: ActionResult
    ) -> None:
        """A check that could not run at all says nothing of the branches: the merge branch
        goes back to the base, and the step fails saying why."""
        assert self.git is not None
        await self._call(task_id, self.git.reset, path, plan["baseCommit"])
        raise WorkspaceError(
            f"the check could not run ({ended.reason}): {ended.error or ended.output}; "
            f"{plan['into']} is left at the base, no branch merged"
        )

    # -- the end --------------------------------------------------------------------------

    def close_before_end(self, run: TaskRun, end: Callable[[TaskRun], None]) -> bool:
        """Whether `run`'s end must wait for its worktrees to be removed; if so their removal
        is started (once, however often this is asked) and calls `end(run)` when done."""
        if run.workspace_closed or "workspace" not in run.plan:
            return False
        if run.workspace_closing is None:
            closing = asyncio.get_running_loop().create_task(self._close_then(run, end))
            run.workspace_closing = closing
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        return True

    async def _close_then(self, run: TaskRun, end: Callable[[TaskRun], None]) -> None:
        try:
            await self.close(run)
        finally:
            run.workspace_closed = True
            end(run)

    async def drain(self) -> None:
        """Wait for the removals under way (a server stopping)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self, run: TaskRun) -> None:
        """Remove the task's worktrees (and its subtasks' branches unless kept), once the git
        work it has in flight is over."""
        plan = self.plan_of(run)
        if plan is None or plan.get("isolate") != "worktree" or self.git is None:
            return
        busy = self._busy.pop(run.id, set())
        if busy:
            await asyncio.gather(*busy, return_exceptions=True)
        try:
            await asyncio.to_thread(self.git.remove_task, plan["repo"], run.id)
            if not plan.get("keepBranches", True):
                names = [b for n, b in plan["branches"].items() if b != plan.get("into")]
                await asyncio.to_thread(self.git.delete_branches, plan["repo"], names)
        except WorkspaceError as exc:
            log.warning("task %s: its worktrees were not all removed: %s", run.id, exc.message)

    async def sweep(self, active: set[str]) -> list[str]:
        """Remove the worktrees of every task not in `active` (a crash left them, or the task
        ended while git was busy); returns those tasks' ids."""
        if self.git is None:
            return []
        found = await asyncio.to_thread(self.git.task_dirs)
        return await self._remove(found, active)

    async def prune(self, repos: list[str]) -> tuple[list[str], list[str]]:
        """Remove every worktree under `root` (the server must be stopped) and git's records
        of them in their repositories and in `repos`; returns the tasks whose worktrees went
        and the repositories pruned."""
        if self.git is None:
            return [], []
        git = self.git
        found = await asyncio.to_thread(git.task_dirs)
        gone = await self._remove(found, set())  # prunes the repositories they belong to
        pruned = {repo for listed in found.values() for repo in listed}
        for path in repos:
            top = await asyncio.to_thread(git.toplevel, path)
            if top is not None and top not in pruned:
                await asyncio.to_thread(git.prune, top)
                pruned.add(top)
        return gone, sorted(pruned)

    async def _remove(self, found: dict[str, list[str]], keep: set[str]) -> list[str]:
        """Remove the worktrees of the tasks in `found` (task id → repositories) not in
        `keep`, pruning git's records in each repository; returns the tasks removed."""
        assert self.git is not None
        gone = [task for task in found if task not in keep]
        for task in gone:
            repos: list[str | None] = [*found[task]] or [None]
            for repo in repos:
                await asyncio.to_thread(self.git.remove_task, repo, task)
        return gone

    async def _call(self, task_id: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread, finished even when the attempt is cancelled (git must not
        be interrupted halfway), and awaited by `close`."""
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        busy = self._busy.setdefault(task_id, set())
        busy.add(future)
        future.add_done_callback(busy.discard)
        return await asyncio.shield(future)


def _resolve(project: str, repo: str) -> str:
    """`repo` as a real path (a relative one is read from the server's directory)."""
    return os.path.realpath(os.path.join(project, os.path.expanduser(repo)))


def _tail(result: ActionResult) -> str:
    text = (result.error or result.output or result.reason or "").strip()
    code = f"exit {result.exit_code}" if result.exit_code is not None else (result.reason or "")
    return f"{code}: {text[-CHECK_OUTPUT_CHARS:]}" if text else code
