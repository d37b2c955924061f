"""One simulated fleet for the package's modules that share it (tests/fleet/sim.py):
PEERS real peers, two gateways. A test that changes it puts it back before it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.sim import Fleet, running_fleet


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet
