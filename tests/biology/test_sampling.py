"""Fact 13, fast: the same patient sampled by half the tumour agents gives the same serum IL-6.

The quickstart patient over its first two days (serum IL-6 rises from day 1), at its 1500
tumour agents and at 750, seeds pooled. Halving the tumour agents halves the lattice's share
of the patient (the blood pool, the CAR-T share, the macrophages and monocytes per tumour
cell); the serum levels, concentrations of the whole patient, must not move beyond noise.
The full-length version is fact 13 of ``carabm.validation`` (scripts/validate.py).

Known gap (xfail, strict: remove the mark when it passes): with macrophages and tissue
monocytes per tumour cell and weighted CAR-T agents, 750 agents still give about 1.4x the
peak IL-6 of 1500 (1.8x before) (docs/model.md, section 8): monocytes recruited through the lattice's vessel,
whose blood holds the patient's monocytes per µL whatever the tumour sample, feed a blood pool
that halves with the sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carabm.validation import run_series

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
SEEDS = (1, 2)
#: long enough for serum IL-6 to rise well above its resting level, short enough for CI
HOURS = 48


def peak_il6(tumour_agents: int) -> float:
    """Peak serum IL-6 of the run, averaged over the seeds [pg/mL]."""
    runs = [run_series(QUICKSTART, [f"cells.bcell.initial_count={tumour_agents}", f"run.duration_h={HOURS}"], seed=seed)
            for seed in SEEDS]  # fmt: skip
    return float(np.mean([s["serum/IL6"].max() for s in runs]))


@pytest.mark.xfail(strict=True, reason="known gap: monocyte recruitment through the fixed vessel does not follow the tumour sample")
def test_half_the_tumour_agents_give_the_same_serum_il6():
    full, half = peak_il6(1500), peak_il6(750)
    assert full > 10.0  # the storm has begun (resting IL-6 is far below 1 pg/mL)
    # within noise (seeds pooled; seed to seed the peak varies by ~10 %): before the myeloid
    # cells followed the tumour sample the factor was 1.8, now 1.4
    assert 1 / 1.25 <= half / full <= 1.25, f"peak serum IL-6 {half:.3g} pg/mL at 750 tumour agents vs {full:.3g} at 1500"
