"""Scenario runs shared by the validation tests: the real model at reduced size, run once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carabm.validation import SCENARIOS, run_scenarios, run_series

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
#: the figures of one session's scenarios, for the record (pytest -s shows them)
NUMBERS: dict[str, str] = {}


def _selected_scenarios(session) -> list[str]:
    """The scenarios the selected validation facts need, in first-use order."""
    names: list[str] = []
    for item in session.items:
        fact = getattr(getattr(item, "callspec", None), "params", {}).get("fact")
        for name in getattr(fact, "scenarios", ()):
            if name not in names:
                names.append(name)
    return names


@pytest.fixture(scope="session")
def scenario(request):
    """``scenario(name)`` -> time series of that scenario (computed once per session).

    At the first use, every scenario the selected facts need is run, on as many worker
    processes as there are CPUs (at most 4): each run is the same deterministic model
    whichever process runs it, so the results do not depend on the number of workers.
    """
    cache = {}

    def get(name):
        if not cache:
            wanted = _selected_scenarios(request.session) or [name]
            cache.update(run_scenarios(QUICKSTART, wanted, workers=min(4, os.cpu_count() or 1)))
        if name not in cache:
            cache[name] = run_series(QUICKSTART, SCENARIOS[name])
        return cache[name]

    return get
