"""Shared fixtures: tracing on and default bounds around every test; Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import async_trace
from async_trace import _capture, _config, _failsafe

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

collect_ignore = ["stdlib"]

# Printed output is coloured on a terminal or when these ask for it: the tests
# expect plain text unless they set one themselves (subprocesses inherit this).
for _name in ("PYTHON_COLORS", "NO_COLOR", "FORCE_COLOR"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _tracing_on_with_defaults() -> Iterator[None]:
    """Each test starts and ends with tracing on, default bounds and a fresh warn-once state."""
    async_trace.enable_tracing(max_frames=_config.DEFAULT_MAX_FRAMES, max_depth=_config.DEFAULT_MAX_DEPTH)
    _failsafe.reset_warned()
    yield
    async_trace.enable_tracing(max_frames=_config.DEFAULT_MAX_FRAMES, max_depth=_config.DEFAULT_MAX_DEPTH)
    _failsafe.reset_warned()
    assert _capture.is_active()
