"""Fixtures for the package tests: the packages built once, the machine left clean."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.installed import build_packages, package_status


@dataclass(frozen=True)
class Built:
    """What `make package` makes, twice: release 1, and release 2 (an upgrade)."""

    deb: Path
    newer_deb: Path
    rpm: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("packages")
    deb, rpm = build_packages(out, 1)
    newer_deb, _ = build_packages(out, 2, keep_stage=True)
    return Built(deb, newer_deb, rpm)


@pytest.fixture
def purged_at_end() -> Iterator[None]:
    """The machine without consrv's package before and after the test."""
    status = package_status()
    if status:
        pytest.fail(f"consrv's package is on this machine ({status}): this test installs "
                    "and purges it, so it will not run here")  # fmt: skip
    try:
        yield
    finally:
        if package_status():
            subprocess.run(["dpkg", "--purge", "consrv"], capture_output=True, check=False)


@pytest.fixture
def ioc_root() -> Iterator[Path]:
    """A directory the consrv user can traverse, like /run/procServ (tmp_path is root's)."""
    root = Path(tempfile.mkdtemp(prefix="consrv-pkgtest-", dir="/run"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
