from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.functions import runtime


@pytest.fixture(autouse=True)
def cold_contexts() -> Iterator[None]:
    """No warm context outlives a test: owners ("destination:1") repeat from test to test, their state must not."""
    runtime.drop_all()
    yield
    runtime.drop_all()
