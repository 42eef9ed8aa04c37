"""What a dead server's actions left running, found in /proc and killed (the `OrphanKiller`)."""

from __future__ import annotations

from reynolds.adapters.actions import shell, tags


class ProcessOrphans:
    """Kills the tagged processes of dead owners, and process groups whose pid is unchanged."""

    def kill_orphans(self) -> int:
        return tags.kill_orphans()

    def is_our_orphan(self, pid: int, start_ticks: int | None, started_at: float | None) -> bool:
        return shell.is_our_orphan(pid, start_ticks, started_at)

    def kill_group(self, pid: int) -> None:
        shell.kill_group(pid)
