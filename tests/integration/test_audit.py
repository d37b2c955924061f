"""The audit trail (JSON lines) of a live consrv: logins, attach, write changes, keys, input.

Real procServ (child `cat`), consrv as a process, asyncssh and OpenSSH clients.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from consrv.demo import ProcServ
from tests.harness import Consrv, make_key, write_config
from tests.sshclients import scripted_ssh, ssh_argv

pytestmark = pytest.mark.integration


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_action_is_one_json_line_with_time_user_source_and_console(
    tmp_path: Path,
) -> None:
    alice, bob, stranger = (make_key(tmp_path, n) for n in ("alice", "bob", "stranger"))
    audit = tmp_path / "audit" / "audit.jsonl"
    with ProcServ("cat-ioc", tmp_path, ["/bin/cat"]) as procserv:
        config = write_config(
            tmp_path / "consrv.yaml",
            {
                "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
                "audit_log": str(audit),
                "users": {k.name: {"keys": [k.public]} for k in (alice, bob)},
                "defaults": {"rw": ["alice", "bob"], "procserv_keys": "block"},
                "consoles": {"cat-ioc": {"socket": str(procserv.socket), "audit_input": True}},
            },
        )
        consrv = Consrv(config, tmp_path).start()
        try:
            refused = await trio.run_process(
                ssh_argv(consrv.port, stranger.private, "console", "list", tty=False),
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
            assert refused.returncode == 255
            async with (
                trio_asyncio.open_loop(),
                scripted_ssh(consrv.port, alice.private, "console", "cat-ioc", pty=True) as a,
            ):
                await a.expect(rb"you write", stderr=True)
                a.send(b"hello ioc\r")
                await a.expect(rb"hello ioc")
                a.send(b"\x18")  # blocked, and audited
                await a.expect(rb"is not sent", stderr=True)
                a.send(b"\x05cnchecked the crate\r")
                await a.expect(rb"note written", stderr=True)
                async with scripted_ssh(consrv.port, bob.private, "console", "cat-ioc") as b:
                    await b.expect(rb"watching", stderr=True)
                    b.send(b"\x05cf")
                    await a.expect(rb"bob forced write", stderr=True)
            assert consrv.process is not None
            consrv.process.send_signal(signal.SIGHUP)
            await trio.to_thread.run_sync(consrv.wait_for_log, rb"reloaded")
        finally:
            consrv.stop()
    found = records(audit)
    for record in found:
        assert record["time"].endswith("Z")
    events = [(r["event"], r.get("user"), r.get("console")) for r in found]
    assert ("login_failed", None, None) in events
    failed = next(r for r in found if r["event"] == "login_failed")
    assert (failed["reason"], failed["login"]) == ("unknown_key", "console")
    assert failed["from"].startswith("127.0.0.1:")
    for expected in [
        ("login", "alice", None),
        ("attach", "alice", "cat-ioc"),
        ("input", "alice", "cat-ioc"),
        ("procserv_key", "alice", "cat-ioc"),
        ("note", "alice", "cat-ioc"),
        ("write", None, "cat-ioc"),
        ("detach", "bob", "cat-ioc"),
        ("detach", "alice", "cat-ioc"),
        ("reload", None, None),
    ]:
        assert expected in events, expected
    typed = "".join(r["data"] for r in found if r["event"] == "input")
    assert typed == "hello ioc\r"
    key = next(r for r in found if r["event"] == "procserv_key")
    assert (key["key"], key["action"], key["login"]) == ("^X", "blocked", "console")
    forced = [r for r in found if r["event"] == "write" and r["kind"] == "forced"]
    assert [(r["writer"], r["previous"]) for r in forced] == [("bob", "alice")]
    attach = next(r for r in found if r["event"] == "attach")
    assert attach["from"].startswith("127.0.0.1:")
    assert attach["role"] == "rw"


def test_no_audit_log_configured_writes_nothing(tmp_path: Path) -> None:
    from consrv.audit import AuditLog

    log = AuditLog(None)
    log.record("login", user="alice")
    assert not log.enabled
    assert list(tmp_path.iterdir()) == []
