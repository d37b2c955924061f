"""The browser view's files ship in the wheel: every page and asset matches package-data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "consrv" / "web"


def test_every_page_and_asset_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["consrv.web"]
    shipped = [
        path.relative_to(WEB).as_posix()
        for folder in ("static", "templates")
        for path in (WEB / folder).rglob("*")
        if path.is_file()
    ]
    assert "static/vendor/xterm.js" in shipped
    assert "static/vendor/LICENSE.xterm" in shipped
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert missing == []


def test_the_vendored_front_end_is_the_pinned_one() -> None:
    lock = (WEB / "assets-src" / "package-lock.json").read_text()
    versions = (WEB / "static" / "vendor" / "VERSIONS").read_text()
    for name, version in (("@xterm/xterm", "6.0.0"), ("@xterm/addon-fit", "0.11.0")):
        assert f'"{name}": "{version}"' in lock
        assert f"{name} {version} (MIT)" in versions
