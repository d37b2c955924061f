"""The identity tests' slapd: one per module (tests/slapd.py), each test adds its own users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slapd import Slapd


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with Slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server
