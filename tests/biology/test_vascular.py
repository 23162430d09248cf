"""Endothelium (Ang-2/Ang-1, leak, vascular tone), CRS/ICANS grading, fever masking, the CNS loop and its state."""

from pathlib import Path

import numpy as np
import pytest

import carabm.biology  # noqa: F401  (registers the built-in model)
from carabm.biology import astrocyte, clinical, endothelium
from carabm.biology.clinical import Clinical
from carabm.biology.endothelium import Endothelium, Vascular
from carabm.biology.therapies import Effects, TherapyState
from carabm.io.catalog import CATALOG
from carabm.io.config import load_config
from carabm.simulation import Simulation

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "configs" / "quickstart.yaml"
SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=150", "cells.macrophage.initial_count=30",
         "cells.monocyte.initial_count=5", "cells.microglia.initial_count=10", "run.backend=numpy"]  # fmt: skip
NONE = dict.fromkeys(("IL6", "IL1b", "TNFa", "IFNg"), 0.0)
#: peak serum levels of mild and of severe CRS (order of magnitude: IL-6 ~1e2 vs 1e3-1e4 pg/mL, Teachey,
#: Cancer Discov 2016; Hay, Blood 2017); IL-1b, TNF-a and IFN-g scaled alike
MILD = {"IL6": 100.0, "IL1b": 5.0, "TNFa": 10.0, "IFNg": 50.0}
SEVERE = {"IL6": 1e4, "IL1b": 200.0, "TNFa": 200.0, "IFNg": 1000.0}


def hold(serum, hours=96.0, baseline=None, dt_h=0.1, p=None):
    """The systemic endothelium after ``hours`` at constant serum levels (free fractions)."""
    p = p or Endothelium()
    state = Vascular(np, 0)
    baseline = load_config(None, []).patient.ang2_ang1_baseline if baseline is None else baseline
    for _ in range(int(hours / dt_h)):
        endothelium.step_systemic(state, {**NONE, **serum}, baseline, p, dt_h)
    return state


def grade_of(state, p=None):
    p = p or Clinical()
    return clinical.crs_grade(39.0, clinical.vasopressor_need(state.vasodilation, state.leak, p), clinical.oxygen_need(state.leak), p)


def test_resting_endothelium_stays_at_rest():
    state = hold({})
    assert state.activation == 0.0 and state.leak == 0.0 and state.vasodilation == 0.0


def test_crs_grade_4_is_reachable_and_mild_crs_is_not_severe():
    """The old leak variable's ceiling (0.65) lay below the grade-4 threshold: severe CRS levels must now reach grade 4."""
    assert grade_of(hold(SEVERE)) == 4
    assert grade_of(hold(MILD)) <= 2


def test_the_grade_rises_with_cytokine_levels():
    grades = [grade_of(hold({name: level * f for name, level in SEVERE.items()})) for f in (0.001, 0.01, 0.1, 1.0)]
    assert grades == sorted(grades) and grades[0] < grades[-1]


def test_hypotension_and_hypoxia_are_separate_processes():
    """IL-6 alone injures the endothelium (leak, hypoxia) but induces no iNOS; IL-1b drives the NO path."""
    il6 = hold({"IL6": 5000.0})
    assert il6.leak > 0.3 and il6.vasodilation == 0.0
    il1 = hold({"IL1b": 200.0})
    assert il1.vasodilation > 0.5
    il1_blocked_tone = hold({"IL1b": 200.0}, p=Endothelium(vasodilation_per_h=0.0))
    assert il1_blocked_tone.leak == pytest.approx(il1.leak) and il1_blocked_tone.vasodilation == 0.0
    p = Clinical()
    # the grade follows whichever surrogate is worse: high vasopressor need with no oxygen need, and the reverse
    assert clinical.crs_grade(39.0, p.hypotension_thresholds[1], 0.0, p) == 3
    assert clinical.crs_grade(39.0, 0.0, p.hypoxia_thresholds[1], p) == 3


def test_a_higher_ang2_ang1_baseline_gives_more_leak():
    """Gust, Cancer Discov 2017 / Hay, Blood 2017: pre-treatment endothelial activation predicts severity."""
    low, high = hold(MILD, baseline=0.1), hold(MILD, baseline=1.0)
    assert high.leak > low.leak and high.activation == pytest.approx(low.activation)


def test_fever_is_masked_only_by_the_drugs_that_declare_it():
    """ASTCT (Lee, BBMT 2019) names tocilizumab and corticosteroids; every other drug leaves fever required."""
    maskers = set()
    for name, drug in CATALOG.drugs.items():
        state = TherapyState(load_config(None, [f"therapies=[{{drug: {name}, start_h: 0}}]"]))
        state.administer(0.0, {}, 0.1)
        state.advance_pk(1.0)
        effects = Effects()
        effects.update(state.plasma, bbb_integrity=1.0)
        assert effects.fever_masked == drug.masks_fever, name
        if effects.fever_masked:
            maskers.add(name)
    assert maskers == {"tocilizumab", "dexamethasone", "methylprednisolone"}


def test_icans_is_the_worst_of_its_domains():
    p = Clinical()
    calm = clinical.icans_domains(10.0, 0.0, 0.0, 0.0, 0.0, p)
    assert clinical.icans_grade(calm) == 0
    cases = [  # (ice, consciousness, seizure, motor, edema share) -> the one domain that sets the grade
        ((8.0, 0.0, 0.0, 0.0, 0.0), "ice", 1),
        ((10.0, p.consciousness_thresholds[1], 0.0, 0.0, 0.0), "consciousness", 2),
        ((9.0, 0.0, p.seizure_thresholds[0], 0.0, 0.0), "seizure", 3),
        ((9.0, 0.0, p.seizure_thresholds[1], 0.0, 0.0), "seizure", 4),
        ((9.0, 0.0, 0.0, p.motor_breakdown, 0.0), "motor", 4),
        ((10.0, 0.0, 0.0, 0.0, p.edema_shares[0]), "edema", 3),
        ((8.0, 0.0, 0.0, 0.0, p.edema_shares[1]), "edema", 4),
    ]
    for args, worst, grade in cases:
        domains = clinical.icans_domains(*args, p)
        assert domains[worst] == grade and clinical.icans_grade(domains) == grade == max(domains.values()), (args, domains)


def cns_model(*extra):
    """A small model without CAR-T cells: nothing enters the CNS unless the CNS makes it."""
    return Simulation(load_config(QUICK, [*SMALL, "cells.cart.dose=0", *extra])).model


def test_astrocytes_answer_il1_with_il6_and_mcp1():
    model = cns_model()
    model.fields_flat[model.index["IL1b"], model.cns_voxels] = 500.0
    model.secretion.clear()
    astrocyte.step(model)
    assert float(model.astrocytes.reactivity.min()) > 0.0
    for name in ("IL6", "MCP1"):
        assert float(model.secretion.sources[model.index[name], model.cns_voxels].min()) > 0.0
    assert float(model.secretion.sources[model.index["IL1b"]].max()) == 0.0  # astrocytes make no IL-1b


def test_activated_glia_raise_cns_levels_above_what_diffuses_in():
    """The CNS loop: activated microglia and reactive astrocytes make CNS IL-6 and MCP-1 exceed serum."""
    glia = cns_model()
    mg = glia.mask_of("microglia")
    glia.store["activation"][mg] = 1.0
    glia.astrocytes.reactivity[:] = 1.0
    quiet = cns_model("cells.microglia.initial_count=0", "astrocyte.cells_per_voxel=0")
    for model in (glia, quiet):
        for _ in range(20):
            model.step()
    for name in ("IL6", "MCP1"):
        made, diffused = glia.readouts()[f"cns/{name}"], quiet.readouts()[f"cns/{name}"]
        assert made > 10.0 * glia.readouts()[f"serum/{name}"] and made > 10.0 * diffused, name
    assert glia.readouts()["icans_grade"] >= 1 and quiet.readouts()["icans_grade"] == 0


def test_endothelium_and_astrocyte_state_resume_bit_identically():
    reference = cns_model()
    for _ in range(3):
        reference.step()
    reference.vascular.bbb_activation[:] = np.linspace(0.1, 0.9, reference.n_bbb, dtype=np.float32)
    reference.vascular.activation, reference.vascular.leak, reference.vascular.vasodilation = 0.7, 0.4, 0.3
    reference.astrocytes.reactivity[:] = np.linspace(0.2, 0.8, reference.n_cns, dtype=np.float32)
    reference.blood.serum_pg_ml = np.full(len(reference.index), 300.0)  # a storm in the blood pool: the state keeps moving
    state = reference.checkpoint_state()
    resumed = cns_model()
    resumed.restore_checkpoint_state(state)
    for _ in range(5):
        reference.step()
        resumed.step()
        assert reference.readouts() == resumed.readouts()
    assert np.array_equal(reference.vascular.bbb_activation, resumed.vascular.bbb_activation)
    assert np.array_equal(reference.astrocytes.reactivity, resumed.astrocytes.reactivity)
    assert reference.vascular.leak == resumed.vascular.leak and reference.vascular.leak != 0.4  # it moved


def test_astrocytes_react_to_a_breached_bbb_and_not_to_an_intact_one():
    """Albumin through an opened BBB activates astrocytes (Ivens, Brain 2007); an intact BBB lets nothing in."""
    intact, breached = cns_model(), cns_model()
    breached.integrity.reshape(-1)[breached.bbb_voxels] = 0.3
    for model in (intact, breached):
        model.secretion.clear()
        astrocyte.step(model)
    assert float(intact.astrocytes.reactivity.max()) == 0.0
    assert float(breached.astrocytes.reactivity.min()) > 0.0


def test_ifn_gamma_alone_does_not_injure_the_endothelium():
    """Giavridis and Norelli (Nat Med 2018): CAR-T IFN-g without monocytes and macrophages gives no CRS; IFN-g acts through myeloid priming."""
    state = hold({"IFNg": 1000.0})
    assert state.activation == 0.0 and state.leak == 0.0 and state.vasodilation == 0.0
    assert hold({"IL6": 1000.0}).leak > 0.0
