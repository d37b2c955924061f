"""Recordings over SSH: ``play NAME`` into the user's terminal, ``cast NAME`` to stdout.

Owns the two commands' options, the pacing of a replay (recorded spacing divided by
``--speed``), what stops it (Ctrl-C, the console's escape and ``.``, end of input)
and the flow control towards the channel (a slow client slows the replay; nothing
is dropped, and nothing here touches the console itself). Rights are the log's:
who may see a console may play its recordings (the caller's ``console`` check).
Knows nothing of asyncssh; the shell hands it the command's run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import trio

from consrv.console import Console
from consrv.contracts import Channel, notice_bytes
from consrv.logfiles import BadTime, parse_time
from consrv.recordings import Event, Limits, cast_files, export, read_range
from consrv.registry import Registry

logger = logging.getLogger(__name__)

__all__ = ["CAST_USAGE", "PLAY_USAGE", "cast", "play"]

OK, NOT_FOUND, USAGE = 0, 1, 2
PLAY_USAGE = "usage: play NAME [--since T] [--until T] [--speed N]"
CAST_USAGE = "usage: cast NAME [--since T] [--until T]"
DEFAULT_SINCE = "10m"  # play with no --since: the last ten minutes
MAX_SPEED = 16.0
LIMITS = Limits()
# Written to the channel while it holds less than this; above it, the replay waits.
CHANNEL_HIGH = 256 << 10
DRAIN_POLL = 0.01
STOP_KEYS = b"\x03"  # Ctrl-C


class _Searches(Protocol):
    @property
    def searches(self) -> trio.CapacityLimiter: ...


class Run(Protocol):
    """What playback needs of the command being carried out (`commands.CommandRun`)."""

    channel: Channel
    pty: bool
    registry: Registry

    @property
    def shell(self) -> _Searches: ...

    def on_input(self, reader: _Stop) -> None: ...

    def console(self, name: str) -> tuple[Console | None, int]: ...

    def error(self, text: str, status: int) -> int: ...


@dataclass(frozen=True)
class _Options:
    name: str
    since: datetime | None
    until: datetime | None
    speed: float


class _Usage(Exception):
    pass


class _Stop:
    """The channel's input while playing: Ctrl-C, ``<escape>.`` or end of input stop it."""

    def __init__(self, escape: bytes) -> None:
        self.event, self._keys, self._seen = trio.Event(), escape + b".", b""

    def feed(self, data: bytes) -> None:
        self._seen = (self._seen + data)[-64:]
        if any(key in self._seen for key in STOP_KEYS) or self._keys in self._seen:
            self.event.set()

    def eof(self) -> None:
        self.event.set()

    def drained(self) -> None:
        pass


async def play(run: Run, args: Sequence[str]) -> int:
    """``play NAME``: the recording, paced as it was recorded (``--speed`` times faster)."""
    try:
        options = _parse(args, PLAY_USAGE, speed=True)
    except _Usage as exc:
        return run.error(f"{exc}; try: help", USAGE)
    events, status = await _events(run, options)
    if events is None:
        return status
    stop = _Stop(run.registry.settings[options.name].escape)
    run.on_input(stop)
    if run.pty:
        keys = "Ctrl-C or ^Ec. stops"
        when = _clock(events[0].time) if events else "-"
        _notice(run, f"playing {options.name} from {when} at {options.speed:g}x; {keys}")
    await _pace(run, events, options.speed, stop.event)
    _notice(run, "stopped" if stop.event.is_set() else "end of recording")
    return OK


async def cast(run: Run, args: Sequence[str]) -> int:
    """``cast NAME``: the range as one asciicast v2 file, on stdout."""
    try:
        options = _parse(args, CAST_USAGE, speed=False)
    except _Usage as exc:
        return run.error(f"{exc}; try: help", USAGE)
    events, status = await _events(run, options)
    if events is None:
        return status
    start = options.since.timestamp() if options.since is not None and not events else None
    for line in export(events, options.name, start):
        await _room(run.channel, trio.Event())
        run.channel.write(line)
    return OK


async def _events(run: Run, options: _Options) -> tuple[list[Event] | None, int]:
    console, status = run.console(options.name)
    if console is None:
        return None, status
    log_dir = run.registry.config.log_dir
    files = cast_files(log_dir, console.name) if log_dir is not None else []
    if not files:
        return None, run.error(f"{console.name} has no recordings (log.record)", NOT_FOUND)
    found = await trio.to_thread.run_sync(
        read_range, files, options.since, options.until, LIMITS, limiter=run.shell.searches
    )
    if found.stopped:
        run.error(f"stopped at a limit ({found.stopped}); narrow the range with --until", OK)
    return found.events, OK


async def _pace(run: Run, events: Iterable[Event], speed: float, stop: trio.Event) -> None:
    """Write each event when its time comes (relative to the first), until `stop`."""
    origin: tuple[float, float] | None = None
    for event in events:
        if origin is None:
            origin = (event.time, trio.current_time())
        due = origin[1] + (event.time - origin[0]) / speed
        with trio.move_on_at(due):
            await stop.wait()
        if not await _room(run.channel, stop):
            return
        if event.code == "o":
            run.channel.write(event.data.encode())
        else:
            _notice(run, f"{_clock(event.time)} {event.data}")


async def _room(channel: Channel, stop: trio.Event) -> bool:
    """Wait until the channel has room (a slow client slows the replay); False if stopped."""
    while channel.buffered() >= CHANNEL_HIGH and not stop.is_set():
        with trio.move_on_after(DRAIN_POLL):  # the channel says nothing when it drains
            await stop.wait()
    return not stop.is_set()


def _notice(run: Run, text: str) -> None:
    run.channel.write_notice(notice_bytes(text, pty=run.pty))


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


def _parse(args: Sequence[str], usage: str, *, speed: bool) -> _Options:
    valued = {"--since", "--until"} | ({"--speed"} if speed else set())
    words, positional, options = list(args), [], {}
    while words:
        word = words.pop(0)
        key, eq, value = word.partition("=")
        if key in valued:
            if not eq:
                if not words:
                    raise _Usage(f"{key} needs a value")
                value = words.pop(0)
            options[key] = value
        elif word.startswith("-"):
            raise _Usage(f"unknown option {word[:20]!r}; {usage}")
        else:
            positional.append(word)
    if len(positional) != 1:
        raise _Usage(usage)
    return _Options(
        positional[0],
        _time(options.get("--since", DEFAULT_SINCE if speed else None)),
        _time(options.get("--until")),
        _speed(options.get("--speed", "1")),
    )


def _time(text: str | None) -> datetime | None:
    try:
        return parse_time(text) if text is not None else None
    except BadTime as exc:
        raise _Usage(str(exc)) from None


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= MAX_SPEED:
        raise _Usage(f"--speed wants a number from 0.1 to {MAX_SPEED:g}")
    return value
