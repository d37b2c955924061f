"""consrv.config: YAML → frozen Config, and errors that name the key path.

No mocks: real YAML files in tmp_path, real ed25519 keys from asyncssh.
"""

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consrv.access import Role, role_for
from consrv.config import (
    DEFAULT_CIPHERS,
    Config,
    ConfigError,
    ConsoleConfig,
    Endpoint,
    MessageLimits,
    load_config,
    parse_config,
    parse_endpoint,
    parse_public_key,
    parse_size,
)
from consrv.names import InvalidName

REPO = Path(__file__).resolve().parent.parent
BASE = Path("/etc/consrv")


def new_key(comment: str = "") -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519", comment=comment or None)


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


ALICE, BOB, CAROL = new_key("alice@laptop"), new_key("bob@ws"), new_key()


def full_config() -> dict[str, Any]:
    return {
        "ssh": {
            "listen": ["127.0.0.1:0", "[::1]:2222"],
            "host_key": "host_key",
            "login": "console",
            "observer_login": "observer",
        },
        "metrics": {"listen": "127.0.0.1:9750"},
        "log_dir": "logs",
        "log": {"timestamps": True, "max_size": "1M", "keep": 3},
        "users": {
            "alice": {"keys": [public_line(ALICE)], "groups": ["operators"]},
            "bob": {"keys": [public_line(BOB)]},
            "carol": {},
        },
        "groups": {"engineers": ["bob"], "watchers": []},
        "defaults": {"rw": ["@operators"], "ro": ["*"], "scrollback": "64K"},
        "consoles": {
            "my-ioc": {"socket": "/run/procServ/my-ioc/control", "rw": ["@engineers", "alice"]},
            "vme-ioc": {"tcp": "vme1.example:20000", "timestamps": False, "ro": []},
            "LLRF:1.a_b": {"socket": "/run/sockets/llrf", "viewer_buffer": 4096},
        },
        "discover": ["/run/procServ/*/control"],
    }


def problems(data: object, base_dir: Path = BASE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir)
    lines = str(info.value).splitlines()
    assert lines == [str(problem) for problem in info.value.problems]
    return lines


def problem_at(data: object, path: str) -> str:
    """The message of the one problem reported, which must be at `path`."""
    [line] = problems(data)
    where, _, message = line.partition(": ")
    assert where == path, line
    return message


def with_(change: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of `data` (default: full_config()) with `change` merged in recursively."""
    result = copy.deepcopy(full_config() if data is None else data)

    def merge(target: dict[str, Any], update: dict[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(result, change)
    return result


# ---------------------------------------------------------------- valid configs


@pytest.mark.parametrize("data", [None, {}])
def test_empty_config_gives_the_defaults(data: object) -> None:
    config = parse_config(data, BASE)
    assert config.ssh.listen == (Endpoint("127.0.0.1", 2222),)
    assert config.ssh.host_key == Path("/var/lib/consrv/ssh_host_ed25519_key")
    assert (config.ssh.login, config.ssh.observer_login) == ("console", "observer")
    assert config.metrics_listen is None
    assert config.log_dir is None
    assert (config.log.timestamps, config.log.max_size, config.log.keep) == (True, 10 << 20, 5)
    assert dict(config.users) == {}
    assert dict(config.consoles) == {}
    assert config.discover == ()
    assert config.defaults.rw == ()
    assert config.defaults.ro == ("*",)
    assert config.defaults.scrollback == 256 * 1024
    assert config.defaults.viewer_buffer == 1024 * 1024


def test_empty_sections_mean_defaults() -> None:
    data = {"ssh": None, "log": None, "users": None, "consoles": None, "discover": None}
    assert parse_config(data, BASE) == parse_config({}, BASE)


def test_full_config() -> None:
    config = parse_config(full_config(), BASE)
    assert config.ssh.listen == (Endpoint("127.0.0.1", 0), Endpoint("::1", 2222))
    assert config.ssh.host_key == BASE / "host_key"
    assert config.metrics_listen == Endpoint("127.0.0.1", 9750)
    assert config.log_dir == BASE / "logs"
    assert (config.log.timestamps, config.log.max_size, config.log.keep) == (True, 1 << 20, 3)
    assert config.users["alice"].keys == (ALICE.public_data,)
    assert config.users["alice"].groups == frozenset({"operators"})
    assert config.users["carol"].keys == ()
    assert config.groups["engineers"] == frozenset({"bob"})
    assert config.discover == ("/run/procServ/*/control",)

    assert config.consoles["my-ioc"] == ConsoleConfig(
        name="my-ioc",
        socket=Path("/run/procServ/my-ioc/control"),
        tcp=None,
        rw=("@engineers", "alice"),
        ro=("*",),
        scrollback=64 * 1024,
        viewer_buffer=1 << 20,
        timestamps=True,
        replay=20,
    )
    vme = config.consoles["vme-ioc"]
    assert (vme.socket, vme.tcp) == (None, Endpoint("vme1.example", 20000))
    assert (vme.rw, vme.ro, vme.timestamps) == (("@operators",), (), False)
    llrf = config.consoles["LLRF:1.a_b"]
    assert llrf.socket == Path("/run/sockets/llrf")
    assert llrf.viewer_buffer == 4096


def test_config_is_frozen() -> None:
    config = parse_config(full_config(), BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log_dir = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.consoles["x"] = config.consoles["my-ioc"]  # type: ignore[index]


def test_user_for_key_and_groups_of() -> None:
    config = parse_config(full_config(), BASE)
    assert config.user_for_key(ALICE.public_data) == "alice"
    assert config.user_for_key(BOB.public_data) == "bob"
    assert config.user_for_key(CAROL.public_data) is None
    assert config.groups_of("alice") == frozenset({"operators"})
    assert config.groups_of("bob") == frozenset({"engineers"})
    assert config.groups_of("carol") == frozenset()
    assert config.groups_of("nobody") == frozenset()


def test_roles_from_a_parsed_config() -> None:
    config = parse_config(full_config(), BASE)
    my_ioc = config.consoles["my-ioc"]

    def role(user: str) -> Role | None:
        return role_for(user, config.groups_of(user), my_ioc.rw, my_ioc.ro)

    assert (role("alice"), role("bob"), role("carol")) == (Role.RW, Role.RW, Role.RO)


def test_discovered_console_uses_defaults() -> None:
    config = parse_config(full_config(), BASE)
    console = config.discovered_console("new-ioc", Path("/run/procServ/new-ioc/control"))
    assert console == ConsoleConfig(
        name="new-ioc",
        socket=Path("/run/procServ/new-ioc/control"),
        tcp=None,
        rw=("@operators",),
        ro=("*",),
        scrollback=64 * 1024,
        viewer_buffer=1 << 20,
        timestamps=True,
        replay=20,
    )


def test_discovered_console_refuses_a_bad_name() -> None:
    config = parse_config({}, BASE)
    with pytest.raises(InvalidName, match=re.escape("invalid console name '..'")):
        config.discovered_console("..", Path("/run/procServ/../control"))


def test_shipped_example_config_parses() -> None:
    config = load_config(REPO / "config" / "consrv.yaml")
    assert set(config.consoles) == {"my-ioc", "vme-ioc", "llrf-ioc"}
    assert config.consoles["vme-ioc"].tcp == Endpoint("vme1.example", 20000)
    llrf = config.consoles["llrf-ioc"]
    assert (llrf.ioc, llrf.autostart, llrf.socket) == (
        True, True, Path("/run/procServ/llrf-ioc/control"),
    )  # fmt: skip
    assert [p.name for p in llrf.patterns] == ["segfault", "caught_signal"]
    assert config.discover == ("/run/procServ/*/control",)
    assert all(user.keys for user in config.users.values())
    assert config.groups_of("carol") == frozenset({"operators"})


def test_load_config_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    file = tmp_path / "etc" / "consrv.yaml"
    file.write_text("log_dir: logs\nconsoles:\n  a: {socket: /run/a.sock}\n")
    config = load_config(file)
    assert config.log_dir == tmp_path / "etc" / "logs"
    assert config.consoles["a"].socket == Path("/run/a.sock")  # sockets: absolute only


# ---------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"ssh": {"listen": ["localhost"]}}, "ssh.listen[0]", "expected HOST:PORT"),
        ({"ssh": {"listen": ["a:1", "::1:22"]}}, "ssh.listen[1]", "expected HOST:PORT"),
        ({"ssh": {"listen": ["[nope]:22"]}}, "ssh.listen[0]", "'nope' is not an IPv6 address"),
        ({"ssh": {"listen": ["a:65536"]}}, "ssh.listen[0]", "port must be 0-65535"),
        ({"ssh": {"listen": []}}, "ssh.listen", "must not be empty"),
        ({"ssh": {"listen": "a:1"}}, "ssh.listen", "expected a list"),
        ({"ssh": {"host_key": ""}}, "ssh.host_key", "expected a path"),
        ({"ssh": {"login": "bad login"}}, "ssh.login", "invalid user name 'bad login'"),
        ({"ssh": {"observer_login": "console"}}, "ssh", "login and observer_login must differ"),
        ({"metrics": {"listen": "9750x"}}, "metrics.listen", "expected HOST:PORT"),
        ({"metrics": {"listen": True}}, "metrics.listen", "expected HOST:PORT"),
        ({"log_dir": 5}, "log_dir", "expected a path"),
        ({"log": {"timestamps": "sometimes"}}, "log.timestamps", "expected true or false"),
        ({"log": {"max_size": "10MB"}}, "log.max_size", "expected a size"),
        ({"log": {"max_size": 0}}, "log.max_size", "must be a positive size"),
        ({"log": {"keep": 0}}, "log.keep", "must be at least 1"),
        ({"log": {"keep": "5"}}, "log.keep", "expected an integer"),
        ({"users": {"alice": {"keys": ["nope"]}}}, "users.alice.keys[0]", "not an OpenSSH"),
        ({"users": {"alice": {"keys": "x"}}}, "users.alice.keys", "expected a list"),
        ({"users": {"alice": {"groups": ["@ops"]}}}, "users.alice.groups[0]", "invalid group"),
        ({"users": {"bad user": {}}}, "users['bad user']", "invalid user name"),
        ({"groups": {"a b": []}}, "groups['a b']", "invalid group name"),
        ({"groups": {"ops": ["dave"]}}, "groups.ops[0]", "unknown user 'dave'"),
        ({"defaults": {"ro": ["nobody"]}}, "defaults.ro[0]", "unknown user 'nobody'"),
        ({"defaults": {"scrollback": -1}}, "defaults.scrollback", "must be a positive size"),
        ({"consoles": {"my-ioc": {"socket": 7}}}, "consoles.my-ioc.socket", "expected a path"),
        ({"consoles": {"my-ioc": {"tcp": "h:1"}}}, "consoles.my-ioc", "not both"),
        ({"consoles": {"x": {}}}, "consoles.x", "needs 'socket'"),
        ({"consoles": {"x": None}}, "consoles.x", "needs 'socket'"),
        ({"consoles": {"x": {"tcp": "h:0"}}}, "consoles.x.tcp", "port must be 1-65535"),
        ({"consoles": {"x": {"tcp": "h"}}}, "consoles.x.tcp", "expected HOST:PORT"),
        ({"consoles": {"x": []}}, "consoles.x", "expected a mapping"),
        ({"consoles": {"vme-ioc": {"scrollback": "1T"}}}, "consoles.vme-ioc.scrollback", "size"),
        ({"consoles": {"vme-ioc": {"ro": "*"}}}, "consoles.vme-ioc.ro", "expected a list"),
        ({"consoles": {"vme-ioc": {"rw": ["@"]}}}, "consoles.vme-ioc.rw[0]", "'@' is not a user"),
        ({"consoles": {"vme-ioc": {"rw": [1]}}}, "consoles.vme-ioc.rw[0]", "expected a user"),
        ({"consoles": "x"}, "consoles", "expected a mapping"),
        ({"consoles": {7: {"tcp": "h:1"}}}, "consoles.7", "console name must be a string"),
        ({"discover": "/run/*/x"}, "discover", "expected a list"),
        ({"discover": ["run/*/control"]}, "discover[0]", "must be an absolute path"),
        ({"discover": ["/run/procServ/*"]}, "discover[0]", "must end in /*/FILE"),
        ({"discover": ["/run/*/x", "/run/x/control"]}, "discover[1]", "must end in /*/FILE"),
        ({"discover": ["/run/*/*"]}, "discover[0]", "only the console directory may be"),
        ({"discover": ["/run/ioc-*/control"]}, "discover[0]", "must end in /*/FILE"),
        ({"discover": ["/r*n/*/control"]}, "discover[0]", "only the console directory may be"),
        ({"discover": ["/run/../*/control"]}, "discover[0]", "must not contain '..'"),
    ],
)
def test_error_names_the_key_path(change: dict[str, Any], path: str, message: str) -> None:
    assert message in problem_at(with_(change), path)


def test_unknown_acl_user_names_the_entry() -> None:
    data = with_({"consoles": {"my-ioc": {"rw": ["alice", "alcie"]}}})
    assert (
        problem_at(data, "consoles.my-ioc.rw[1]") == "unknown user 'alcie', did you mean 'alice'?"
    )


def test_unknown_acl_group_names_the_entry() -> None:
    data = with_({"consoles": {"my-ioc": {"ro": ["@operators", "@nobody"]}}})
    assert problem_at(data, "consoles.my-ioc.ro[1]") == "unknown group '@nobody'"


def test_groups_from_either_place_are_known() -> None:
    data = with_({"consoles": {"my-ioc": {"rw": ["@operators", "@engineers", "@watchers"]}}})
    assert parse_config(data, BASE).consoles["my-ioc"].rw == (
        "@operators",
        "@engineers",
        "@watchers",
    )


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"sssh": {}}, "sssh", "unknown key, did you mean 'ssh'?"),
        ({"ssh": {"port": 22}}, "ssh.port", "unknown key; known keys here: listen, host_key"),
        ({"consoles": {"a": {"socket": "/s", "sockte": "s"}}}, "consoles.a.sockte", "'socket'?"),
        ({"users": {"alice": {"key": []}}}, "users.alice.key", "did you mean 'keys'?"),
        ({"defaults": {"timestamps": True}}, "defaults.timestamps", "unknown key"),
        ({"metrics": {"port": 1}}, "metrics.port", "unknown key"),
    ],
)
def test_unknown_key_is_an_error(data: dict[str, Any], path: str, message: str) -> None:
    assert message in problem_at(data, path)


def test_top_level_must_be_a_mapping() -> None:
    assert problem_at(["consoles"], "(top level)") == "expected a mapping"


def test_all_problems_are_reported_together() -> None:
    data = with_(
        {
            "log": {"keep": 0},
            "consoles": {"my-ioc": {"socket": ""}, "bad name": {"tcp": "h:1"}},
            "bogus": 1,
        }
    )
    paths = [line.partition(": ")[0] for line in problems(data)]
    assert sorted(paths) == sorted(
        ["log.keep", "consoles.my-ioc.socket", "consoles['bad name']", "bogus"]
    )


@pytest.mark.parametrize(
    ("socket", "message"),
    [
        ("sockets/llrf", "must be an absolute path"),
        ("ioc-srv:ioc:0660:/run/procserv/rf-llrf/control", "must be an absolute path"),
        ("unix:/run/procserv/rf-llrf/control", "not procServ's endpoint"),
        ("@rf-llrf", "abstract UNIX sockets are not supported"),
    ],
)
def test_socket_must_be_an_absolute_path(socket: str, message: str) -> None:
    data = with_({"consoles": {"a": {"socket": socket}}})
    assert message in problem_at(data, "consoles.a.socket")


def test_socket_path_too_long_for_unix_socket() -> None:
    data = {"consoles": {"x": {"socket": "/run/" + "d" * 120 + "/control"}}}
    assert "too long for a UNIX socket path" in problem_at(data, "consoles.x.socket")


# ---------------------------------------------------------------- console names


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("../x", "consoles['../x']"),
        ("a/b", "consoles['a/b']"),
        ("a b", "consoles['a b']"),
        ("x\x07", "consoles['x\\x07']"),
        ("ioc\u00e9", "consoles['ioc\\xe9']"),
        ("ioc\u202e", "consoles['ioc\\u202e']"),
        ("$(rm)", "consoles['$(rm)']"),
        ("x" * 1000, "consoles['" + "x" * 40 + "'... (1000 characters)]"),
        ("", "consoles['']"),
        ("-x", "consoles['-x']"),
    ],
)
def test_bad_console_name_is_named_safely(name: str, path: str) -> None:
    data = {"consoles": {name: {"socket": "/run/x"}}}
    message = problem_at(data, path)
    assert message.startswith("invalid console name ")
    text = f"{path}: {message}"
    assert text.isascii()
    assert all(char.isprintable() for char in text)
    assert len(text) < 300


def test_bad_console_name_in_acl_and_body_reported_once_each() -> None:
    data = {"consoles": {"a b": {"socket": "/run/x", "rw": ["nobody"]}}}
    # the name is refused in step 1; ACL cross-checks only run on a valid schema
    assert [line.partition(": ")[0] for line in problems(data)] == ["consoles['a b']"]


# ---------------------------------------------------------------- public keys


def test_inline_keys_with_and_without_comment() -> None:
    line = public_line(CAROL)
    data = {"users": {"carol": {"keys": [line, public_line(ALICE) + "\n"]}}}
    config = parse_config(data, BASE)
    assert config.users["carol"].keys == (CAROL.public_data, ALICE.public_data)


def test_keys_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "bob.pub").write_text(
        f"# bob's keys\n\n{public_line(BOB)}\n   \n  # old laptop\n{public_line(CAROL)}\n"
    )
    data = {"users": {"bob": {"keys_file": "keys/bob.pub", "keys": [public_line(ALICE)]}}}
    config = parse_config(data, tmp_path)
    assert config.users["bob"].keys == (ALICE.public_data, BOB.public_data, CAROL.public_data)
    assert config.user_for_key(CAROL.public_data) == "bob"


def test_keys_file_absolute_path(tmp_path: Path) -> None:
    file = tmp_path / "bob.pub"
    file.write_text(public_line(BOB) + "\n")
    config = parse_config({"users": {"bob": {"keys_file": str(file)}}}, BASE)
    assert config.users["bob"].keys == (BOB.public_data,)


def test_missing_keys_file(tmp_path: Path) -> None:
    message = problem_at_base({"users": {"bob": {"keys_file": "nope.pub"}}}, tmp_path)
    assert message == f"users.bob.keys_file: cannot read {tmp_path / 'nope.pub'}: " + (
        "No such file or directory"
    )


def test_keys_file_that_is_a_directory(tmp_path: Path) -> None:
    message = problem_at_base({"users": {"bob": {"keys_file": "."}}}, tmp_path)
    assert message.startswith("users.bob.keys_file: cannot read ")


def problem_at_base(data: object, base_dir: Path) -> str:
    [line] = problems(data, base_dir)
    return line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("garbage", "line 2: not an OpenSSH public key"),
        (f'from="10.0.0.0/8" {public_line(ALICE)}', "line 2: authorized_keys options are not"),
        (f'command="echo hi there",no-pty {public_line(ALICE)}', "line 2: authorized_keys"),
        (f"restrict {public_line(ALICE)}", "line 2: authorized_keys options are not supported"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "line 2: this is a PRIVATE key"),
    ],
)
def test_bad_line_in_keys_file(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "bob.pub").write_text(f"{public_line(BOB)}\n{line}\n")
    text = problem_at_base({"users": {"bob": {"keys_file": "bob.pub"}}}, tmp_path)
    assert text.startswith(f"users.bob.keys_file: {message}")


def test_private_key_is_refused_inline() -> None:
    private = ALICE.export_private_key().decode()
    message = problem_at({"users": {"alice": {"keys": [private]}}}, "users.alice.keys[0]")
    assert message == "this is a PRIVATE key: give the public key (the .pub file)"
    assert "BEGIN" not in message


def test_two_keys_in_one_entry_is_refused() -> None:
    two = public_line(ALICE) + "\n" + public_line(BOB)
    message = problem_at({"users": {"alice": {"keys": [two]}}}, "users.alice.keys[0]")
    assert message.startswith("not an OpenSSH public key: expected one line")


def test_certificate_is_refused() -> None:
    cert = CAROL.generate_user_certificate(ALICE, "alice").export_certificate().decode()
    message = problem_at({"users": {"alice": {"keys": [cert]}}}, "users.alice.keys[0]")
    assert message.startswith("certificates are not supported here")


def test_same_key_for_two_users_is_an_error() -> None:
    data = {
        "users": {
            "alice": {"keys": [public_line(ALICE)]},
            "bob": {"keys": [public_line(BOB), public_line(ALICE)]},
        }
    }
    assert problem_at(data, "users.bob.keys[1]") == "same key as user 'alice'"


def test_same_key_in_a_keys_file_and_inline_for_another_user(tmp_path: Path) -> None:
    (tmp_path / "bob.pub").write_text(f"{public_line(BOB)}\n{public_line(ALICE)}\n")
    data = {
        "users": {"alice": {"keys": [public_line(ALICE)]}, "bob": {"keys_file": "bob.pub"}},
    }
    text = problem_at_base(data, tmp_path)
    assert text == "users.bob.keys_file: line 2: same key as user 'alice'"


def test_same_key_twice_for_one_user_is_kept_once() -> None:
    data = {"users": {"alice": {"keys": [public_line(ALICE), public_line(ALICE) + " other"]}}}
    assert parse_config(data, BASE).users["alice"].keys == (ALICE.public_data,)


def test_parse_public_key_other_key_types() -> None:
    for algorithm in ("ssh-rsa", "ecdsa-sha2-nistp256"):
        key = asyncssh.generate_private_key(algorithm)
        assert parse_public_key(public_line(key)) == key.public_data


def key_or_problem(text: str) -> bytes | str:
    """The key's public data, or the message of the ValueError (the only exception allowed)."""
    try:
        return parse_public_key(text)
    except ValueError as exc:
        return str(exc)


@given(st.text(max_size=300))
def test_parse_public_key_raises_only_value_error(text: str) -> None:
    result = key_or_problem(text)
    assert result.startswith(b"\x00\x00\x00") if isinstance(result, bytes) else result


@given(st.text(max_size=100))
def test_parse_public_key_with_key_type_prefix_raises_only_value_error(text: str) -> None:
    result = key_or_problem("ssh-ed25519 " + text)
    assert result.startswith(b"\x00\x00\x00") if isinstance(result, bytes) else result


# ---------------------------------------------------------------- sizes and endpoints


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (4096, 4096),
        ("512", 512),
        ("64K", 64 * 1024),
        ("64k", 64 * 1024),
        ("10M", 10 * 1024 * 1024),
        ("1G", 1024**3),
        (" 2 M ", 2 * 1024 * 1024),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", [0, -1, "0K", "", "K", "1.5M", "10MB", "1T", "1e6", True, 1.0, None, [1]]
)
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:2222", Endpoint("127.0.0.1", 2222)),
        ("vme1.example:20000", Endpoint("vme1.example", 20000)),
        ("[::1]:22", Endpoint("::1", 22)),
        ("[::]:65535", Endpoint("::", 65535)),
        ("[0:0::1]:1", Endpoint("::1", 1)),
    ],
)
def test_parse_endpoint(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    "text", ["", "host", ":22", "host:", "host:x", "host:-1", "::1:22", "[::1]", "a b:1", 22]
)
def test_parse_endpoint_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_endpoint(text)


def test_parse_endpoint_port_zero_only_when_allowed() -> None:
    assert parse_endpoint("127.0.0.1:0", allow_port_zero=True) == Endpoint("127.0.0.1", 0)
    with pytest.raises(ValueError, match="port must be 1-65535"):
        parse_endpoint("127.0.0.1:0")


@pytest.mark.parametrize(
    ("endpoint", "text"),
    [(Endpoint("127.0.0.1", 22), "127.0.0.1:22"), (Endpoint("::1", 22), "[::1]:22")],
)
def test_endpoint_str(endpoint: Endpoint, text: str) -> None:
    assert str(endpoint) == text
    assert parse_endpoint(text) == endpoint


# ---------------------------------------------------------------- files and YAML


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "consrv.yaml"
    file.write_text(text)
    return file


def load_problem(file: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert info.value.source == file
    [line] = str(info.value).splitlines()
    return line


def test_missing_file(tmp_path: Path) -> None:
    file = tmp_path / "nope.yaml"
    assert load_problem(file) == f"{file}: cannot read: No such file or directory"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path, "ssh:\n  listen: ['127.0.0.1:1'\nconsoles: {}\n")
    line = load_problem(file)
    assert line.startswith(f"{file}:3:")
    assert "YAML: " in line


def test_yaml_tab_indent_error(tmp_path: Path) -> None:
    file = write(tmp_path, "consoles:\n\tx: {socket: /run/x}\n")
    assert load_problem(file).startswith(f"{file}:2:1: YAML: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    file = write(tmp_path, "consoles:\n  a: {socket: /x}\n  a: {socket: /y}\n")
    assert (
        load_problem(file) == f"{file}:3:3: YAML: found the key 'a' twice (while reading a mapping)"
    )


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "consrv.yaml"
    file.write_bytes(b"log_dir: /var/\xff\n")
    assert load_problem(file) == f"{file}: not UTF-8 text (byte 14)"


def test_validation_errors_from_a_file_carry_the_source(tmp_path: Path) -> None:
    file = write(tmp_path, "consoles:\n  my-ioc: {socket: /run/x, rw: [alcie]}\n")
    assert load_problem(file) == "consoles.my-ioc.rw[0]: unknown user 'alcie'"


def test_yaml_unsafe_tags_are_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "log_dir: !!python/object/apply:os.getcwd []\n")
    assert "YAML: " in load_problem(file)


def test_load_config_returns_config(tmp_path: Path) -> None:
    file = write(tmp_path, f"users:\n  alice:\n    keys: ['{public_line(ALICE)}']\n")
    config = load_config(file)
    assert isinstance(config, Config)
    assert config.user_for_key(ALICE.public_data) == "alice"


# -- console semantics and IOC options ---------------------------------------------


def test_console_semantics_options_and_their_defaults(tmp_path: Path) -> None:
    config = parse_config(
        {
            "users": {"alice": {}},
            "defaults": {
                "write": "shared",
                "procserv_keys": "block",
                "writer_idle_timeout": "30m",
                "replay": 5,
                "escape": "^]c",
                "operate": ["alice"],
                "patterns": {"segfault": "Segmentation fault"},
            },
            "consoles": {
                "a": {"socket": "/a"},
                "b": {
                    "socket": "/b",
                    "write": "exclusive",
                    "procserv_keys": "pass",
                    "writer_idle_timeout": 90,
                    "replay": 0,
                    "escape": "^Ek",
                    "operate": [],
                    "patterns": {},
                },
            },
        },
        tmp_path,
    )
    a, b = config.consoles["a"], config.consoles["b"]
    assert (a.write, a.procserv_keys, a.writer_idle_timeout, a.replay) == (
        "shared",
        "block",
        1800,
        5,
    )
    assert (a.escape, a.operate) == (b"\x1dc", ("alice",))
    assert [(p.name, p.regex.pattern) for p in a.patterns] == [("segfault", b"Segmentation fault")]
    assert (b.write, b.procserv_keys, b.writer_idle_timeout, b.replay) == (
        "exclusive",
        "pass",
        90,
        0,
    )
    assert (b.escape, b.operate, b.patterns) == (b"\x05k", (), ())
    plain = parse_config({"consoles": {"c": {"socket": "/c"}}}, tmp_path).consoles["c"]
    assert (plain.write, plain.procserv_keys, plain.writer_idle_timeout) == (
        "exclusive", "confirm", None,
    )  # fmt: skip
    assert (plain.escape, plain.replay, plain.ioc, plain.autostart) == (b"\x05c", 20, False, False)
    assert plain.timestamps  # both changed defaults: docs/changes.md


def test_ioc_section_makes_consoles_iocs_with_a_derived_socket(tmp_path: Path) -> None:
    config = parse_config(
        {
            "ioc": {"scope": "system", "poll_interval": "2s"},
            "consoles": {
                "llrf": {"autostart": True},
                "vme": {"tcp": "vme1:20000", "ioc": False},
            },
        },
        tmp_path,
    )
    assert config.ioc is not None
    assert config.ioc.unit_for("llrf") == "ioc@llrf.service"
    assert config.ioc.poll_interval == 2.0
    llrf, vme = config.consoles["llrf"], config.consoles["vme"]
    assert (llrf.ioc, llrf.autostart, llrf.socket) == (
        True, True, Path("/run/procServ/llrf/control"),
    )  # fmt: skip
    assert (vme.ioc, vme.socket) == (False, None)
    found = config.discovered_console("new")
    assert (found.ioc, found.socket) == (True, Path("/run/procServ/new/control"))


def test_user_scope_sockets_live_in_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    config = parse_config({"ioc": {"scope": "user"}, "consoles": {"x": {}}}, tmp_path)
    assert config.consoles["x"].socket == Path("/run/user/1000/procServ/x/control")


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"defaults": {"write": "many"}}, "defaults.write", "expected 'exclusive' or 'shared'"),
        ({"defaults": {"procserv_keys": "ask"}}, "defaults.procserv_keys", "expected 'confirm'"),
        ({"defaults": {"writer_idle_timeout": "soon"}}, "defaults.writer_idle_timeout", "duration"),
        ({"defaults": {"writer_idle_timeout": 0}}, "defaults.writer_idle_timeout", "positive"),
        ({"defaults": {"replay": -1}}, "defaults.replay", "must be at least 0"),
        ({"defaults": {"replay": 20000}}, "defaults.replay", "must be at most 10000"),
        ({"defaults": {"escape": "^E"}}, "defaults.escape", "escape"),
        ({"defaults": {"escape": "ab"}}, "defaults.escape", "escape"),
        ({"defaults": {"escape": "^Tc"}}, "defaults.escape", "starts with ^T, procServ's auto"),
        ({"defaults": {"escape": "^xc"}}, "defaults.escape", "starts with ^X, procServ's kill"),
        ({"consoles": {"x": {"socket": "/x", "escape": "^Rr"}}}, "consoles.x.escape", "^R"),
        ({"consoles": {"x": {"socket": "/x", "escape": "^Qq"}}}, "consoles.x.escape", "^Q"),
        ({"defaults": {"operate": ["nobody"]}}, "defaults.operate[0]", "unknown user 'nobody'"),
        ({"defaults": {"patterns": {"bad name": "x"}}}, "defaults.patterns['bad name']", "pattern"),
        ({"defaults": {"patterns": {"p": "(unclosed"}}}, "defaults.patterns.p", "not a regular"),
        ({"defaults": {"ioc": True}}, "defaults.ioc", "needs the top-level 'ioc' section"),
        ({"consoles": {"x": {"socket": "/x", "ioc": True}}}, "consoles.x.ioc", "needs the top"),
        ({"consoles": {"x": {"socket": "/x", "autostart": True}}}, "consoles.x.autostart", "IOC"),
        (
            {"consoles": {"x": {"socket": "/x", "operate": ["@nope"]}}},
            "consoles.x.operate[0]",
            "group",
        ),
        ({"ioc": {"scope": "global"}}, "ioc.scope", "expected 'system' or 'user'"),
        ({"ioc": {"unit": "ioc@.service"}}, "ioc.unit", "{name} exactly once"),
        ({"ioc": {"unit": "ioc@{name}"}}, "ioc.unit", "must end in .service"),
        ({"ioc": {"unit": "ioc@{name}{x}.service"}}, "ioc.unit", "only {name}"),
        ({"ioc": {"socket": "run/{name}/control"}}, "ioc.socket", "absolute"),
        ({"ioc": {"poll_interval": "-1s"}}, "ioc.poll_interval", "duration"),
        ({"messages": {"burst": 0}}, "messages.burst", "must be at least 1"),
        ({"messages": {"max_length": 5000}}, "messages.max_length", "must be at most 1000"),
        ({"messages": {"per_minute": 0}}, "messages.per_minute", "greater than 0"),
        ({"messages": {"rate": 1}}, "messages.rate", "unknown key"),
    ],
)
def test_semantics_and_ioc_errors_name_the_key(
    change: dict[str, Any], path: str, message: str, tmp_path: Path
) -> None:
    data: dict[str, Any] = {"users": {"alice": {}}, **change}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    found = {problem.path: problem.message for problem in caught.value.problems}
    assert path in found, found
    assert message in found[path]


def test_trusted_user_ca_keys_are_public_keys(tmp_path: Path) -> None:
    key = public_line(CAROL)  # no comment: "TYPE BASE64"
    config = parse_config({"ssh": {"trusted_user_ca_keys": [f"{key} ca@site"]}}, tmp_path)
    assert config.ssh.trusted_user_ca_keys == (key,)
    with pytest.raises(ConfigError) as caught:
        parse_config({"ssh": {"trusted_user_ca_keys": ["not a key"]}}, tmp_path)
    assert caught.value.problems[0].path == "ssh.trusted_user_ca_keys[0]"


@pytest.mark.parametrize("listen", [9750, "9750"])
def test_a_bare_metrics_port_means_loopback(listen: object) -> None:
    config = parse_config({"metrics": {"listen": listen}}, Path("/etc/consrv"))
    assert config.metrics_listen == Endpoint("127.0.0.1", 9750)


def test_message_limits_default_and_from_the_file() -> None:
    assert parse_config({}, Path("/etc/consrv")).messages == MessageLimits(10, 6.0, 200)
    data = {"messages": {"burst": 3, "per_minute": 0.5, "max_length": 80}}
    assert parse_config(data, Path("/etc/consrv")).messages == MessageLimits(3, 0.5, 80)


def test_ssh_ciphers_default_and_choices() -> None:
    config = parse_config(with_({}), BASE)
    assert config.ssh.ciphers == DEFAULT_CIPHERS
    assert "chacha20-poly1305@openssh.com" not in DEFAULT_CIPHERS
    gcm = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert parse_config(with_({"ssh": {"ciphers": gcm}}), BASE).ssh.ciphers == tuple(gcm)


@pytest.mark.parametrize(
    ("ciphers", "message"),
    [
        (["aes128-cbc"], "unknown cipher 'aes128-cbc' (CBC is never offered)"),
        (["rot13"], "unknown cipher 'rot13'; choose from aes128-gcm@openssh.com"),
        ([], "must not be empty"),
        (["aes128-ctr", "aes128-ctr"], "names a cipher twice"),
    ],
)
def test_ssh_ciphers_errors_name_the_key(ciphers: list[str], message: str) -> None:
    found = problems(with_({"ssh": {"ciphers": ciphers}}))
    assert any(p.startswith("ssh.ciphers") and message in p for p in found), found
