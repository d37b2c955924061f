"""Kernel notice of socket paths appearing, vanishing or being replaced (inotify).

Owns one inotify instance and the one task that reads it. A subscription names a
path whose directories may not exist yet: it watches the deepest directory that
does, moves down as directories appear and back up as they vanish, and calls its
callback when anything happens to the path (created, replaced, removed, its
attributes changed), when a directory on the way to it appears or vanishes, or
when the kernel's queue overflowed (then every subscription is called).

Consoles that are down wait here instead of polling their path (200 down consoles
polled 20 times a second cost a third of a core); connected consoles learn here
that a new procServ took their path; discovery learns that a socket appeared.
An idle host costs nothing: no timer fires.

Why inotify_simple: a ctypes wrapper of the three inotify calls and the event
parser (under 100 lines, no dependencies, maintained), which gives the raw fd for
``trio.lowlevel.wait_readable``; the asyncio-based bindings would put another
event loop between the kernel and trio. Where inotify is not available (no
instances left, a kernel without it), `PathWatcher.open` returns None and callers
fall back to polling.

Must not know: consoles, procServ, SSH.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import trio
from inotify_simple import INotify
from inotify_simple import flags as f

logger = logging.getLogger(__name__)

# Anything that can make a path appear, vanish or change identity, in a directory.
DIR_MASK = (
    f.CREATE | f.MOVED_TO | f.DELETE | f.MOVED_FROM | f.ATTRIB
    | f.DELETE_SELF | f.MOVE_SELF | f.ONLYDIR
)  # fmt: skip
_GONE = f.IGNORED | f.DELETE_SELF | f.MOVE_SELF


ANY = "*"  # the child key of a subscription to everything in a directory


class Subscription:
    """Interest in one path (``inside``: in anything in that directory); `close` ends it.

    The callback runs in the watcher's task.
    """

    def __init__(
        self, watcher: PathWatcher, path: Path, callback: Callable[[], None], inside: bool
    ) -> None:
        self.watcher, self.path, self.callback, self.inside = watcher, path, callback, inside
        self.directory: Path | None = None  # the directory watched for it now
        self.child = ""  # the name in `directory` on the way to `path` (ANY: inside it)

    @property
    def home(self) -> Path:
        """The directory watched once everything on the way exists."""
        return self.path if self.inside else self.path.parent

    def close(self) -> None:
        self.watcher._disarm(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Watch:
    def __init__(self, wd: int) -> None:
        self.wd = wd
        self.subs: dict[str, set[Subscription]] = {}


class PathWatcher:
    """One inotify instance; `run` reads it (start it in a nursery)."""

    def __init__(self, inotify: INotify) -> None:
        self._inotify = inotify
        self._watches: dict[Path, _Watch] = {}
        self._dirs: dict[int, Path] = {}
        self.events = 0  # inotify events read, for tests and metrics

    @classmethod
    def open(cls) -> PathWatcher | None:
        """A watcher, or None (logged) where the kernel gives no inotify instance."""
        try:
            return cls(INotify(nonblocking=True))
        except OSError as exc:
            logger.warning("inotify unavailable (%s): socket paths are polled", exc.strerror)
            return None

    def subscribe(self, path: Path, callback: Callable[[], None]) -> Subscription:
        """Call ``callback`` when ``path`` appears, vanishes or changes."""
        sub = Subscription(self, path, callback, inside=False)
        self._arm(sub)
        return sub

    def subscribe_inside(self, directory: Path, callback: Callable[[], None]) -> Subscription:
        """Call ``callback`` when anything in ``directory`` (or the directory) changes."""
        sub = Subscription(self, directory, callback, inside=True)
        self._arm(sub)
        return sub

    async def wait_changed(self, path: Path, unchanged: Callable[[], bool]) -> bool:
        """Return when something happens to ``path`` (the caller bounds the wait).

        ``unchanged()`` is asked once the watch is in place, so a change between the
        caller's last look and the watch is not missed. False at once if the kernel
        would not watch any directory on the way (no watches left): poll instead.
        """
        changed = trio.Event()
        with self.subscribe(path, changed.set) as sub:
            if sub.directory is None:
                return False
            if unchanged():
                await changed.wait()
        return True

    def watched_directories(self) -> int:
        return len(self._watches)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read events and call subscribers, until cancelled (then the fd is closed)."""
        fd = self._inotify.fileno()
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(fd)
                self._dispatch(self._inotify.read(timeout=0))
        finally:
            trio.lowlevel.notify_closing(fd)
            self._inotify.close()

    # -- arming: the deepest existing directory on the way to the path ----------
    def _arm(self, sub: Subscription) -> None:
        for directory, child in _ancestors(sub.path, sub.inside):
            if directory in self._watches:
                self._attach(sub, directory, child)
                return
            try:
                wd = self._inotify.add_watch(os.fspath(directory), DIR_MASK)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                    continue  # not there (or not ours to see): one level up
                logger.warning("inotify: cannot watch %s: %s", directory, exc.strerror)
                return  # e.g. ENOSPC (max_user_watches): the caller's timeout polls
            self._watches[directory] = _Watch(wd)
            self._dirs[wd] = directory
            self._attach(sub, directory, child)
            return

    def _attach(self, sub: Subscription, directory: Path, child: str) -> None:
        sub.directory, sub.child = directory, child
        self._watches[directory].subs.setdefault(child, set()).add(sub)

    def _disarm(self, sub: Subscription) -> None:
        directory, sub.directory = sub.directory, None
        if directory is None:
            return
        watch = self._watches[directory]
        subs = watch.subs.get(sub.child, set())
        subs.discard(sub)
        if not subs:
            watch.subs.pop(sub.child, None)
        if not watch.subs:
            del self._watches[directory]
            del self._dirs[watch.wd]
            # The directory may have gone first: then the kernel dropped the watch already.
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(watch.wd)

    def _rearm(self, sub: Subscription) -> None:
        self._disarm(sub)
        self._arm(sub)

    # -- events -------------------------------------------------------------------
    def _dispatch(self, events: Iterable[tuple[int, int, int, str]]) -> None:
        woken: dict[Subscription, None] = {}  # ordered, once each
        for wd, mask, _cookie, name in events:
            self.events += 1
            if mask & f.Q_OVERFLOW:
                woken.update(dict.fromkeys(self._all()))
                continue
            directory = self._dirs.get(wd)
            if directory is None:
                continue  # a watch we removed
            watch = self._watches[directory]
            if mask & _GONE:
                for subs in list(watch.subs.values()):
                    woken.update(dict.fromkeys(subs))
                self._forget(directory)
                continue
            woken.update(dict.fromkeys(watch.subs.get(name, ())))
            woken.update(dict.fromkeys(watch.subs.get(ANY, ())))
        for sub in woken:
            if sub.directory != sub.home:
                self._rearm(sub)  # a directory on the way appeared or vanished
        for sub in woken:
            sub.callback()

    def _forget(self, directory: Path) -> None:
        """The kernel dropped ``directory``'s watch: its subscriptions watch nothing now."""
        watch = self._watches.pop(directory)
        del self._dirs[watch.wd]
        for subs in watch.subs.values():
            for sub in subs:
                sub.directory = None

    def _all(self) -> list[Subscription]:
        return [sub for watch in self._watches.values() for s in watch.subs.values() for sub in s]


def _ancestors(path: Path, inside: bool) -> Iterable[tuple[Path, str]]:
    """(directory, name in it on the way to ``path``), deepest first."""
    if inside:
        yield path, ANY
    child = path
    for directory in path.parents:
        yield directory, child.name
        child = directory
