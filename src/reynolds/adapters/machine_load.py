"""The machine's CPU and memory use, from /proc (Linux); no dependency."""

from __future__ import annotations

from pathlib import Path


class SystemSampler:
    """CPU % since the previous sample (since boot on the first) and memory % in use now."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies

    def sample(self) -> tuple[float, float]:
        """(cpu_percent, memory_percent); zeros where /proc cannot be read."""
        return self._cpu(), self._memory()

    def _cpu(self) -> float:
        try:
            first = (self._proc / "stat").read_text().split("\n", 1)[0].split()
        except OSError:
            return 0.0
        values = [int(v) for v in first[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # guest time is already counted in user and nice
        busy = total - idle
        prev_busy, prev_total = self._last or (0, 0)
        self._last = (busy, total)
        span = total - prev_total
        return 100.0 * (busy - prev_busy) / span if span > 0 else 0.0

    def _memory(self) -> float:
        found = memory(self._proc)
        if found is None:
            return 0.0
        available, total = found
        return 100.0 * (total - available) / total


def memory(proc: Path = Path("/proc")) -> tuple[int, int] | None:
    """(available bytes, total bytes) from `proc`/meminfo; None when it cannot be read."""
    fields: dict[str, int] = {}
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            words = rest.split()
            if words:
                fields[name] = int(words[0]) * 1024
    except (OSError, ValueError):
        return None
    total = fields.get("MemTotal", 0)
    if total <= 0:
        return None
    return fields.get("MemAvailable", fields.get("MemFree", 0)), total
