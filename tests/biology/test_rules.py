"""The rule vocabulary against its closed forms."""

import math

import numpy as np
import pytest

from carabm.biology import clinical, rules
from carabm.biology.clinical import Clinical


def test_hill_half_max_and_limits():
    x = np.array([0.0, 2.0, 1e9])
    assert np.allclose(rules.hill(x, 2.0), [0.0, 0.5, 1.0])
    assert np.allclose(rules.hill(x, 2.0, 2.0), [0.0, 0.5, 1.0])
    assert rules.hill(1.0, 2.0, 2.0) == pytest.approx(0.2)  # 0.25 / 1.25
    assert np.allclose(rules.inhibition(x, 2.0), [1.0, 0.5, 0.0])


def test_any_of_is_probabilistic_or():
    assert rules.any_of(0.5, 0.5) == pytest.approx(0.75)
    assert rules.any_of(0.0, 0.0) == 0.0
    assert rules.any_of(1.0, 0.2) == 1.0


def test_probability_of_rate():
    assert rules.probability(math.log(2.0), 1.0) == pytest.approx(0.5)
    assert np.allclose(rules.probability(np.array([0.0, 1.0]), 0.5), [0.0, 1 - math.exp(-0.5)])


@pytest.mark.parametrize("dt", [0.01, 1.0, 100.0])
def test_relax_is_the_exact_solution_and_bounded(dt):
    on, off, start = 0.4, 0.2, np.array([0.0, 1.0])
    level = rules.relax(start, on, off, dt)
    steady = on / (on + off)
    assert np.allclose(level, steady + (start - steady) * math.exp(-(on + off) * dt))
    assert np.all((level >= 0) & (level <= 1))


def test_crs_grade_needs_fever_and_takes_the_worse_organ():
    p = Clinical()
    assert clinical.crs_grade(37.5, 0.9, 0.9, p) == 0  # no fever: no CRS (ASTCT)
    assert clinical.crs_grade(38.5, 0.0, 0.0, p) == 1
    assert clinical.crs_grade(38.5, p.hypotension_thresholds[0], 0.0, p) == 2
    assert clinical.crs_grade(38.5, 0.0, p.hypoxia_thresholds[1], p) == 3
    assert clinical.crs_grade(38.5, p.hypotension_thresholds[2], 0.0, p) == 4
    assert clinical.crs_grade(38.5, 0.0, p.hypoxia_thresholds[2], p) == 4
    assert clinical.crs_grade(37.2, p.hypotension_thresholds[1], 0.0, p, fever_masked=True) == 3
    assert clinical.crs_grade(37.2, 0.0, 0.0, p, fever_masked=True) == 0  # masked fever alone is no CRS


def test_icans_grade_from_ice_score():
    p = Clinical()
    assert [clinical.ice_grade(s) for s in (10.0, 8.0, 4.0, 1.0)] == [0, 1, 2, 3]
    assert clinical.ice_score(0.0, p) == 10.0
    assert clinical.ice_score(p.ice_half_max, p) == pytest.approx(5.0)
