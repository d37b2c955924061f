"""Cutting a byte string into chunks, for "any chunking gives the same result" properties."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import strategies as st


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted; repeats give empty chunks)."""
    bounds = [0, *sorted(min(max(c, 0), len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def chunked(draw: st.DrawFn, data: bytes, max_cuts: int = 20) -> list[bytes]:
    """A strategy: ``data`` cut at up to ``max_cuts`` places."""
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=max_cuts))
    return split_at(data, cuts)
