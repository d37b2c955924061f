"""Fixtures for the package tests: the packages built once, the machine left clean."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.installed import build_packages, package_status


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two builds of the same version: release 1, and release 2 (the upgrade)."""
    out = tmp_path_factory.mktemp("packages")
    first, _ = build_packages(out, 1)
    second, _ = build_packages(out, 2, keep_stage=True)
    return first, second


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
