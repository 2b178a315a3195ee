"""Shared fixtures. Tests that use task groups run under anyio's plugin on asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
