"""The ``pva:`` section: defaults, every key checked with its path, check-config's verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consrv import exposure
from consrv.config import ConfigError, PvaAlarms, PvaConfig, parse_config
from consrv.config.resolve_optional import default_host


def pva(tmp_path: Path, section: Any) -> PvaConfig:
    config = parse_config({"pva": section}, tmp_path).pva
    assert config is not None
    return config


def test_no_section_no_pv_server(tmp_path: Path) -> None:
    assert parse_config({}, tmp_path).pva is None


def test_an_empty_section_serves_on_loopback_with_the_defaults(tmp_path: Path) -> None:
    config = pva(tmp_path, None)
    assert config.host == default_host()
    assert config.interfaces == ("127.0.0.1",)
    assert config.console_prefix("my-ioc") == f"CONSRV:{default_host()}:my-ioc:"
    assert config.host_pv_prefix() == f"CONSRV:{default_host()}:"
    assert config.server_conf() == {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_SERVER_PORT": "5075",
        "EPICS_PVAS_BROADCAST_PORT": "5076",
    }
    settings = config.for_console("any")
    assert settings.alarms == PvaAlarms(down=2, no_child=2, unit_failed=2, unit_inactive=1,
                                        crash_loop=2, silent=1)  # fmt: skip
    assert (settings.silent_after, settings.crash_loop, settings.text) == (None, 3, False)


def test_a_console_overrides_the_sections_defaults(tmp_path: Path) -> None:
    config = pva(
        tmp_path,
        {
            "host": "ioc-host-1",
            "prefix": "FAC:{host}:{console}:",
            "silent_after": "10m",
            "alarms": {"silent": "MAJOR"},
            "consoles": {
                "chatty": {"silent_after": "30s", "alarms": {"down": "MINOR"}, "text": True}
            },
        },
    )
    assert config.console_prefix("x") == "FAC:ioc-host-1:x:"
    quiet, chatty = config.for_console("other"), config.for_console("chatty")
    assert (quiet.silent_after, quiet.alarms.silent, quiet.alarms.down) == (600.0, 2, 2)
    assert (chatty.silent_after, chatty.alarms.silent, chatty.alarms.down) == (30.0, 2, 1)
    assert (quiet.text, chatty.text) == (False, True)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"host": "bad host"}, "pva.host: "),
        ({"prefix": "CONSRV:{host}:"}, "pva.prefix: needs {console}"),
        ({"prefix": "CONSRV:{user}:{console}:"}, "pva.prefix: only {host}, {console}"),
        ({"prefix": "CONSRV {console}"}, "pva.prefix: expected a PV name template"),
        ({"host_prefix": "X:{console}:"}, "pva.host_prefix: only {host}"),
        ({"interfaces": ["eth0"]}, "pva.interfaces[0]: not an IP address"),
        ({"interfaces": []}, "pva: interfaces: give at least one address"),
        ({"server_port": 70000}, "pva.server_port: "),
        ({"alarms": {"down": "LOUD"}}, "pva.alarms.down: "),
        ({"alarms": {"gone": "MAJOR"}}, "pva.alarms.gone: unknown key"),
        ({"consoles": {"bad name": {}}}, "pva.consoles['bad name']: invalid console name"),
        ({"consoles": {"x": {"crash_loop": 0}}}, "pva.consoles.x.crash_loop: "),
        ({"consoles": {"x": {"silent_after": "soon"}}}, "pva.consoles.x.silent_after: "),
        ({"consoles": {"x": {"text": "yes"}}}, "pva.consoles.x.text: "),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, section: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pva(tmp_path, section)
    assert any(str(p).startswith(problem) for p in caught.value.problems), caught.value


def test_pvs_beyond_loopback_are_a_warning(tmp_path: Path) -> None:
    exposed = parse_config({"pva": {"interfaces": ["127.0.0.1", "0.0.0.0"]}}, tmp_path)  # noqa: S104
    (warning,) = exposure.warnings(exposed)
    assert warning.startswith("pva.interfaces: 0.0.0.0 is not a loopback address")
    assert "docs/pva.md" in warning
    assert exposure.warnings(parse_config({"pva": {}}, tmp_path)) == []


def run_check_config(config: Path, *, hide_p4p: bool = False) -> subprocess.CompletedProcess[str]:
    """``consrv check-config`` in a new interpreter; ``hide_p4p``: as on a host without
    the extra (a finder in front of the others answers that p4p cannot be imported)."""
    hide = (
        "import sys\n"
        "class NoP4p:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'p4p':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoP4p())\n"
        if hide_p4p
        else ""
    )
    code = hide + "from consrv.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    argv = [sys.executable, "-c", "import sys\n" + code, "check-config", "--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_check_config_without_p4p_names_the_key_and_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "consrv.yaml"
    config.write_text("pva:\n  host: iochost\n")
    result = run_check_config(config, hide_p4p=True)
    assert result.returncode == 2, result.stderr
    assert "pva: needs p4p, which is not installed: pip install 'consrv[pva]'" in result.stderr
    assert run_check_config(config).returncode == 0


def test_check_config_warns_when_pvs_are_served_beyond_loopback(tmp_path: Path) -> None:
    config = tmp_path / "consrv.yaml"
    config.write_text("pva:\n  host: iochost\n  interfaces: [0.0.0.0]\n")
    result = run_check_config(config)
    assert result.returncode == 0, result.stderr
    assert "pva.interfaces: 0.0.0.0 is not a loopback address" in result.stderr + result.stdout
