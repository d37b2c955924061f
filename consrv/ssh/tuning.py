"""What consrv changes in asyncssh and trio-asyncio for speed, and why each is safe.

Each change is made on one object (a connection, the loop), never on a class, so
nothing else in the process (a test's asyncssh client, say) is affected.
docs/performance.md has the measurements ("Server CPU per login").

- `skip_config_reload`: at a connection's first authentication request asyncssh
  rebuilds all its connection options (``SSHServerConnection.reload_config``)
  so that ``Match`` blocks of an sshd-style config file can apply, and it does
  so in a worker thread (``run_in_executor``), where building them resolves
  host names through ``/etc/hosts``. consrv passes no config file, so the
  rebuilt options are the ones the connection already has: one thread hop and
  about a tenth of a login's CPU for nothing.
- `run_ready_callbacks_together`: trio-asyncio runs each asyncio callback
  (every step of an asyncssh task, every ``call_soon``) as one trio scheduling
  round of its own: a pass through trio's run loop and an ``epoll_wait`` per
  callback. asyncio itself runs, per pass, every callback that was ready when
  the pass began. This makes trio-asyncio's loop do nearly the same: after the
  callback it waited for, it runs the ones queued behind it by then, in order,
  without yielding to trio in between. Callbacks queued while those run wait
  for the next pass, so a pass is bounded and a callback that keeps
  rescheduling itself cannot starve trio's tasks (tests/test_ssh_tuning.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
import trio


def skip_config_reload(conn: asyncssh.SSHServerConnection) -> None:
    """Keep ``conn``'s options at its first authentication request (consrv has no
    sshd-style config file whose ``Match`` blocks could change them)."""

    async def unchanged() -> None:
        return None

    conn.reload_config = unchanged  # type: ignore[method-assign]


def run_ready_callbacks_together(loop: Any) -> bool:
    """Make trio-asyncio ``loop`` run its queued callbacks in passes, as asyncio does.

    ``loop`` is a running ``trio_asyncio.TrioEventLoop``; its main loop looks
    ``_main_loop_one`` up on the instance for every callback, so the change
    applies from its next callback on. False (nothing changed) on a trio-asyncio
    whose loop has no such parts (checked with 0.16).
    """
    one: Callable[..., Awaitable[None]] | None = getattr(loop, "_main_loop_one", None)
    queue: trio.MemoryReceiveChannel[Any] | None = getattr(loop, "_q_recv", None)
    if one is None or not isinstance(queue, trio.MemoryReceiveChannel):
        return False

    async def one_pass(no_wait: bool = False) -> None:
        await one(no_wait)
        if no_wait:  # the loop is being drained at exit: one at a time, as before
            return
        for _ in range(queue.statistics().current_buffer_used):
            try:
                await one(True)
            except trio.WouldBlock:  # a due timer ran instead of a queued callback
                return

    loop._main_loop_one = one_pass
    return True
