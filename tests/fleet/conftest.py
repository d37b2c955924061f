"""One simulated fleet for the package's modules that share it (tests/fleet/sim.py):
PEERS real peers, two gateways. A test that changes it puts it back before it ends;
before each test that uses it, every console's child is checked to be running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.sim import Fleet, running_fleet


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def consoles_up(request: pytest.FixtureRequest) -> None:
    """Before a test of the shared fleet: every console up, or an error naming which is not
    (a test that left one down is the one before this, not this one)."""
    if "fleet" in request.fixturenames:
        fleet: Fleet = request.getfixturevalue("fleet")
        fleet.wait_consoles_up()
