"""Resident memory of processes (:mod:`bench.timing.bench_memory`): a thread sampling the RSS of
some pids, the kernel's RSS high-water mark of the calling process, and MiB formatting."""

from __future__ import annotations

import resource
import threading
import time

import psutil

MiB = 1024 * 1024


class RssSampler(threading.Thread):
    """Reads the RSS of some pids every ``interval`` seconds; keeps every (time, rss) sample.

    Parameters
    ----------
    pids
        Process ids by name.
    interval
        Sampling period in seconds.
    """

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        self.interval = interval
        self._stop_event = threading.Event()

    def sample(self) -> None:
        """Append one (time, RSS) sample of every process still alive."""
        now = time.perf_counter()
        for name, proc in self.procs.items():
            try:
                self.samples[name].append((now, proc.memory_info().rss))
            except psutil.NoSuchProcess:
                pass

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop the thread and take a last sample."""
        self._stop_event.set()
        self.join()
        self.sample()

    def peak(self, name: str, since: float = 0.0) -> int:
        """The largest RSS of ``name`` sampled at or after ``since`` (``time.perf_counter`` seconds)."""
        return max((rss for t, rss in self.samples[name] if t >= since), default=0)

    def at_fractions(self, name: str, start: float, stop: float, fractions: tuple[float, ...]) -> list[int]:
        """The last RSS sampled at or before each fraction of the interval [start, stop].

        Parameters
        ----------
        name
            Process name.
        start, stop
            The run's ``time.perf_counter`` interval.
        fractions
            Fractions of the interval.

        Returns
        -------
        list of int
            RSS in bytes (0 before the first sample).
        """
        out = []
        for f in fractions:
            t_f = start + f * (stop - start)
            before = [rss for t, rss in self.samples[name] if t <= t_f]
            out.append(before[-1] if before else 0)
        return out


def maxrss_bytes() -> int:
    """The kernel's RSS high-water mark of this process in bytes (run on each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def mib(x: float) -> str:
    """Bytes as whole MiB with thousands separators."""
    return f"{x / MiB:,.0f}"
