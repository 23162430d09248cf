"""Scenario runs shared by the validation tests: the real model at reduced size, run once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from carabm.validation import SCENARIOS, run_series

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
#: reduced but faithful: the quickstart patient, 12 days, 10-minute steps
REDUCED = ["run.duration_h=288", "run.dt_min=10"]


@pytest.fixture(scope="session")
def scenario():
    """``scenario(name)`` -> time series of that scenario (computed once per session)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = run_series(QUICKSTART, REDUCED + SCENARIOS[name])
        return cache[name]

    return get
