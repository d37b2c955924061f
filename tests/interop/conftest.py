"""The interoperability world: procServ with a cheap line-echoing child, consrv in front.

One world per test module (each module is one client family). Users' keys are
made here in the three types people have (ed25519, RSA, ECDSA) and converted to
each client's own format by the client modules. Policy as in tests/integration:
loopback only, port 0, every wait bounded, every process stopped here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.waits import deadline

CONSOLE = "cat-ioc"
# The console's child answers every line with "got:LINE", so a test sees that its
# input went through consrv and procServ to the child (an echo alone could be local).
CHILD = ["/bin/sh", "-c", 'while IFS= read -r line; do echo "got:$line"; done']


@dataclass
class Interop:
    root: Path
    procserv: ProcServ
    consrv: Consrv
    metrics_port: int
    keys: dict[str, UserKey]  # alice: ed25519, rita: RSA 2048, erin: ECDSA P-256

    @property
    def port(self) -> int:
        return self.consrv.port

    @property
    def host_key(self) -> Path:
        """consrv's public host key (OpenSSH format), for the clients' host key checks."""
        return self.root / "host_key.pub"

    def log_since(self, offset: int) -> str:
        """consrv's log after ``offset`` characters (see `log_size`)."""
        return self.consrv.stderr()[offset:]

    def log_size(self) -> int:
        return len(self.consrv.stderr())

    async def scrape(self) -> dict[str, float]:
        """Every sample of ``/metrics``, keyed ``name{label="value",...}``."""
        with deadline(10, f"a scrape of /metrics on port {self.metrics_port}"):
            stream = await trio.open_tcp_stream("127.0.0.1", self.metrics_port)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                data = bytearray()
                while chunk := await stream.receive_some(65536):
                    data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    async def handshake_failures(self, reason: str) -> float:
        return (await self.scrape())[f'consrv_ssh_handshake_failures_total{{reason="{reason}"}}']


def make_typed_key(directory: Path, name: str, alg: str, **options: int) -> UserKey:
    """A key pair of type ``alg`` (OpenSSH formats), as ``ssh-keygen -t`` would write it."""
    key = asyncssh.generate_private_key(alg, comment=f"{name}@test", **options)
    private = directory / f"id_{name}"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    public = key.export_public_key().decode().strip()
    private.with_name(private.name + ".pub").write_text(public + "\n")
    return UserKey(name, private, public)


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    root = tmp_path_factory.mktemp("interop")
    keys = {
        "alice": make_key(root, "alice"),
        "rita": make_typed_key(root, "rita", "ssh-rsa", key_size=2048),
        "erin": make_typed_key(root, "erin", "ecdsa-sha2-nistp256"),
    }
    with ProcServ(CONSOLE, root, CHILD) as procserv:
        config = write_config(
            root / "consrv.yaml",
            {
                "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
                "metrics": {"listen": "127.0.0.1:0"},
                "users": {name: {"keys": [key.public]} for name, key in keys.items()},
                "defaults": {"rw": list(keys), "ro": ["*"]},
                "consoles": {CONSOLE: {"socket": str(procserv.socket)}},
            },
        )
        consrv = Consrv(config, root).start()
        try:
            yield Interop(root, procserv, consrv, consrv.metrics_port(), keys)
        finally:
            consrv.stop()


def got(marker: str) -> bytes:
    """A regex for the child's answer to the line ``marker``."""
    return b"got:" + re.escape(marker.encode())
