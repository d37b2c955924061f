"""`consrv import conserver`: conserver.cf → consrv consoles, users, groups and logs.

Policy: the syntax is checked against the examples of `man conserver.cf` and the
rules of conserver's reader (cutil.c); the meaning of rw/ro lists against
conserver's own lookup (readcfg.c, access.c), user by user; the sample in
tests/data/import/conserver/ (defaults, include, groups, #include, comments, odd
spacing, broken entries) key by key and through `consrv check-config` as a program.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from consrv.access import Role, role_for
from consrv.config import load_config
from consrv.migrate.cfsyntax import Block, parse_cf
from consrv.migrate.conserver import Options, import_conserver
from consrv.migrate.draft import ConsoleDraft, Draft, Notice, Origin
from consrv.migrate.output import check, config_data, factor_defaults, render
from consrv.names import CONSOLE_NAME_RE, RESERVED_WORDS

REPO = Path(__file__).resolve().parent.parent
CONSRV = str(REPO / ".venv" / "bin" / "consrv")
SAMPLE = REPO / "tests" / "data" / "import" / "conserver" / "conserver.cf"
HOST = "ioc-host-01"
SYSTEM_GROUPS = {"ioc-watchers": ["frank", "grace"]}


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def parse(text: str, more: dict[str, str] | None = None) -> tuple[list[Block], list[Notice]]:
    texts = {"/etc/conserver.cf": text, **(more or {})}

    def read_text(path: str) -> str:
        if path not in texts:
            raise FileNotFoundError(2, "No such file or directory", path)
        return texts[path]

    notices: list[Notice] = []
    return parse_cf("/etc/conserver.cf", read_text, notices), notices


def statements(block: Block) -> list[tuple[str, str]]:
    return [(s.key, s.value) for s in block.statements]


def convert(text: str, groups: dict[str, list[str]] | None = None) -> Draft:
    def read_text(path: str) -> str:
        return text

    options = Options(hostname=HOST, system_group=(groups or {}).get)
    return import_conserver("/etc/conserver.cf", read_text, options)


def sample() -> Draft:
    return import_conserver(str(SAMPLE), read, Options(HOST, SYSTEM_GROUPS.get))


def consrv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONSRV, *args], capture_output=True, text=True, check=False, timeout=30)


# ---------------------------------------------------------------- syntax


def test_the_man_pages_examples_mean_the_same() -> None:
    plain, _ = parse("default my defs { rw *; include other defs  ; }")
    quoted, _ = parse('"defa"ult my\\ defs { rw *; in\\clude "other defs"\t; }')
    for blocks in (plain, quoted):
        [block] = blocks
        assert (block.kind, block.name) == ("default", "my defs")
        assert statements(block) == [("rw", "*"), ("include", "other defs")]


def test_comments_whitespace_case_and_lines() -> None:
    text = (
        '# define a console named "simple"\n'
        "CONSOLE simple {\n"
        "    # setting all required values...\n"
        "    Master localhost;\n"
        "    type exec;  # exec-style console\n"
        "    rw  bryan  todd ;\n"
        '    motd "a # is not a comment \\" in quotes";\n'
        "    logfile /var/log/\\#&\\;;\n"
        "}\n"
    )
    [block], notices = parse(text)
    assert notices == []
    assert (block.kind, block.name, block.origin.line) == ("console", "simple", 2)
    assert statements(block) == [
        ("master", "localhost"),
        ("type", "exec"),
        ("rw", "bryan  todd"),  # inner whitespace kept, outer dropped
        ("motd", 'a # is not a comment " in quotes'),
        ("logfile", "/var/log/#&;"),
    ]
    assert [s.origin.line for s in block.statements] == [4, 5, 6, 7, 8]


def test_a_value_may_span_lines_and_an_empty_quote_is_a_value() -> None:
    [block], _ = parse('group g {\n  users a,\n        b ;\n  users "";\n}\n')
    assert statements(block) == [("users", "a,\n        b"), ("users", "")]


def test_include_files_are_read_in_place_relative_to_the_includer() -> None:
    text = (
        "group a { users x; }\n"
        "#include more/b.cf\n"
        "  #include not-at-column-0\n"
        "group c { users z; }\n"
    )
    blocks, notices = parse(text, {"/etc/more/b.cf": "group b {\n users y;\n}\n"})
    assert notices == []
    assert [b.name for b in blocks] == ["a", "b", "c"]
    assert blocks[1].origin == Origin("/etc/more/b.cf", 1)
    assert blocks[1].statements[0].origin == Origin("/etc/more/b.cf", 2)


def test_a_missing_include_and_endless_includes_are_reported() -> None:
    _, notices = parse("#include /etc/nope.cf\n")
    assert notices == [
        Notice(Origin("/etc/conserver.cf", 1), "#include /etc/nope.cf: cannot read: No such file "
               "or directory")
    ]  # fmt: skip
    _, notices = parse("#include /etc/loop.cf\n", {"/etc/loop.cf": "#include /etc/loop.cf\n"})
    assert [n.message for n in notices] == ["#include /etc/loop.cf: nested too deep, not read"]


@pytest.mark.parametrize(
    ("text", "problems", "kept"),
    [
        ("console a { master x\n}\nconsole b { master y; }", [(2, "expected ';', found '}'"),
         (1, "console 'a': dropped (syntax error in it)")], ["b"]),
        ("console a { sokcet /x; master y; }", [(1, "unknown keyword 'sokcet' in a console block")],
         ["a"]),
        ("console a { master y; ", [(1, "end of file inside console 'a'")], []),
        ("frobnicate a { }\nconsole b { }", [(1, "expected a block type, found 'frobnicate'")],
         ["b"]),
    ],
)  # fmt: skip
def test_syntax_errors_drop_the_block_like_conserver(
    text: str, problems: list[tuple[int, str]], kept: list[str]
) -> None:
    blocks, notices = parse(text)
    assert [b.name for b in blocks if b.kind == "console"] == kept
    assert [(n.origin.line, n.message) for n in notices][: len(problems)] == problems


# ---------------------------------------------------------------- access lists


def roles(draft: Draft, console: str) -> dict[str, Role | None]:
    """What each user of the draft may do on `console`, by consrv's own rule."""
    factor_defaults(draft)
    c = draft.consoles[console]
    rw = c.rw if c.rw is not None else draft.defaults_rw or ()
    ro = c.ro if c.ro is not None else draft.defaults_ro or ()
    members = {g: set(m) for g, m in draft.groups.items()}
    return {
        user: role_for(user, frozenset(g for g, m in members.items() if user in m), rw, ro)
        for user in draft.users
    }


HEAD = "default * { master localhost; type uds; }\n"


def one_console(body: str, groups: str = "", system: dict[str, list[str]] | None = None) -> Draft:
    return convert(HEAD + groups + "\nconsole c { uds /run/c; " + body + " }\n", system)


@pytest.mark.parametrize(
    ("groups", "body", "expected"),
    [
        ("", "rw a; ro b, *;", {"a": Role.RW, "b": Role.RO}),
        ("", "rw a; rw !a;", {"a": None}),  # the newest entry for a name wins
        ("", "rw !a; rw a;", {"a": Role.RW}),
        ("", "rw *, !b; ro b;", {"b": Role.RO}),  # * does not override a name
        ("", "rw a, b; rw \"\"; rw c;", {"c": Role.RW}),  # "" empties: a, b have no access
        ("group ops { users a, b; }", "rw ops;", {"a": Role.RW, "b": Role.RW}),
        ("group ops { users a, b; }", "rw ops; rw !b;", {"a": Role.RW, "b": None}),
        ("group ops { users a, b; }", "ro *; rw !ops;", {"a": Role.RO, "b": Role.RO}),
        ("group ops { users a, !b; }", "rw ops, b;", {"a": Role.RW, "b": Role.RW}),
        ("group ops { users a; } group all { users ops, c; }", "rw all;",
         {"a": Role.RW, "c": Role.RW}),
    ],
)  # fmt: skip
def test_rw_ro_lists_mean_what_they_meant_to_conserver(
    groups: str, body: str, expected: dict[str, Role | None]
) -> None:
    draft = one_console(body, groups)
    assert roles(draft, "c") == expected


def test_a_list_without_exclusions_keeps_groups_and_star() -> None:
    draft = one_console("rw ops; ro *, @watch;", "group ops { users a, b; }", {"watch": ["w"]})
    console = draft.consoles["c"]
    assert (console.rw, console.ro) == (("@ops",), ("*", "@watch"))
    assert draft.groups == {"ops": ["a", "b"], "watch": ["w"]}
    assert draft.users == ["a", "b", "w"]
    assert [n.message for n in draft.notices] == [
        "@watch: a system group; consrv reads no system groups, so its members now are listed: w"
    ]


def test_exclusions_become_the_users_granted_and_say_so() -> None:
    draft = one_console("rw ops, !b; ro *;", "group ops { users a, b, c; }")
    assert draft.consoles["c"].rw == ("a", "c")
    [notice] = draft.notices
    assert notice.origin.line == 3
    assert notice.message.startswith("!b: consrv lists have no exclusions")


def test_unknown_system_group_and_bad_user_names_are_reported() -> None:
    draft = one_console("rw user@REALM, ok; ro @nogroup;")
    assert draft.consoles["c"].rw == ("ok",)
    assert draft.groups == {"nogroup": []}
    messages = [n.message for n in draft.notices]
    assert (
        "'user@REALM' is not a consrv user name (A-Z a-z 0-9 _ . -, not a digit first): left out"
        in messages
    )
    assert any("@nogroup: no such system group on this host" in m for m in messages)


# ---------------------------------------------------------------- consoles


def test_include_order_and_redefinition() -> None:
    draft = convert(
        "default a { type host; host h1; port 1; }\n"
        "default b { host h2; }\n"
        "console c { master localhost; include a; port 2; include b; rw x; }\n"
        "console C { master localhost; type uds; uds /run/c; rw y; }\n"  # same name: replaces
    )
    assert list(draft.consoles) == ["C"]
    assert draft.consoles["C"].socket == "/run/c"
    assert "console 'C' defined again (first at /etc/conserver.cf:3)" in draft.notices[0].message
    draft = convert(
        "default a { type host; host h1; port 1; }\ndefault b { host h2; }\n"
        "console c { master localhost; include a; port 2; include b; rw x; }\n"
    )
    assert draft.consoles["c"].tcp == "h2:2"  # values applied in statement order


def test_host_ports_follow_conservers_formula() -> None:
    draft = convert(HEAD.replace("type uds", "type host") + "console t { host ts; portbase 7000; "
                    "portinc 2; port 3; }\nconsole s { host ::1; port ssh; }\n")  # fmt: skip
    assert draft.consoles["t"].tcp == "ts:7006"
    assert draft.consoles["s"].tcp == "[::1]:22"


def test_consoles_of_other_hosts_and_types_are_left_out_with_a_reason() -> None:
    draft = convert(
        "console a { master other-host; type uds; uds /a; }\n"
        "console b { master ioc-host-01.example.org; type uds; uds /b; }\n"
        "console c { master localhost; type exec; exec /bin/sh; }\n"
        "console d { type uds; uds /d; }\n"
    )
    assert list(draft.consoles) == ["b"]
    assert [(n.origin.line, n.message.split(":")[0]) for n in draft.notices] == [
        (1, "console a"),
        (3, "console c"),
        (4, "console d"),
    ]


# ---------------------------------------------------------------- the sample, key by key


def test_sample_key_by_key(tmp_path: Path) -> None:
    draft = sample()
    factor_defaults(draft)
    text = render(draft)
    assert check(text, tmp_path) == []
    assert (
        yaml.safe_load(text)
        == config_data(draft)
        == {
            "log_dir": "/var/log/conserver",
            "log": {"timestamps": True, "max_size": 10 << 20},
            "users": {
                name: {} for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
            },
            "groups": {
                "operators": ["alice", "bob"],
                "engineers": ["carol", "dave"],  # "dave" quoted on a continuation line
                "everyone": ["alice", "bob", "carol", "dave", "erin"],  # nested groups flattened
                "ioc-watchers": ["frank", "grace"],  # a system group: its members now
            },
            "defaults": {"rw": ["@operators", "@engineers"], "ro": ["*"]},
            "consoles": {
                "vac-ioc": {"socket": "/run/procServ/vac-ioc/control"},
                "temp-ioc": {
                    "socket": "/run/procServ/temp-ioc/control",
                    "rw": ["@operators", "@engineers"],
                    "ro": ["*", "@ioc-watchers"],
                },
                "llrf-ioc": {
                    "socket": "/run/procserv-llrf-ioc/control",
                    "rw": ["alice", "carol", "dave"],  # rw !bob: the users granted, by name
                    "ro": ["*"],
                },
                "vme-crate1": {
                    "tcp": "vme1.example.org:2001",
                    "rw": ["@operators"],
                    "ro": ["@operators"],  # ro ""; ro operators;
                    "timestamps": False,  # timestamp "";
                },
                "term-srv3": {"tcp": "10.1.2.3:7003", "rw": ["@operators"], "ro": ["*"]},
                "iocBPM": {  # from the #include'd file
                    "socket": "/run/procServ/iocBPM/control",
                    "rw": ["alice", "erin"],  # rw ""; rw alice\,erin;
                    "ro": ["*"],
                },
            },
        }
    )


def test_sample_warnings_name_file_and_line() -> None:
    found = {(n.origin.line, n.message) for n in sample().notices}
    lines = {line for line, _ in found}
    # config, access and break blocks; timestamp marks; @ioc-watchers; the !bob list;
    # motd; the second log directory; aliases; serial0 (device), remote-ioc (other
    # master), 'temp ioc 2' (name), list (command word), broken-ioc (no socket), its
    # misspelt keyword.
    assert lines == {5, 6, 10, 11, 21, 25, 45, 51, 52, 65, 66, 69, 71, 73, 75, 78, 80}
    assert (80, "unknown keyword 'sokcet' in a console block") in found
    assert (78, "console broken-ioc: type uds without uds: not imported") in found
    assert all(n.origin.path == str(SAMPLE) for n in sample().notices)


def test_command_output_passes_check_config(tmp_path: Path) -> None:
    output = tmp_path / "consrv.yaml"
    result = consrv("import", "conserver", "--host", HOST, str(SAMPLE), "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"consrv import: {SAMPLE}:80: unknown keyword 'sokcet'" in result.stderr
    assert "6 consoles, 5 user(s); 18 warnings" in result.stderr  # no @ioc-watchers here
    checked = consrv("check-config", "--config", str(output))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.endswith("ok (6 console(s), 5 user(s))\n")
    config = load_config(output)
    assert config.consoles["llrf-ioc"].rw == ("alice", "carol", "dave")
    assert config.log_dir == Path("/var/log/conserver")
    again = consrv("import", "conserver", str(SAMPLE), "--output", str(output))
    assert again.returncode == 1
    assert "exists (--force overwrites)" in again.stderr


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        (None, 1, "cannot read: No such file or directory"),
        ("console a { master localhost; type exec; }\n", 1, "nothing to import"),
        ("console a { master localhost; type uds; uds /run/a; }\n", 0, "1 console, 0 user(s)"),
    ],
)
def test_command_exit_statuses(tmp_path: Path, text: str | None, status: int, message: str) -> None:
    path = tmp_path / "conserver.cf"
    if text is not None:
        path.write_text(text)
    result = consrv("import", "conserver", str(path))
    assert result.returncode == status
    assert message in result.stderr


def test_command_usage_is_status_2() -> None:
    assert consrv("import", "conserver").returncode == 2
    assert consrv("import").returncode == 2


# ---------------------------------------------------------------- YAML output


names = st.from_regex(CONSOLE_NAME_RE, fullmatch=True).filter(lambda n: n not in RESERVED_WORDS)
paths = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40).map(
    lambda p: "/run/" + p
)


@given(st.dictionaries(names, paths, min_size=1, max_size=5))
def test_any_console_name_and_path_render_to_the_same_data(consoles: dict[str, str]) -> None:
    draft = Draft("conserver", sources=["/x"])
    for name, path in consoles.items():
        draft.consoles[name] = ConsoleDraft(name, Origin("/x", 1), socket=path)
    assert yaml.safe_load(render(draft)) == config_data(draft)


def test_notices_render_in_the_header() -> None:
    draft = Draft("conserver", sources=["/etc/conserver.cf"])
    draft.consoles["a"] = ConsoleDraft("a", Origin("/etc/conserver.cf", 3), socket="/run/a")
    draft.warn(Origin("/etc/conserver.cf", 9), "motd hi: consrv shows no message of the day")
    draft.warn(Origin("/etc/conserver.cf", 9), "motd hi: consrv shows no message of the day")
    lines = render(draft).splitlines()
    assert "# 1 thing could not be carried over:" in lines
    assert "#   /etc/conserver.cf:9: motd hi: consrv shows no message of the day" in lines
    assert "  a:  # from /etc/conserver.cf:3" in lines


# Words, tokens and the characters the reader treats specially, in any order.
cf_text = st.lists(
    st.sampled_from(
        ["console", "default", "group", "include", "rw", "ro", "type", "uds", "host", "port",
         "master", "localhost", "users", "a", "!a", "@g", "*", "{", "}", ";", "\n", " ", "\t",
         '"', "\\", "#", "#include x\n", ",", "&", "uds", "/run/x", "7", "-1", "ssh", "\0"]
    )
    | st.text(max_size=5),
    max_size=60,
).map("".join)  # fmt: skip


@settings(deadline=None)  # includes and file reads: timing varies on a loaded machine
@given(cf_text)
def test_any_text_gives_a_draft_never_an_exception(text: str) -> None:
    draft = convert(text)
    for console in draft.consoles.values():
        assert CONSOLE_NAME_RE.fullmatch(console.name)
    for notice in draft.notices:  # the file or the one it #includes ("x")
        assert notice.origin.path in ("/etc/conserver.cf", "/etc/x")
