"""Fixtures of the VLM tests: a loopback server, no real keys, a private cache folder."""

from __future__ import annotations

import pytest
from _vlm_loopback import LoopbackServer


@pytest.fixture
def server():
    """A fresh loopback server, closed after the test."""
    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch, tmp_path):
    """No real keys or cache folders leak into tests."""
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CAR_JAX_CACHE", str(tmp_path / "cache"))
