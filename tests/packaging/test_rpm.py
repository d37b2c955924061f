"""The .rpm, checked with Debian's rpm tools: its file list, owners, modes, scriptlets.

No RHEL machine runs here, so the .rpm is not installed; what rpm would do with it
is read from the package itself (``rpm -qp``), and its payload is compared with the
.deb's, which test_deb.py installs and runs for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import Built
from tests.packaging.installed import run

pytestmark = pytest.mark.integration

# Tab-separated: a file name may hold spaces (setuptools' "script (dev).tmpl").
FILES = (
    "[%{FILEMODES:perms}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\t%{FILENAMES}\n]"
)


def query(rpm: Path, *args: str) -> str:
    return run(["rpm", "-qp", *args, str(rpm)])


def files(rpm: Path) -> dict[str, tuple[str, str, str, str]]:
    """path -> (mode, user, group, flags: c config, n noreplace)."""
    found = {}
    for line in query(rpm, "--qf", FILES).splitlines():
        mode, user, group, flags, path = line.split("\t")
        found[path] = (mode, user, group, flags)
    return found


def test_metadata_and_dependencies(built: Built) -> None:
    fields = "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}"
    assert query(built.rpm, "--qf", fields) == "consrv 0.1.0 1 x86_64 MIT"
    requires = query(built.rpm, "--requires").split()
    assert "python3.11" in requires
    assert "shadow-utils" in requires  # useradd, groupadd in %pre
    assert query(built.rpm, "--recommends").split() == ["procServ", "polkit"]


def test_files_owners_and_modes(built: Built) -> None:
    listed = files(built.rpm)
    assert listed["/etc/consrv/consrv.yaml"] == ("-rw-r-----", "root", "consrv", "cn")
    assert listed["/var/lib/consrv"] == ("drwxr-x---", "consrv", "consrv", "")
    assert listed["/var/log/consrv"] == ("drwxr-x---", "consrv", "consrv", "")
    assert listed["/usr/lib/systemd/system/consrv.service"][:3] == ("-rw-r--r--", "root", "root")
    assert listed["/usr/share/polkit-1/rules.d/50-consrv-ioc.rules"][:3] == (
        "-rw-r--r--", "root", "root",
    )  # fmt: skip
    assert listed["/usr/share/doc/consrv/operations.md"][:3] == ("-rw-r--r--", "root", "root")
    assert listed["/opt/consrv/bin/consrv"][:3] == ("-rwxr-xr-x", "root", "root")
    links = query(built.rpm, "--qf", "[%{FILENAMES} %{FILELINKTOS}\n]")
    assert "/usr/bin/consrv /opt/consrv/bin/consrv" in links.splitlines()
    assert "/opt/consrv/bin/python3.11 /usr/bin/python3.11" in links.splitlines()
    venv = {path: info for path, info in listed.items() if path.startswith("/opt/consrv/")}
    assert all(user == group == "root" for _, user, group, _ in venv.values())
    writable = [p for p, (mode, *_) in venv.items() if mode[0] != "l" and "w" in mode[4:]]
    assert writable == []  # nobody but root may change the program


def test_the_payload_is_the_debs(built: Built) -> None:
    """The same files as the .deb (whose units go to /lib, Debian 12's place)."""
    in_rpm = set(files(built.rpm))
    deb_listing = run(["dpkg-deb", "-c", str(built.deb)]).splitlines()
    # the sixth field on: a name may hold spaces (setuptools' "script (dev).tmpl")
    names = (line.split(None, 5)[5].split(" -> ")[0] for line in deb_listing)  # not a link's target
    in_deb = {name.removeprefix(".").rstrip("/") for name in names}
    in_deb = {p.replace("/lib/systemd/", "/usr/lib/systemd/", 1) if p.startswith("/lib/")
              else p for p in in_deb}  # fmt: skip
    assert in_rpm - in_deb == set()
    parents = {"", "/etc", "/lib", "/lib/systemd", "/opt", "/usr", "/usr/bin", "/usr/lib",
               "/usr/lib/systemd", "/usr/lib/systemd/system", "/usr/share", "/usr/share/doc",
               "/usr/share/polkit-1", "/usr/share/polkit-1/rules.d", "/var", "/var/lib",
               "/var/log"}  # fmt: skip
    assert in_deb - in_rpm - parents == set()  # rpm lists no directories it does not own


def test_the_unit_in_the_payload_runs_the_packaged_program(built: Built, tmp_path: Path) -> None:
    cpio = subprocess.run(["rpm2cpio", str(built.rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet", "./usr/lib/systemd/system/consrv.service"],
                   input=cpio, cwd=tmp_path, check=True)  # fmt: skip
    unit = (tmp_path / "usr/lib/systemd/system/consrv.service").read_text()
    assert "ExecStart=/usr/bin/consrv serve --config /etc/consrv/consrv.yaml" in unit
    assert "/usr/local" not in unit


def test_scriptlets(built: Built, tmp_path: Path) -> None:
    """%pre makes the users; removal stops consrv; an upgrade restarts it; all parse."""
    scripts = query(built.rpm, "--scripts")
    parts = dict(
        (chunk.split(" scriptlet", 1)[0], chunk.split("\n", 1)[1])
        for chunk in scripts.split("\n\n") if " scriptlet (using /bin/sh):" in chunk
    )  # fmt: skip
    assert set(parts) == {"preinstall", "postinstall", "preuninstall", "postuninstall"}
    assert "useradd --system --user-group" in parts["preinstall"]
    assert "groupadd --system ioc" in parts["preinstall"]
    assert 'if [ "$1" -eq 0 ]' in parts["preuninstall"]
    assert "disable --now consrv.service" in parts["preuninstall"]
    assert 'if [ "$1" -ge 1 ]' in parts["postuninstall"]
    assert "--signal=USR2 consrv.service" in parts["postuninstall"]  # the hand-over first
    assert "try-restart consrv.service" in parts["postuninstall"]
    for name, body in parts.items():
        script = tmp_path / name
        script.write_text(body)
        subprocess.run(["sh", "-n", str(script)], check=True)  # /bin/sh can parse it


def test_consrv_pva_adds_the_pva_extra_to_the_venv_and_nothing_else(built: Built) -> None:
    fields = "%{NAME} %{VERSION} %{RELEASE} %{ARCH}"
    assert query(built.pva_rpm, "--qf", fields) == "consrv-pva 0.1.0 1 x86_64"
    requires = [line for line in query(built.pva_rpm, "--requires").splitlines()
                if not line.startswith("rpmlib(")]  # fmt: skip
    assert requires == ["consrv = 0.1.0-1"]  # the venv is one set of versions
    listed = files(built.pva_rpm)
    site = "/opt/consrv/lib/python3.11/site-packages/"
    assert {path.removeprefix(site).split("/")[0] for path in listed if path.startswith(site)} >= {
        "p4p", "pvxslibs", "epicscorelibs", "numpy"
    }  # fmt: skip
    assert all(path.startswith(site) or site.startswith(path + "/") for path in listed)
    assert all(user == group == "root" for _, user, group, _ in listed.values())
    writable = [p for p, (mode, *_) in listed.items() if mode[0] != "l" and "w" in mode[4:]]
    assert writable == []
    files_of_consrv = {p for p, (mode, *_) in files(built.rpm).items() if mode[0] != "d"}
    assert files_of_consrv & set(listed) == set()  # it replaces none of consrv's files
