"""Fixtures for the package tests: the packages built once, the machine left clean."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.installed import PACKAGES, build_packages, package_status


@dataclass(frozen=True)
class Built:
    """What `make package` makes, twice: release 1, and release 2 (an upgrade)."""

    deb: Path
    newer_deb: Path
    rpm: Path
    pva_deb: Path  # consrv-pva: the pva extra for consrv's venv
    pva_rpm: Path
    newer_pva_deb: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("packages")
    first = build_packages(out, 1)
    newer = build_packages(out, 2, keep_stage=True)
    return Built(
        deb=first["consrv.deb"],
        newer_deb=newer["consrv.deb"],
        rpm=first["consrv.rpm"],
        pva_deb=first["consrv-pva.deb"],
        pva_rpm=first["consrv-pva.rpm"],
        newer_pva_deb=newer["consrv-pva.deb"],
    )


@pytest.fixture
def purged_at_end() -> Iterator[None]:
    """The machine without consrv's packages before and after the test."""
    for name in PACKAGES:
        status = package_status(name)
        if status:
            pytest.fail(f"{name} is on this machine ({status}): this test installs "
                        "and purges it, so it will not run here")  # fmt: skip
    try:
        yield
    finally:
        for name in PACKAGES:  # consrv-pva first: it depends on consrv
            if package_status(name):
                subprocess.run(["dpkg", "--purge", name], capture_output=True, check=False)


@pytest.fixture
def ioc_root() -> Iterator[Path]:
    """A directory the consrv user can traverse, like /run/procServ (tmp_path is root's)."""
    root = Path(tempfile.mkdtemp(prefix="consrv-pkgtest-", dir="/run"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
