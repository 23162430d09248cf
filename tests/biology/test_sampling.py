"""Fact 13, fast: the same patient sampled by half the tumour agents gives the same serum IL-6.

The quickstart patient over its first two days (serum IL-6 rises from day 1), at its 1500
tumour agents and at 750, seeds pooled. Halving the tumour agents halves the lattice's share
of the patient (the blood pool, the CAR-T share, the macrophages and monocytes per tumour
cell); the serum levels, concentrations of the whole patient, must not move beyond noise.
The full-length version is fact 13 of ``carabm.validation`` (scripts/validate.py).

Known gap (xfail, strict: remove the mark when it passes): halving only the tumour agents on
the same lattice still moves the early IL-6, 1.39x at 48 h over seeds 1-4 (with 800 CAR-T agents;
about 1.4x over seeds 1-2 with 100), though not the 14-day peak (fact 13 passes in every seed).
Over seeds 1-2 alone it is 1.23x, inside the tolerance by chance (seeds 3 and 4 give 1.37x and
1.77x), so the test pools four seeds. That run keeps the tissue, its vessels and the CNS and puts
half the tumour cells in them, a tumour at half the density; half the lattice of the same tissue
(the quickstart halved along z, with half of every cell type) gives the same peak within noise,
and so does a lattice of the quickstart's tissue tiled 2x along z and y over 14 days
(scripts/convergence.py --mode tile), and 2x along every axis (--mode mirror: eight copies of
the quickstart's lattice, mirrored along x), of which the last test here is the fast version.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from carabm.validation import run_series

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SEEDS = (1, 2)
#: long enough for serum IL-6 to rise well above its resting level, short enough for CI
HOURS = 48


def peak_il6(*overrides: str, seeds: tuple[int, ...] = SEEDS) -> float:
    """Peak serum IL-6 of the quickstart with ``overrides``, averaged over the seeds [pg/mL]."""
    runs = [run_series(QUICKSTART, [*overrides, f"run.duration_h={HOURS}"], seed=seed) for seed in seeds]
    return float(np.mean([s["serum/IL6"].max() for s in runs]))


@pytest.mark.xfail(strict=True, reason="known gap: half the tumour agents in the same tissue is a tumour at half the density, "
                                       "not a coarser sample of the same one: the tissue-made IL-6 of the first two days differs "
                                       "(1.39x over seeds 1-4; docs/model.md, section 8)")
def test_half_the_tumour_agents_give_the_same_serum_il6():
    seeds = (1, 2, 3, 4)  # the early storm's start varies from seed to seed: two seeds left 1.23x against 1.39x over four
    full = peak_il6("cells.bcell.initial_count=1500", seeds=seeds)
    half = peak_il6("cells.bcell.initial_count=750", seeds=seeds)
    assert full > 10.0  # the storm has begun (resting IL-6 is far below 1 pg/mL)
    # within noise (seeds pooled; seed to seed the peak varies by ~10 %): before the myeloid
    # cells followed the tumour sample the factor was 1.8, with 100 CAR-T agents 1.4
    assert 1 / 1.25 <= half / full <= 1.25, f"peak serum IL-6 {half:.3g} pg/mL at 750 tumour agents vs {full:.3g} at 1500"


def test_half_the_lattice_of_the_same_tissue_gives_the_same_serum_il6():
    """The quickstart halved along z (the vessel runs along z, so the same tissue, vessels and CNS, half as
    much of them) with half of every cell type it places: the same patient sampled half as much.

    Four seeds: seed by seed the 48-h peak of the half lattice is 0.64-1.79x the quickstart's (seeds 1-8, 2026-12-02,
    with the capillary exchange), 0.92x pooled over the eight; two seeds (0.68x for seeds 1-2) leave noise as large as
    the tolerance."""
    seeds = (1, 2, 3, 4)
    full = peak_il6(seeds=seeds)
    half = peak_il6("lattice.shape=[6,24,40]", "cells.bcell.initial_count=750", "cells.microglia.initial_count=50", seeds=seeds)
    assert full > 10.0  # the storm has begun (resting serum IL-6 is 3 pg/mL)
    assert 1 / 1.25 <= half / full <= 1.25, f"peak serum IL-6 {half:.3g} pg/mL on half the lattice vs {full:.3g} on the quickstart"


def test_a_lattice_twice_as_large_per_axis_gives_the_same_serum_il6(tmp_path):
    """The convergence check of scripts/convergence.py --mode mirror, short: the quickstart's lattice eight times
    (2x along z and y, and along x followed by its mirror image) with eight times every cell type it places, i.e.
    eight times as much of the same patient, gives the quickstart's serum IL-6 (docs/model.md, section 8; 0.96x over
    seeds 1-4, with the CAR-T agents' weight kept; 0.91x with 100 agents)."""
    spec = importlib.util.spec_from_file_location("convergence", ROOT / "scripts" / "convergence.py")
    convergence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convergence)
    larger = convergence.larger_overrides(factor=2, mode="mirror", mask_file=tmp_path / "labels.npy")
    # four seeds: how early the storm starts varies from seed to seed (48-h IL-6 19-48 pg/mL on the quickstart over
    # seeds 1-8), and two seeds leave the mean within about 25 % of noise, the tolerance itself
    full, large = peak_il6(seeds=(1, 2, 3, 4)), peak_il6(*larger, seeds=(1, 2, 3, 4))
    assert full > 10.0  # the storm has begun (resting serum IL-6 is 3 pg/mL)
    assert 1 / 1.25 <= large / full <= 1.25, f"peak serum IL-6 {large:.3g} pg/mL on the 2x lattice vs {full:.3g} on the quickstart"
