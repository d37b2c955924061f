"""PuTTY's command-line client (``plink``, Debian ``putty-tools``) through consrv.

Keys: converted to PuTTY's format with ``puttygen KEY -O private -o KEY.ppk``.
Host key checking: ``-batch`` refuses an unknown host key, so consrv's is given
by its fingerprint (``-hostkey SHA256:...``), as docs/usage.md tells users.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import asyncssh
import pytest

from tests.interop.clients import PtyClient, check_attach, check_list, check_observer_tail, run
from tests.interop.conftest import CONSOLE, Interop

pytestmark = pytest.mark.integration


class Plink:
    def __init__(self, interop: Interop, directory: Path) -> None:
        self.interop = interop
        self.key = directory / "id_alice.ppk"
        subprocess.run(
            ["puttygen", str(interop.keys["alice"].private), "-O", "private", "-o", str(self.key)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self.fingerprint = asyncssh.read_public_key(interop.host_key).get_fingerprint("sha256")

    def argv(self, login: str, *command: str, tty: bool) -> list[str]:
        return ["plink", "-ssh", "-batch", "-no-antispoof", "-t" if tty else "-T",
                "-P", str(self.interop.port), "-i", str(self.key), "-hostkey", self.fingerprint,
                f"{login}@127.0.0.1", *command]  # fmt: skip


@pytest.fixture(scope="module")
def plink(interop: Interop, tmp_path_factory: pytest.TempPathFactory) -> Plink:
    return Plink(interop, tmp_path_factory.mktemp("putty"))


def test_the_putty_client_is_a_release() -> None:
    done = subprocess.run(["plink", "-V"], capture_output=True, text=True, timeout=10)
    assert re.search(r"plink: Release 0\.\d+", done.stdout), done.stdout


async def test_list(plink: Plink) -> None:
    await check_list(plink.argv("console", "list", tty=False))


async def test_attach_on_a_pty_with_a_window_change(plink: Plink) -> None:
    await check_attach(PtyClient(plink.argv("console", CONSOLE, tty=True)), "plink")


async def test_observer_tail(interop: Interop, plink: Plink) -> None:
    argv = plink.argv("observer", "tail", CONSOLE, "-n", "50", tty=False)
    await check_observer_tail(interop, argv, "plink-observed")


async def test_an_unknown_host_key_is_refused(interop: Interop, plink: Plink) -> None:
    """The host key check is real: with another key's fingerprint plink will not go on."""
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    argv = plink.argv("console", "list", tty=False)
    argv[argv.index(plink.fingerprint)] = other
    status, out, err = await run(argv)
    assert status != 0, out
    assert CONSOLE not in out
    assert "host key" in err.lower(), err
