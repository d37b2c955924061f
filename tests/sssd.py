"""A real sssd (Debian's ``sssd-ldap``) for tests: the LDAP provider against tests/slapd.py.

sssd runs in the foreground (``sssd -i -c FILE``) with a config file the test writes
(root's, mode 0600, in a root-only directory under /run). Its sockets
(/var/lib/sss/pipes), caches (/var/lib/sss/db, /var/lib/sss/mc) and pidfile
(/run/sssd.pid) are paths compiled into sssd and its clients: one sssd per host. So:

- a test holds LOCK (``flock``) while its sssd runs;
- an sssd a crashed test left (its command line names CONFIG_PREFIX) is stopped
  first; any other running sssd is the host's own: the test fails naming it, and
  leaves it alone;
- /var/lib/sss/db and /var/lib/sss/mc are put back as they were after the run (the
  test's domain, DOMAIN, leaves no cache behind).

The host's /etc/nsswitch.conf is not touched: a process reaches sssd's NSS answers
only when started through `with_nsswitch` (its own mount namespace, where a copy
with ``sss`` is bind-mounted over /etc/nsswitch.conf), and ``sss_ssh_authorizedkeys``
talks to /var/lib/sss/pipes/ssh itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.slapd import SUFFIX, Slapd
from tests.waits import wait_until

DOMAIN = "consrvtest"
CONFIG_PREFIX = "consrv-test-sssd-"
LOCK = Path("/run/lock/consrv-test-sssd.lock")
PIDFILE = Path("/run/sssd.pid")
STATE = (Path("/var/lib/sss/db"), Path("/var/lib/sss/mc"))
PIPES = Path("/var/lib/sss/pipes")  # its sockets (nss, ssh) are removed after the run
AUTHORIZED_KEYS = "/usr/bin/sss_ssh_authorizedkeys"
# sssd's cache of an entry (user, keys, groups): asked of LDAP again once this old.
ENTRY_CACHE_TIMEOUT = 2
# libnss_sss answers from sssd's memory cache (/var/lib/sss/mc) for this long without
# asking sssd: a group left in LDAP is seen after both (the default, 300 s, hid it
# for over 60 s).
MEMCACHE_TIMEOUT = 2

CONFIG = """\
[sssd]
services = nss, ssh
domains = {domain}

[nss]
memcache_timeout = {memcache}

[ssh]

[domain/{domain}]
id_provider = ldap
auth_provider = none
ldap_uri = {uri}
ldap_search_base = {base}
ldap_schema = rfc2307
ldap_user_ssh_public_key = sshPublicKey
ldap_id_use_start_tls = false
entry_cache_timeout = {timeout}
"""


def nsswitch_with_sss(path: Path) -> Path:
    """The host's /etc/nsswitch.conf with ``sss`` last for passwd and group (as
    libnss-sss's own install does), written to ``path`` for `with_nsswitch`."""
    lines = []
    for line in Path("/etc/nsswitch.conf").read_text().splitlines():
        if re.match(r"(passwd|group):", line) and not re.search(r"\ssss\b", line):
            line = line.split("#", 1)[0].rstrip() + " sss"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def with_nsswitch(nsswitch: Path, argv: list[str]) -> list[str]:
    """``argv`` run in a mount namespace of its own where ``nsswitch`` is bind-mounted on
    /etc/nsswitch.conf: that process (and its children) asks sssd, the host does not.
    ``unshare`` and ``sh`` exec, so the pid is ``argv``'s."""
    script = 'mount --bind "$0" /etc/nsswitch.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
            str(nsswitch), *argv]  # fmt: skip


class Sssd:
    """``sssd -i`` for `DOMAIN` against ``slapd``; ``probe``: a directory user with a key,
    asked through ``sss_ssh_authorizedkeys`` until sssd answers."""

    def __init__(self, slapd: Slapd, probe: str) -> None:
        self.slapd = slapd
        self.probe = probe
        self.root = Path(tempfile.mkdtemp(prefix=CONFIG_PREFIX, dir="/run"))  # mode 0700
        self.config = self.root / "sssd.conf"
        self.stderr_path = self.root / "sssd.stderr"
        self.saved = self.root / "saved"
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self._pipes: set[Path] = set()
        self._own_state = False

    def start(self) -> Sssd:
        self._take_lock()
        _stop_leftover()
        self._pipes = set(PIPES.iterdir()) if PIPES.is_dir() else set()
        for path in STATE:  # the host's caches, put back by stop()
            if path.exists():
                shutil.copytree(path, self.saved / path.name, symlinks=True)
        self._own_state = True  # from here on stop() puts /var/lib/sss back
        for path in STATE:
            _empty(path)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.config_text())
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                ["sssd", "-i", "-c", str(self.config), "--logger=stderr", "-d", "0x0070"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        wait_until(
            self._answers,
            f"sssd answering for {self.probe} ({AUTHORIZED_KEYS} through /var/lib/sss/pipes/ssh)",
            timeout=30,
            interval=0.2,
            seen=self.stderr,
        )
        return self

    def config_text(self) -> str:
        return CONFIG.format(domain=DOMAIN, uri=self.slapd.uri, base=SUFFIX,
                             timeout=ENTRY_CACHE_TIMEOUT, memcache=MEMCACHE_TIMEOUT)  # fmt: skip

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"sssd exited {self.process.returncode}: {self.stderr()}")
        probe = subprocess.run([AUTHORIZED_KEYS, self.probe], capture_output=True, check=False,
                               timeout=10)  # fmt: skip
        return probe.returncode == 0 and bool(probe.stdout.strip())

    def _take_lock(self) -> None:
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)

        def locked() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            wait_until(locked, f"{LOCK} (another test's sssd is running)", timeout=300,
                       interval=0.5)  # fmt: skip
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd

    def stop(self) -> None:
        try:
            if self.process is not None:
                _end_group(self.process.pid, self.process)
            if not self._own_state:  # never got the lock, or met the host's sssd
                return
            PIDFILE.unlink(missing_ok=True)
            for entry in set(PIPES.iterdir()) - self._pipes if PIPES.is_dir() else ():
                if entry.is_socket():
                    entry.unlink()
            for path in STATE:
                _empty(path)
                saved = self.saved / path.name
                if saved.exists():
                    shutil.copytree(saved, path, symlinks=True, dirs_exist_ok=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None

    def __enter__(self) -> Sssd:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _empty(path: Path) -> None:
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _live_in_group(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is alive (zombies do not count)."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_leftover() -> None:
    """An sssd a crashed test left is stopped; the host's own is named, not touched."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    cmdline = _cmdline(pid)
    if not cmdline:
        PIDFILE.unlink(missing_ok=True)  # stale: nothing runs under that pid
        return
    if CONFIG_PREFIX not in cmdline:
        raise AssertionError(
            f"an sssd the tests did not start runs (pid {pid}: {cmdline.strip()}); its "
            f"sockets in /var/lib/sss/pipes are the ones the test needs: stop it first"
        )
    _end_group(pid, None)
    PIDFILE.unlink(missing_ok=True)
    # what its test would have put back: its domain's caches, the memory cache and the
    # sockets it made, its config directory
    for name in (f"cache_{DOMAIN}.ldb", f"timestamps_{DOMAIN}.ldb", "sssd.ldb"):
        (STATE[0] / name).unlink(missing_ok=True)
    _empty(STATE[1])
    for entry in PIPES.iterdir() if PIPES.is_dir() else ():
        if entry.is_socket():
            entry.unlink()
    config = Path(cmdline.split(" -c ", 1)[1].split()[0]).parent
    if config.name.startswith(CONFIG_PREFIX):
        shutil.rmtree(config, ignore_errors=True)


def _end_group(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to sssd's process group (sssd, sssd_be, sssd_nss, sssd_ssh), SIGKILL
    after 10 s; returns when none of them is left."""

    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def gone() -> bool:
        if process is not None:
            process.poll()  # reaps sssd itself
        return not _live_in_group(pid)

    signal_group(signal.SIGTERM)
    end = time.monotonic() + 10
    while not gone() and time.monotonic() < end:
        time.sleep(0.05)
    if not gone():
        signal_group(signal.SIGKILL)
        wait_until(gone, f"sssd's process group {pid} to exit after SIGKILL", timeout=10)
    if process is not None:
        process.wait()
