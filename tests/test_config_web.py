"""The ``web:`` section: defaults, every key checked with its path, check-config's verdict."""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consrv import exposure
from consrv.config import ConfigError, Endpoint, WebConfig, parse_config, restart_only
from consrv.daemon import _warn_restart_only


def web(tmp_path: Path, section: Any) -> WebConfig | None:
    return parse_config({"web": section}, tmp_path).web


def test_no_section_no_web_view(tmp_path: Path) -> None:
    assert parse_config({}, tmp_path).web is None


def test_an_empty_section_listens_on_loopback(tmp_path: Path) -> None:
    config = web(tmp_path, None)
    assert config is not None
    assert config.listen == Endpoint("127.0.0.1", 8443)
    assert (config.tls, config.url, config.identity_header) == (None, None, None)
    assert (config.login_ttl, config.limits.streams_per_user) == (60.0, 8)


def test_every_setting(tmp_path: Path) -> None:
    (tmp_path / "web.crt").write_text("cert")
    (tmp_path / "web.key").write_text("key")
    config = web(
        tmp_path,
        {
            "listen": "0.0.0.0:443",
            "url": "https://iochost.example/",
            "tls": {"cert": "web.crt", "key": "web.key"},
            "trusted_proxies": ["10.0.0.0/24", "::1"],
            "identity_header": "X-Remote-User",
            "login_ttl": "30s",
            "session_ttl": "8h",
            "limits": {
                "streams_per_user": 2,
                "searches": 1,
                "viewer_buffer": "1M",
                "send_timeout": "3s",
            },
        },
    )
    assert config is not None
    assert config.url == "https://iochost.example"
    assert config.tls is not None
    assert config.tls.cert == tmp_path / "web.crt"
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/24"),
        ipaddress.ip_network("::1"),
    )
    assert config.identity_header == "x-remote-user"
    assert (config.login_ttl, config.session_ttl) == (30.0, 8 * 3600.0)
    assert (config.limits.streams_per_user, config.limits.viewer_buffer) == (2, 1 << 20)
    assert config.limits.send_timeout == 3.0


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"listen": "nowhere"}, "web.listen: expected HOST:PORT"),
        ({"tls": {"cert": "a.crt", "key": "a.key"}}, "web.tls.cert: no such file"),
        ({"tls": {"cert": "a.crt"}}, "web.tls.key: "),
        ({"trusted_proxies": ["proxy"]}, "web.trusted_proxies[0]: not an IP address"),
        ({"identity_header": "X-User"}, "web: identity_header needs trusted_proxies"),
        ({"identity_header": "X User", "trusted_proxies": ["::1"]}, "web.identity_header: "),
        ({"url": "iochost:8443"}, "web.url: expected an http(s) URL"),
        ({"login_ttl": "soon"}, "web.login_ttl: "),
        ({"limits": {"searches": 0}}, "web.limits.searches: "),
        ({"limits": {"streams": 3}}, "web.limits.streams: unknown key"),
        ({"limits": {"send_timeout": "0s"}}, "web.limits.send_timeout: "),
        ({"lisen": "127.0.0.1:1"}, "web.lisen: unknown key"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, section: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        web(tmp_path, section)
    assert any(str(p).startswith(problem) for p in caught.value.problems), caught.value


def test_the_web_view_beyond_loopback_without_tls_is_a_warning(tmp_path: Path) -> None:
    exposed = parse_config({"web": {"listen": "0.0.0.0:8080"}}, tmp_path)
    assert [w.split(":")[0] for w in exposure.warnings(exposed)] == ["web.listen"]
    assert exposure.warnings(parse_config({"web": {}}, tmp_path)) == []


def test_check_config_reports_a_bad_web_key(tmp_path: Path) -> None:
    config = tmp_path / "consrv.yaml"
    config.write_text("web:\n  listen: 127.0.0.1:8443\n  tls: {cert: no.crt, key: no.key}\n")
    result = subprocess.run(
        [sys.executable, "-m", "consrv", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"  web.tls.cert: no such file: {tmp_path / 'no.crt'}" in result.stderr.splitlines()


def test_what_a_reload_cannot_change() -> None:
    before = restart_only(WebConfig())
    assert before == {
        "listen": Endpoint("127.0.0.1", 8443),
        "tls": None,
        "login_ttl": 60.0,
        "session_ttl": 43200.0,
        "limits.searches": 4,
        "limits.downloads": 4,
        "limits.sessions": 1000,
        "limits.send_timeout": 10.0,
    }
    assert restart_only(None) == {}


def test_a_reload_says_which_web_settings_wait_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = parse_config({"web": {"login_ttl": "60s", "url": "https://a.example"}}, tmp_path)
    new = parse_config({"web": {"login_ttl": "30s", "url": "https://b.example"}}, tmp_path)
    with caplog.at_level(logging.WARNING, logger="consrv.daemon"):
        _warn_restart_only(old, new)
    assert [r.getMessage() for r in caplog.records] == [
        "reload: web.login_ttl changed: it takes effect when consrv restarts"
    ]
