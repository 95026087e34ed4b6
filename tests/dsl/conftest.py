"""Fixtures of the DSL tests (helpers live in dsl_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from dsl_helpers import random_obs


@pytest.fixture(scope="session")
def batch() -> dict[str, np.ndarray]:
    """300 random observations (numpy), shared by the tests."""
    return random_obs(np.random.default_rng(0), 300)
