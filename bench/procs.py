"""The processes the bench starts, and what /proc says about them.

Owns: starting every process (each in its own session, registered), killing
them and all their descendants at the end (also on Ctrl-C or failure), and
reading CPU time, memory and UNIX-socket connections from /proc.

CPU accounting (why it is exact without cgroups): for a process tree,
``utime + stime + cutime + cstime`` summed over the *live* processes counts every
process once: a live one by its own times, an exited one through the
``cutime/cstime`` of the ancestor that reaped it (the kernel adds a reaped
child's times, including its own reaped children, to its parent). sshd, its
per-connection children, the shell and socat, and conserver's group processes
are all reaped by their parents, so the delta of this sum over a window is the
CPU the whole server used in it, including processes that started and ended
inside it. Resolution: one clock tick (10 ms) per process.

Must not know: which server or client a process is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
POLL = 0.05


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat the bench uses."""

    pid: int
    ppid: int
    state: str
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_pages: int


def read_stat(pid: int) -> Stat | None:
    """/proc/PID/stat of one process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the ")" that closes the command name (which may hold spaces):
    # 0 state, 1 ppid, ..., 11 utime, 12 stime, 13 cutime, 14 cstime, ..., 21 rss.
    fields = text.rpartition(")")[2].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return Stat(pid, int(fields[1]), fields[0], ticks, int(fields[21]))


def process_table() -> dict[int, Stat]:
    """Every process on the machine, by pid."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_stat(int(entry))) is not None:
            table[stat.pid] = stat
    return table


def descendants(root: int, table: dict[int, Stat]) -> list[int]:
    """``root`` and every process below it in ``table`` (root first)."""
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class MachineCpu:
    """How busy all the machine's cores were between `__init__` and `busy` (0..1)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        """(busy, total) jiffies over all cores, from /proc/stat."""
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
        return total - idle, total

    def busy(self) -> float:
        busy, total = self._read()
        elapsed = total - self._start[1]
        return (busy - self._start[0]) / elapsed if elapsed else 0.0


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and all its descendants, dead or alive."""
    table = process_table()
    return sum(table[pid].cpu_ticks for pid in descendants(root, table)) / CLOCK_TICK


@dataclass(frozen=True)
class Memory:
    """Memory of a process tree, in bytes: RSS summed, and PSS (shared pages split)."""

    processes: int
    rss: int
    pss: int


def _pss(pid: int) -> int:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_memory(root: int) -> Memory:
    """RSS and PSS of ``root`` and its descendants."""
    table = process_table()
    pids = descendants(root, table)
    rss = sum(table[pid].rss_pages for pid in pids) * PAGE
    return Memory(len(pids), rss, sum(_pss(pid) for pid in pids))


def accepted_connections(directory: Path) -> int:
    """Connected UNIX sockets whose address lies under ``directory``.

    The accepting end of a connection carries the listener's path in
    /proc/net/unix, so this counts the clients of every procServ under it.
    """
    prefix = str(directory).rstrip("/") + "/"
    count = 0
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[5] == "03" and fields[7].startswith(prefix):
                count += 1
    return count


def pid_alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(POLL)


def _reap() -> None:
    """Collect exited children of the bench (no zombies left behind); only at the very end,
    since a ``Popen`` or ``trio.Process`` whose child was reaped here sees status 0."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_trees(roots: Sequence[int], grace: float) -> None:
    """SIGTERM ``roots``, wait up to ``grace`` s, then SIGKILL them and every descendant."""
    table = process_table()
    tree = {pid for root in roots for pid in descendants(root, table)}
    _signal_all(roots, signal.SIGTERM)
    _wait_gone(list(roots), grace)
    table = process_table()  # children started since, and those orphaned meanwhile
    tree |= {pid for root in roots for pid in descendants(root, table)}
    _signal_all(tree, signal.SIGKILL)
    _wait_gone(sorted(tree), 5.0)


class Reaper:
    """Starts processes (own session each, argv lists only) and kills them all at the end."""

    def __init__(self) -> None:
        self._pids: list[int] = []

    def popen(
        self,
        argv: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session (Ctrl-C in the terminal reaches the bench only)."""
        proc = subprocess.Popen(  # noqa: S603 - an argv list, never a shell
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            start_new_session=True,
        )
        self.add(proc.pid)
        return proc

    def add(self, pid: int) -> None:
        """Remember a process started elsewhere (e.g. by trio) for the final clean-up."""
        self._pids.append(pid)

    def stop(self, pids: Sequence[int], grace: float = 5.0) -> None:
        """Stop these processes and their descendants now."""
        kill_trees(pids, grace)
        stopped = set(pids)
        self._pids = [pid for pid in self._pids if pid not in stopped]

    def kill_all(self, grace: float = 3.0) -> None:
        """Stop everything still registered (newest first), with all descendants."""
        live = [pid for pid in reversed(self._pids) if pid_alive(pid)]
        if live:
            kill_trees(live, grace)
        self._pids.clear()
        _reap()
