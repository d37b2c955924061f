"""accept() out of resources (issue 13, item 1): the handler that keeps consrv serving.

EMFILE is caused for real in test_ssh_limits.py (a low open-file limit). ENFILE
(the whole system's file table full), ENOBUFS and ENOMEM cannot be caused safely
on a shared machine, so here asyncio's own report of them (the context
``BaseSelectorEventLoop._accept_connection`` passes to the loop's exception
handler) is handed to a real trio-asyncio loop, with consrv's handler installed:
it is counted, and every other error still reaches trio-asyncio's default
handler, which raises it into the loop's nursery as before.
"""

from __future__ import annotations

import errno
import socket

import pytest
import trio
import trio_asyncio

from consrv.ssh.limits import AcceptErrors


def accept_failed(code: int) -> dict[str, object]:
    """What asyncio reports when accept() fails for want of a resource."""
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(code, "out of a resource"),
        "socket": socket.socket(),
    }


@pytest.mark.parametrize("code", [errno.ENFILE, errno.EMFILE, errno.ENOBUFS, errno.ENOMEM])
async def test_accept_out_of_resources_is_counted_and_the_loop_keeps_running(code: int) -> None:
    counted: list[str] = []
    async with trio_asyncio.open_loop() as loop:
        AcceptErrors(counted.append).install(loop)
        context = accept_failed(code)
        loop.call_exception_handler(context)
        loop.call_exception_handler(context)
        await trio.sleep(0.05)  # anything raised into the loop's nursery would end it here
        context["socket"].close()  # type: ignore[attr-defined]
    assert counted == [errno.errorcode[code]] * 2


async def test_any_other_loop_error_still_stops_the_loop() -> None:
    counted: list[str] = []
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="refused"), flatten_subgroups=True):
        async with trio_asyncio.open_loop() as loop:
            AcceptErrors(counted.append).install(loop)
            loop.call_exception_handler(
                {"message": "something else", "exception": OSError(errno.ECONNREFUSED, "refused")}
            )
            await trio.sleep(1)
    assert counted == []
