"""Scenario runs shared by the validation tests: the real model at reduced size, run once per session."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from carabm.validation import SCENARIOS, run_series

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
#: the quickstart run itself (14 days on a small lattice): the README's promise, tested
REDUCED: list[str] = []
#: the figures of one session's scenarios, for the record (pytest -s shows them)
NUMBERS: dict[str, str] = {}


def _run(name: str):
    return name, run_series(QUICKSTART, REDUCED + SCENARIOS[name])


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
            workers = max(1, min(4, os.cpu_count() or 1, len(wanted)))
            if workers == 1:
                cache.update(_run(n) for n in wanted)
            else:
                with ProcessPoolExecutor(workers) as pool:
                    cache.update(pool.map(_run, wanted))
        if name not in cache:
            cache[name] = run_series(QUICKSTART, REDUCED + SCENARIOS[name])
        return cache[name]

    return get
