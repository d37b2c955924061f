"""Debian's nginx in front of consrv's web view, on loopback, with the docs' own config.

The ``location`` block is read from docs/web.md (the one ```nginx block there), with
only the upstream address replaced, and wrapped in a ``server`` that signs users on
with ``auth_basic`` (a real authenticating proxy: it sets ``$remote_user``). nginx
runs in the foreground as one process under the test's temporary directory, and is
stopped by the test.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.waits import wait_until

NGINX = "/usr/sbin/nginx"
DOC = Path(__file__).resolve().parents[2] / "docs" / "web.md"
DOC_UPSTREAM = "http://127.0.0.1:8443"


def doc_location() -> str:
    """The nginx block of docs/web.md, as written there."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1, f"docs/web.md should have one nginx block, has {len(blocks)}"
    assert DOC_UPSTREAM in blocks[0], f"the docs' nginx block no longer proxies {DOC_UPSTREAM}"
    return str(blocks[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_conf(root: Path, port: int, upstream: str, users: Mapping[str, str]) -> Path:
    """A whole nginx.conf under `root`: the docs' location behind basic auth on `port`."""
    (root / "nginx-tmp").mkdir(exist_ok=True)
    htpasswd = root / "htpasswd"
    htpasswd.write_text("".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in users.items()))
    temp = root / "nginx-tmp"
    temps = "\n".join(
        f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    location = doc_location().replace(DOC_UPSTREAM, upstream)
    conf = root / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'nginx-error.log'} info;\n"
        "events { worker_connections 64; }\n"
        "http {\n    access_log off;\n"
        f"{temps}\n    uwsgi_temp_path {temp / 'uwsgi'};\n    scgi_temp_path {temp / 'scgi'};\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        '        auth_basic "consoles";\n'
        f"        auth_basic_user_file {htpasswd};\n"
        f"{location}\n    }}\n}}\n"
    )
    return conf


@dataclass
class Nginx:
    url: str
    process: subprocess.Popen[bytes]
    error_log: Path


@contextmanager
def nginx(root: Path, port: int, upstream: str, users: Mapping[str, str]) -> Iterator[Nginx]:
    """nginx on 127.0.0.1:`port` proxying to `upstream`; stopped on exit."""
    conf = nginx_conf(root, port, upstream, users)
    error_log = root / "nginx-error.log"
    argv = [NGINX, "-p", str(root), "-c", str(conf), "-e", str(error_log)]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=10, check=False)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:

        def listening() -> bool:
            assert process.poll() is None, error_log.read_text(errors="replace")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, f"nginx to listen on 127.0.0.1:{port}")
        yield Nginx(f"http://127.0.0.1:{port}", process, error_log)
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown: open streams end too
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
