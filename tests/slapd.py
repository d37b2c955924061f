"""A real OpenLDAP server (Debian's ``slapd``) for tests: loopback, a temporary database.

The config is written as cn=config LDIF and loaded with ``slapadd -n0`` into a
fresh ``slapd.d`` (no debconf, nothing of the host's /etc/ldap changed); the
schemas are Debian's core and cosine plus ``tests/data/ldap/openssh-lpk.ldif``
(``sshPublicKey``). Entries are changed with the real ``ldapmodify``. Anyone may
read (the keys command binds anonymously); the root DN writes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from tests.waits import wait_until

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "secret"
LPK_SCHEMA = Path(__file__).parent / "data" / "ldap" / "openssh-lpk.ldif"

_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/nis.ldif

include: file://{lpk}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcAccess: {{0}}to * by * read

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcDbDirectory: {root}/db
olcDbMaxSize: 16777216
olcRootDN: {root_dn}
olcRootPW: {root_pw}
"""

_BASE = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people
"""


def free_port() -> int:
    """A loopback port free now (slapd cannot be told port 0 and say which it took)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Slapd:
    """``slapd`` in the foreground on 127.0.0.1; ``stop()`` (or the with-block) ends it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def start(self) -> Slapd:
        config_dir, db = self.root / "slapd.d", self.root / "db"
        config_dir.mkdir(parents=True)
        db.mkdir()
        ldif = self.root / "config.ldif"
        ldif.write_text(
            _CONFIG.format(
                root=self.root, lpk=LPK_SCHEMA, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW
            )
        )
        _run(["slapadd", "-n0", "-F", str(config_dir), "-l", str(ldif)])
        self.port = free_port()
        with (self.root / "slapd.stderr").open("wb") as err:
            self.process = subprocess.Popen(
                ["slapd", "-d", "0", "-h", self.uri, "-F", str(config_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        wait_until(self._answers, f"slapd answering on {self.uri}", timeout=20)
        self.modify(_BASE, add=True)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            err = (self.root / "slapd.stderr").read_text(errors="replace")
            raise AssertionError(f"slapd exited {self.process.returncode}: {err}")
        probe = ["ldapsearch", "-x", "-LLL", "-H", self.uri, "-b", "", "-s", "base", "1.1"]
        return subprocess.run(probe, capture_output=True, check=False, timeout=10).returncode == 0

    def modify(self, ldif: str, *, add: bool = False) -> None:
        """``ldapmodify`` (``-a``: add entries) as the root DN."""
        argv = ["ldapmodify", "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PW]
        _run([*argv, "-a"] if add else argv, stdin=ldif)

    def add_user(self, uid: str, *keys: str) -> None:
        lines = [f"dn: uid={uid},{PEOPLE}", "objectClass: account", "objectClass: ldapPublicKey"]
        lines += [f"uid: {uid}", *(f"sshPublicKey: {key}" for key in keys)]
        self.modify("\n".join(lines) + "\n", add=True)

    def set_keys(self, uid: str, *keys: str) -> None:
        changes = [f"dn: uid={uid},{PEOPLE}", "changetype: modify", "replace: sshPublicKey"]
        self.modify("\n".join([*changes, *(f"sshPublicKey: {key}" for key in keys)]) + "\n")

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a paused slapd cannot act on TERM
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                            timeout=20)  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:2])} failed ({result.returncode}): {result.stderr}")
