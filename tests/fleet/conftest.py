"""One simulated fleet per test module (tests/fleet/sim.py): PEERS real peers, two gateways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.sim import Fleet, running_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet
