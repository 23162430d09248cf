"""Scenario runs shared by the validation tests: the real model at reduced size, run once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from carabm.validation import SCENARIOS, run_series

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
#: the quickstart run itself (14 days on a small lattice): the README's promise, tested
REDUCED: list[str] = []
#: the figures of one session's scenarios, for the record (pytest -s shows them)
NUMBERS: dict[str, str] = {}


@pytest.fixture(scope="session")
def scenario():
    """``scenario(name)`` -> time series of that scenario (computed once per session)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = run_series(QUICKSTART, REDUCED + SCENARIOS[name])
        return cache[name]

    return get
