"""`consrv import procserv`: procServUtils' INI files and epics-ioc-runner's files → consrv.

Policy: the sample files in tests/data/import/procserv/ are what an IOC host has
(several IOCs, [DEFAULT], %% interpolation, comments, odd spacing, broken entries);
the import's result is checked key by key, its environment files against systemd's
EnvironmentFile= rules, and the YAML by `consrv check-config` run as a program.
The systemd behaviour modelled here was measured on systemd 252 (Debian 12):
tests/integration/test_import_roundtrip.py checks it against a real user manager.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from consrv.config import load_config
from consrv.migrate.draft import Draft, Origin
from consrv.migrate.envfile import (
    EnvSyntaxError,
    format_env_file,
    format_value,
    parse_env_file,
    quote_exec_words,
    split_exec_words,
)
from consrv.migrate.output import check, config_data, render
from consrv.migrate.procserv import (
    Options,
    SourceFile,
    import_procserv,
    is_ini,
    read_paths,
)

REPO = Path(__file__).resolve().parent.parent
CONSRV = str(REPO / ".venv" / "bin" / "consrv")
SAMPLES = REPO / "tests" / "data" / "import" / "procserv"
CONF = str(SAMPLES / "procServ.conf")
CONF_D = SAMPLES / "procServ.d"
HOST = "ioc-host-01"


def sample_draft(**options: Any) -> Draft:
    draft = Draft("procserv")
    files = read_paths([CONF, str(CONF_D)], draft, explicit=True)
    result = import_procserv(files, Options(hostname=HOST, **options))
    result.notices[:0] = draft.notices
    return result


def notices(draft: Draft) -> dict[tuple[str, int | None], str]:
    """(file name, line) → message, for checking warnings by where they point."""
    return {(Path(n.origin.path).name, n.origin.line): n.message for n in draft.notices}


def consrv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSRV, *args], capture_output=True, text=True, check=False, timeout=30, env=env
    )


# ---------------------------------------------------------------- environment files


# Any text systemd can hold in a value: no NUL (and, as a file is text, no lone surrogates).
values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


@given(values)
def test_any_value_survives_the_environment_file(value: str) -> None:
    text = format_env_file([("IOC_CMD", value)])
    [assignment] = parse_env_file(text).assignments
    assert (assignment.key, assignment.value) == ("IOC_CMD", value)


@given(st.lists(values, min_size=1, max_size=6))
def test_any_argv_survives_both_layers(argv: list[str]) -> None:
    """quote_exec_words → env file → parse → $IOC_CMD splitting gives the argv back."""
    text = format_env_file([("IOC_CHDIR", "/"), ("IOC_CMD", quote_exec_words(argv))])
    found = {a.key: a.value for a in parse_env_file(text).assignments}
    assert split_exec_words(found["IOC_CMD"]) == argv


def test_plain_values_stay_readable() -> None:
    assert format_value("./st.cmd") == "./st.cmd"
    assert format_value("10.0.0.255 10.0.1.255") == "10.0.0.255 10.0.1.255"
    assert format_value(" lead") == '" lead"'
    assert format_value('say "hi" $HOME `x` \\') == '"say \\"hi\\" \\$HOME \\`x\\` \\\\"'
    assert quote_exec_words(["./st.cmd", "a b", "", 'q"', "x\\y"]) == (
        './st.cmd "a b" "" "q\\"" "x\\\\y"'
    )
    with pytest.raises(EnvSyntaxError):
        format_value("nul\0byte")


def test_env_file_reads_systemds_documented_forms() -> None:
    """man systemd.exec, EnvironmentFile=: the examples of each quoting rule."""
    text = (
        "# a comment\n"
        "; another comment\n"
        "\n"
        "UNQUOTED=  a\\ b  c  \n"  # backslash keeps the next character; blanks trimmed
        "CONT=one\\\n"  # a trailing backslash continues the line
        "two\n"
        "SINGLE='$HOME \\n kept'\n"  # no escapes in single quotes
        'DOUBLE="\\"\\\\\\`\\$ \\x"\n'  # \" \\ \` \$ unescaped, \x kept
        'MULTI="line 1\n'
        'line 2"\n'
        'AFTER="quoted"tail\n'  # text after the closing quote is kept
        "no equals sign here\n"
        "export BAD=1\n"  # not a variable name: systemd ignores it
        "LATER=1\n"
        "LATER=2\n"
    )
    env = parse_env_file(text)
    assert [(a.key, a.value, a.line) for a in env.assignments] == [
        ("UNQUOTED", "a b  c", 4),
        ("CONT", "onetwo", 5),
        ("SINGLE", "$HOME \\n kept", 7),
        ("DOUBLE", '"\\`$ \\x', 8),
        ("MULTI", "line 1\nline 2", 9),
        ("AFTER", "quotedtail", 11),
        ("LATER", "1", 14),
        ("LATER", "2", 15),
    ]
    assert env.ignored == ((12, "no equals sign here"), (13, "export BAD=1"))
    with pytest.raises(EnvSyntaxError):
        parse_env_file('OPEN="never closed\n')


def test_exec_words_split_as_systemd_252_did() -> None:
    """A value run through `ExecStart=/usr/bin/printf [%s]\\n $IOC_CMD` on systemd 252."""
    value = './st.cmd "a b" \'c d\' e\\\\f \\"q\\" x\\ y $HOME tail'
    assert split_exec_words(value) == [
        "./st.cmd",
        "a b",
        "c d",
        "e\\f",
        '"q"',
        "x y",
        "$HOME",
        "tail",
    ]
    assert split_exec_words('  mid"dle quo"ted  \t\n') == ["middle quoted"]
    assert split_exec_words("") == []


# ---------------------------------------------------------------- telling the formats apart


def test_a_section_line_means_ini() -> None:
    assert is_ini("# c\n[ioc]\ncommand = x\n")
    assert is_ini("  [ioc]  ; comment\n")
    assert not is_ini('IOC_CMD="./st.cmd"\nIOC_CHDIR=/x\n')
    assert not is_ini('IOC_CMD="[not a section] x"\n')


# ---------------------------------------------------------------- the samples, key by key


def test_sample_becomes_ioc_consoles_and_env_files() -> None:
    draft = sample_draft()
    assert list(draft.consoles) == ["vac-ioc", "temp-ioc", "llrf-ioc", "iocBPM", "iocMotion"]
    assert all(c.ioc and c.socket is None and c.tcp is None for c in draft.consoles.values())
    assert draft.ioc_scope == "system"
    env = {name: dict(e.assignments) for name, e in draft.env_files.items()}
    assert env["vac-ioc"] == {  # %(top)s from [DEFAULT]
        "IOC_CHDIR": "/opt/epics/iocs/vac/iocBoot/iocvac",
        "IOC_CMD": "/opt/epics/iocs/vac/bin/linux-x86_64/vac st.cmd",
        "IOCNAME": "vac-ioc",  # procServUtils' launcher sets these two
        "PROCSERV_NAME": "vac-ioc",
    }
    assert env["temp-ioc"] == {  # %% is one %, shlex quoting kept as one word
        "IOC_CHDIR": "/opt/epics/iocs/temp/iocBoot/ioctemp",
        "IOC_CMD": './st.cmd --prefix TEMP: -m "P=TEMP:%02d,DESC=Temperature crate"',
        "IOCNAME": "temp-ioc",
        "PROCSERV_NAME": "temp-ioc",
    }
    assert env["llrf-ioc"] == {
        "IOC_CHDIR": "/opt/epics/iocs/llrf/iocBoot/iocllrf",
        "IOC_CMD": "/opt/epics/iocs/llrf/bin/linux-x86_64/llrf "
        "/opt/epics/iocs/llrf/iocBoot/iocllrf/st.cmd",
        "IOCNAME": "llrf-ioc",
        "PROCSERV_NAME": "llrf-ioc",
        "EPICS_CA_MAX_ARRAY_BYTES": "10000000",  # from `environment`
        "EPICS_CA_ADDR_LIST": "10.0.0.255 10.0.1.255",
    }
    assert env["iocBPM"] == {  # epics-ioc-runner: other variables reach the IOC
        "IOC_CHDIR": "/opt/epics-iocs/bpm/iocBoot/iocBPM",
        "IOC_CMD": "./st.cmd",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "CRASH_LOG_PATTERNS_EXTRA": "Broken pipe|net_ex\\(status\\)",
    }
    assert env["iocMotion"] == {
        "IOC_CHDIR": "/opt/epics-iocs/motion/iocBoot/iocMotion",
        "IOC_CMD": "../../bin/linux-x86_64/motion st.cmd",
    }


def test_sample_env_files_are_what_systemd_reads() -> None:
    draft = sample_draft()
    text = draft.env_files["temp-ioc"].text()
    assert text.splitlines()[2:] == [
        "IOC_CHDIR=/opt/epics/iocs/temp/iocBoot/ioctemp",
        'IOC_CMD="./st.cmd --prefix TEMP: -m \\"P=TEMP:%02d,DESC=Temperature crate\\""',
        "IOCNAME=temp-ioc",
        "PROCSERV_NAME=temp-ioc",
    ]
    read_back = {a.key: a.value for a in parse_env_file(text).assignments}
    assert split_exec_words(read_back["IOC_CMD"]) == [
        "./st.cmd", "--prefix", "TEMP:", "-m", "P=TEMP:%02d,DESC=Temperature crate",
    ]  # fmt: skip


def test_sample_warnings_name_file_and_line() -> None:
    found = notices(sample_draft())
    expected = {
        ("README", None): "not a .conf file",
        ("site.env", None): "EnvironmentFile=",
        ("procServ.conf", 5): "user softioc: ioc@.service takes User= from a drop-in",
        ("procServ.conf", 6): "group softioc",
        ("procServ.conf", 21): "instance = 0: not an IOC, not imported",
        ("procServ.conf", 25): "(write % as %%): not imported",
        ("procServ.conf", 28): "[no-command-ioc] has no `command`: not imported",
        ("procServ.conf", 31): "'list' is a command word",
        ("procServ.conf", 35): "invalid console name 'bad name'",
        ("broken.conf", 4): "not read (broken INI): key 'command' appears twice in [broken-ioc]",
        ("beamline.conf", 4): "host = ioc-host-02: runs on another host",
        ("llrf.conf", 5): "user llrf",
        ("llrf.conf", 6): "TCP port 20001: ioc@.service serves the console on its UNIX socket",
        ("llrf.conf", 8): "env_file /etc/llrf/ioc.env",
        ("iocBPM.conf", 2): "user ioc-srv",
        ("iocBPM.conf", 3): "group ioc",
        ("iocMotion.conf", 1): "IOC_NAME='motion' differs from the file name",
        ("iocMotion.conf", 5): "IOC_LOGFILE: an epics-ioc-runner setting consrv does not map",
        ("iocMotion.conf", 6): "not KEY=VALUE, ignored: 'this line was pasted by mistake'",
    }
    assert set(found) == set(expected)
    for where, fragment in expected.items():
        assert fragment in found[where], (where, found[where])


def test_sample_yaml_passes_check_config_key_by_key(tmp_path: Path) -> None:
    draft = sample_draft()
    text = render(draft)
    assert check(text, tmp_path) == []
    assert (
        yaml.safe_load(text)
        == config_data(draft)
        == {
            "users": {},
            "defaults": {"rw": [], "ro": ["*"]},
            "consoles": {name: {"ioc": True} for name in draft.consoles},
            "ioc": {"scope": "system"},
        }
    )
    path = tmp_path / "consrv.yaml"
    path.write_text(text)
    config = load_config(path)
    assert config.ioc is not None
    assert config.consoles["temp-ioc"].socket == Path("/run/procServ/temp-ioc/control")


def test_keep_units_uses_the_sockets_and_ports_of_the_current_units() -> None:
    draft = sample_draft(keep_units=True)
    consoles = {n: (c.socket, c.tcp, c.ioc) for n, c in draft.consoles.items()}
    assert consoles == {
        "vac-ioc": ("/run/procserv-vac-ioc/control", None, False),  # procServUtils' layout
        "temp-ioc": ("/run/procserv-temp-ioc/control", None, False),
        "llrf-ioc": (None, "127.0.0.1:20001", False),  # port = 20001
        "iocBPM": ("/run/procserv/iocBPM/control", None, False),  # epics-ioc-runner's
        "iocMotion": ("/run/procserv/iocMotion/control", None, False),  # IOC_PORT unix:
    }
    assert draft.env_files == {}
    assert draft.ioc_scope is None
    messages = " ".join(n.message for n in draft.notices)
    for moot in ("User=", "Group=", "env_file", "TCP port"):  # the IOCs stay in their units
        assert moot not in messages


def test_user_scope(tmp_path: Path) -> None:
    source = SourceFile(str(tmp_path / "a.conf"), "[mine]\ncommand = ./st.cmd\nuser = me\n")
    draft = import_procserv([source], Options(scope="user"))
    assert draft.ioc_scope == "user"
    assert "a user manager runs every IOC as the user it belongs to" in draft.notices[0].message
    kept = import_procserv([source], Options(scope="user", keep_units=True, runtime_dir="/run/u"))
    assert kept.consoles["mine"].socket == "/run/u/procserv-mine/control"


def test_default_applies_across_files_and_later_files_add_to_a_section() -> None:
    files = [
        SourceFile("/etc/procServ.conf", "[DEFAULT]\nchdir = /srv/%(who)s\nwho = ioc\n"),
        SourceFile("/etc/procServ.d/a.conf", "[a]\ncommand = ./st.cmd 100%%\n"),
        SourceFile("/etc/procServ.d/b.conf", "[a]\nchdir = /override\n"),
    ]
    draft = import_procserv(files, Options())
    assert dict(draft.env_files["a"].assignments)["IOC_CHDIR"] == "/override"
    assert dict(draft.env_files["a"].assignments)["IOC_CMD"] == "./st.cmd 100%"
    only_default = import_procserv(files[:2], Options())
    assert dict(only_default.env_files["a"].assignments)["IOC_CHDIR"] == "/srv/ioc"


def test_an_indented_header_is_a_continuation_and_says_so() -> None:
    text = "[a]\ncommand = ./st.cmd\n  [b]\ncommand = ./other\n"
    draft = import_procserv([SourceFile("/x.conf", text)], Options())
    assert draft.consoles == {}
    [notice] = draft.notices
    assert notice.origin == Origin("/x.conf", 4)
    assert "an indented line continues the value above it" in notice.message


def test_same_ioc_twice_keeps_the_first() -> None:
    files = [
        SourceFile("/d/a.conf", "[x]\ncommand = ./one\n"),
        SourceFile("/d/x.conf", 'IOC_CMD="./two"\nIOC_CHDIR=/x\n'),
    ]
    draft = import_procserv(files, Options())
    assert dict(draft.env_files["x"].assignments)["IOC_CMD"] == "./one"
    assert "already defined at /d/a.conf:1" in draft.notices[-1].message


def test_environment_cannot_replace_the_templates_variables() -> None:
    source = SourceFile(
        "/a.conf", "[a]\ncommand = ./st.cmd\nenvironment = IOC_CMD=/bin/sh X=1 junk\n"
    )
    draft = import_procserv([source], Options())
    env = dict(draft.env_files["a"].assignments)
    assert env["IOC_CMD"] == "./st.cmd"
    assert env["X"] == "1"
    messages = [n.message for n in draft.notices]
    assert "IOC_CMD is ioc@.service's own variable: dropped" in messages
    assert "environment: 'junk' is not KEY=VALUE: dropped" in messages


# ---------------------------------------------------------------- the command


def test_command_prints_yaml_and_warnings_and_the_yaml_passes_check_config(
    tmp_path: Path,
) -> None:
    result = consrv("import", "procserv", "--host", HOST, CONF, str(CONF_D))
    assert result.returncode == 0, result.stderr
    assert f"consrv import: {CONF}:25: [pct-ioc] command:" in result.stderr
    assert f"consrv import: {CONF_D}/broken.conf:4: not read (broken INI)" in result.stderr
    assert "5 consoles, 0 user(s); 19 warnings" in result.stderr
    assert "would write 5 environment file(s) for ioc@.service into /etc/consrv/ioc" in (
        result.stderr
    )
    config = tmp_path / "consrv.yaml"
    config.write_text(result.stdout)
    checked = consrv("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "ok (5 console(s), 0 user(s))" in checked.stdout


def test_command_writes_files_and_never_overwrites_without_force(tmp_path: Path) -> None:
    output, env_dir = tmp_path / "consrv.yaml", tmp_path / "ioc"
    args = (
        "import",
        "procserv",
        "--host",
        HOST,
        CONF,
        "--env-dir",
        str(env_dir),
        "-o",
        str(output),
    )
    first = consrv(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert sorted(p.name for p in env_dir.iterdir()) == ["temp-ioc.env", "vac-ioc.env"]
    assert (env_dir / "vac-ioc.env").stat().st_mode & 0o777 == 0o644
    assert f"wrote {env_dir / 'vac-ioc.env'}" in first.stderr
    (env_dir / "vac-ioc.env").write_text("# edited by hand\n")
    again = consrv(*args)
    assert again.returncode == 1
    assert "exists (--force overwrites); nothing written" in again.stderr
    assert (env_dir / "vac-ioc.env").read_text() == "# edited by hand\n"
    forced = consrv(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "IOC_CMD=" in (env_dir / "vac-ioc.env").read_text()
    assert consrv("check-config", "--config", str(output)).returncode == 0


def test_command_default_paths_for_a_user_manager(tmp_path: Path) -> None:
    (tmp_path / ".config" / "procServ.d").mkdir(parents=True)
    (tmp_path / ".config" / "procServ.d" / "mine.conf").write_text('IOC_CMD="./st.cmd"\n')
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    result = consrv("import", "procserv", "--scope", "user", env=env)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["consoles"] == {"mine": {"ioc": True}}
    assert f"into {tmp_path / 'cfg' / 'consrv' / 'ioc'}" in result.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("/nonexistent/procServ.d",), 1, "/nonexistent/procServ.d: cannot read"),
        ((str(SAMPLES / "procServ.d" / "broken.conf"),), 1, "nothing to import"),
        ((CONF, "--keep-units", "--env-dir", "/tmp/x"), 2, "there are no env files"),
        ((CONF, "--scope", "galaxy"), 2, "invalid choice"),
    ],
)
def test_command_exit_statuses(args: tuple[str, ...], status: int, message: str) -> None:
    result = consrv("import", "procserv", *args)
    assert result.returncode == status
    assert message in result.stderr
    assert result.stdout == ""


def test_migrating_doc_names_only_tests_that_exist() -> None:
    """docs/migrating.md says which test covers which step: those tests must exist."""
    doc = (REPO / "docs" / "migrating.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", doc))
    defined = {
        node.name
        for path in (REPO / "tests").rglob("test_import*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert len(named) > 30
    assert named <= defined, sorted(named - defined)


conf_text = st.lists(
    st.sampled_from(
        ["[a]", "[DEFAULT]", "[list]", "command", "chdir", "port", "user", "instance", "host",
         "environment", "env_file", "IOC_CMD", "IOC_PORT", "IOC_NAME", "=", ":", "%", "%%",
         "%(x)s", '"', "'", "\\", "\n", " ", "  ", "#", ";", "0", "unix:/x", "20000", "no"]
    )
    | st.text(max_size=4),
    max_size=40,
).map("".join)  # fmt: skip


@given(st.lists(conf_text, min_size=1, max_size=3), st.booleans())
def test_any_files_give_a_draft_never_an_exception(texts: list[str], keep_units: bool) -> None:
    files = [SourceFile(f"/etc/procServ.d/f{i}.conf", text) for i, text in enumerate(texts)]
    draft = import_procserv(files, Options(keep_units=keep_units, hostname=HOST))
    assert set(draft.env_files) <= set(draft.consoles)
    for env in draft.env_files.values():
        assert parse_env_file(env.text()).assignments  # always readable by systemd


@pytest.mark.parametrize(
    ("port", "socket", "warning"),
    [
        ("unix:/run/procserv/rf/control", "/run/procserv/rf/control", None),
        ("unix:ioc-srv:ioc:0660:/run/procserv/rf/control", "/run/procserv/rf/control", None),
        ("unix::grp::/run/procserv/rf/control", "/run/procserv/rf/control", None),
        ("unix:@rf", None, "abstract UNIX socket, which consrv does not support"),
        ("unix:rf/control", None, "is relative: give an absolute path"),
    ],
)
def test_keep_units_takes_the_path_of_procservs_unix_endpoint(
    port: str, socket: str | None, warning: str | None
) -> None:
    """procServ's ``unix:[USER:GROUP:MODE:]PATH``: owner and mode are procServ's."""
    source = SourceFile("/etc/procServ.d/rf.conf", f"[rf]\ncommand = ./st.cmd\nport = {port}\n")
    draft = import_procserv([source], Options(keep_units=True, hostname=HOST))
    assert (draft.consoles["rf"].socket if socket else sorted(draft.consoles)) == (socket or [])
    messages = [n.message for n in draft.notices]
    if warning is None:
        assert not any("unix" in m for m in messages), messages
    else:
        assert any(warning in m for m in messages), messages
