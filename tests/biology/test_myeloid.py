"""Myeloid output graded in stimulation, the systemic monocyte response, physiological
baselines and the acute-phase readouts (CRP, ferritin), on the real model at a small size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carabm.biology import acute_phase, cart, macrophage, monocyte, myeloid
from carabm.biology.model import CrsModel
from carabm.engine.backend import get_backend
from carabm.engine.lattice import TISSUE
from carabm.errors import CheckpointError
from carabm.io.catalog import CATALOG
from carabm.io.config import load_config
from carabm.simulation import Simulation, build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=300", "cells.macrophage.initial_count=60",
         "cells.monocyte.initial_count=6", "cells.microglia.initial_count=30"]  # fmt: skip
EMPTY = ["lattice.shape=[8, 16, 30]", "cells.cart.dose=0", "cells.bcell.initial_count=0", "cells.macrophage.initial_count=0",
         "cells.monocyte.initial_count=0", "cells.microglia.initial_count=0"]  # fmt: skip


def make(base, *extra):
    config = load_config(None, base + list(extra))
    return CrsModel(config, build_lattice(config), get_backend("numpy"))


def isolated_centres(labels, count, spacing=4):
    """Voxels whose whole 3x3x3 neighbourhood is tissue, at least ``spacing`` apart (no shared neighbours)."""
    nz, ny, nx = labels.shape
    chosen = []
    for z in range(1, nz - 1):
        for y in range(1, ny - 1):
            for x in range(1, nx - 1):
                if np.all(labels[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] == TISSUE) and all(
                    max(abs(z - a), abs(y - b), abs(x - c)) >= spacing for a, b, c in chosen
                ):
                    chosen.append((z, y, x))
    assert len(chosen) >= count
    return chosen[:count]


def test_myeloid_output_keeps_rising_with_engaged_car_t_contacts():
    """IL-6 per macrophage rises with the number of engaged CAR-T cells around it, past 20 contacts."""
    model = make(EMPTY)
    contacts = [0, 1, 3, 5, 10, 20, 26]
    centres = isolated_centres(model.lattice.labels, len(contacts))
    offsets = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
    store = model.store
    store.add(macrophage.NAME, np.array(centres))
    for (z, y, x), n in zip(centres, contacts):
        if n:
            around = np.array([(z + a, y + b, x + c) for a, b, c in offsets[:n]])
            store.add(cart.NAME, around, state=cart.ACTIVATED, stimulation_h=36.0)
    p = model.config.cells.macrophage
    for _ in range(200):  # 20 h at 6 min: the activation level reaches its steady state
        model.begin_step()
        store["stimulation_h"][...] = np.where(model.mask_of(cart.NAME), 36.0, 0.0)  # kept engaged
        myeloid.activate(model, model.mask_of(macrophage.NAME), p)
    is_mac = np.asarray(model.mask_of(macrophage.NAME))
    order = np.argsort(np.asarray(model.voxels())[is_mac])
    seen = np.asarray(model.neighbour_sum(cart.stimulus_weight(model)))[is_mac][order]
    expected_order = np.argsort([np.ravel_multi_index(c, model.lattice.shape) for c in centres])
    assert np.array_equal(seen, np.array(contacts, dtype=np.float32)[expected_order])
    level = np.asarray(store["activation"])[is_mac][order]
    il6 = myeloid.secretion_rates(level, np.zeros_like(level), 0.0, p)["IL6"]
    by_contacts = il6[np.argsort(expected_order)]  # back in the order of ``contacts``
    assert np.all(np.diff(by_contacts) > 0), by_contacts
    assert by_contacts[5] > 1.1 * by_contacts[4]  # 20 vs 10 contacts: still rising by more than 10 %
    assert by_contacts[6] > 1.02 * by_contacts[5]  # and from 20 to a full neighbourhood
    activated = np.asarray(store.state)[is_mac][order][np.argsort(expected_order)] == myeloid.ACTIVATED
    assert not activated[0] and activated[5]  # many contacts: counted as activated


def test_no_car_t_serum_sits_at_the_configured_baselines():
    model = make(SMALL, "cells.cart.dose=0")
    for _ in range(120):  # 12 h
        model.step()
    row = model.readouts()
    for name in CATALOG.cytokines:
        baseline = getattr(model.config.cytokines, name).baseline_pg_ml
        assert abs(row[f"serum/{name}"] - baseline) < 0.5 + 0.2 * baseline, (name, row[f"serum/{name}"], baseline)
    assert row["serum/IL6"] > 1.0  # a few pg/mL, not thousandths
    assert row["crs_grade"] == 0 and row["icans_grade"] == 0
    assert row["crp_mg_l"] < 5.0 and row["ferritin_ng_ml"] == pytest.approx(model.config.acute_phase.ferritin_baseline_ng_ml, rel=0.1)
    assert row["monocyte_pool_activation"] < 0.01
    # at rest the circulating monocytes make a minor part of the baseline IL-6 (the body's basal production keeps it):
    # their most sensitive class answers the basal IFN-gamma a little (about a sixth of the turnover with the default spread)
    assert 0.0 < row["monocyte_pool_secretion/IL6"] < 0.25 * row["serum/IL6"] * math.log(2) / model.config.cytokines.IL6.serum_half_life_h


def test_baseline_is_set_by_the_config():
    model = make(SMALL, "cells.cart.dose=0", "cytokines.IL6.baseline_pg_ml=10")
    for _ in range(60):
        model.step()
    assert model.readouts()["serum/IL6"] == pytest.approx(10.0, abs=2.0)


def test_crp_follows_serum_il6_with_its_half_life():
    model = make(EMPTY)
    p = model.config.acute_phase
    state = model.parts[acute_phase.PART]
    serum = model.serum
    serum[model.index["IL6"]] = 2000.0
    model.blood.serum_pg_ml = serum
    start = state.crp_mg_l
    target = p.crp_max_mg_l * 2000.0 / (2000.0 + p.crp_il6_half_max_pg_ml)
    steps = round(p.crp_half_life_h / model.dt_h)
    for _ in range(steps):
        acute_phase.advance(model)
    assert state.crp_mg_l == pytest.approx(start + (target - start) / 2, rel=1e-3)  # half-way after one half-life
    model.effects.free["periphery"]["IL6"] = 0.0  # IL-6 blocked (tocilizumab/siltuximab): synthesis stops
    high = state.crp_mg_l
    for _ in range(steps):
        acute_phase.advance(model)
    assert state.crp_mg_l == pytest.approx(high / 2, rel=1e-3)


def test_ferritin_rises_with_macrophage_activation():
    model = make(EMPTY)
    p = model.config.acute_phase
    model.last_readouts.update({"mean_activation.macrophage": 0.8, "counts.macrophage": 100.0})
    for _ in range(240):
        acute_phase.advance(model)
    expected_rise = p.ferritin_release_ng_cell_h * 80.0 / (model.scale * model.config.patient.blood_volume_ml) / (
        math.log(2) / p.ferritin_half_life_h
    )
    got = model.parts[acute_phase.PART].ferritin_ng_ml - p.ferritin_baseline_ng_ml
    steady_share = 1.0 - math.exp(-math.log(2) / p.ferritin_half_life_h * 24.0)
    assert got == pytest.approx(expected_rise * steady_share, rel=1e-3)


def test_circulating_monocytes_answer_serum_cytokines_and_secrete_into_serum():
    def run(*extra):
        model = make(SMALL, "cells.cart.dose=0", *extra)
        for _ in range(60):
            serum = model.serum
            serum[model.index["IFNg"]] = 3000.0  # held: CAR-T-made IFN-gamma in serum
            model.blood.serum_pg_ml = serum
            model.step()
        return model.readouts()

    row = run()
    assert row["monocyte_pool_activation"] > 0.5
    assert row["serum/IL6"] > 10 * 3.0 and row["serum/IL1b"] > 10 * 1.0
    # the pool's own secretion (a readout) carries most of the serum IL-6 turnover here:
    # clearance removes ln2/half-life of the serum level per hour
    clearance_per_h = math.log(2) / load_config(None, SMALL).cytokines.IL6.serum_half_life_h
    assert row["monocyte_pool_secretion/IL6"] > 0.5 * clearance_per_h * row["serum/IL6"]
    no_pool = run("patient.monocytes_per_ul=0")
    assert no_pool["serum/IL6"] < 0.2 * row["serum/IL6"]
    assert no_pool["monocyte_pool_secretion/IL6"] == 0.0


def test_new_state_checkpoints_and_resumes_bit_identically():
    config = load_config(None, SMALL)
    reference = Simulation(config)
    for _ in range(12):
        reference.step()
    reference.model.parts[monocyte.POOL_PART].level = np.linspace(0.05, 0.7, monocyte.SENSITIVITY_CLASSES)  # state that must travel
    reference.model.parts[monocyte.POOL_PART].active_h = np.linspace(0.0, 14.0, monocyte.SENSITIVITY_CLASSES)
    reference.model.parts[acute_phase.PART].crp_mg_l = 42.0
    reference.model.parts[acute_phase.PART].ferritin_ng_ml = 900.0
    state = reference.model.checkpoint_state()
    resumed = Simulation(config)
    resumed.model.restore_checkpoint_state(state)
    for _ in range(8):
        reference.step()
        resumed.step()
        assert reference.readouts() == resumed.readouts()
    assert resumed.readouts()["crp_mg_l"] != Simulation(config).readouts()["crp_mg_l"]
    del state["parts"][acute_phase.PART]
    with pytest.raises(CheckpointError, match="acute_phase"):
        Simulation(config).model.restore_checkpoint_state(state)


def test_il1_signalling_induces_il6_tnf_and_il1b_so_blocking_it_cuts_all_three():
    """Dinarello, Blood 1996: IL-1 induces IL-6, TNF-a and its own synthesis in monocytes (Norelli, Nat Med 2018: IL-1 blockade prevents CRS)."""
    for kind in ("macrophage", "monocyte", "microglia"):
        p = getattr(load_config(None, []).cells, kind)
        on = myeloid.secretion_rates(1.0, 0.0, 1.0, p, damp=1e6)
        off = myeloid.secretion_rates(1.0, 0.0, 0.0, p, damp=1e6)
        for name, rate in on.items():
            share = p.il1_induced_share.as_dict().get(name, 0.0)
            assert off[name] == pytest.approx((1.0 - share) * rate), (kind, name)
        assert off["IL6"] < 0.5 * on["IL6"] and off["TNFa"] < on["TNFa"] and off["IL1b"] < on["IL1b"]
    # IL-1b at the cell: the resting ~1 pg/mL induces a few per cent, the tens to hundreds of pg/mL of the storm most of it,
    # and in between the induction is graded (receptor occupancy, Hill power 1): twice the IL-1b, nearly twice the induction
    assert myeloid.il1_induction_signal(1.0, p) < 0.05 and myeloid.il1_induction_signal(100.0, p) > 0.8
    assert 1.8 < myeloid.il1_induction_signal(4.0, p) / myeloid.il1_induction_signal(2.0, p) < 2.0


def test_pool_classes_span_a_log_normal_sensitivity():
    flat = monocyte.sensitivities(0.0)
    assert np.array_equal(flat, np.ones(monocyte.SENSITIVITY_CLASSES))
    spread = monocyte.sensitivities(1.5)
    assert np.all(np.diff(spread) > 0)
    assert np.exp(np.mean(np.log(spread))) == pytest.approx(1.0)  # median sensitivity 1
    assert np.std(np.log(spread)) == pytest.approx(1.5, rel=0.15)  # the quantiles' spread (a little under the log-normal's)


def pool_il6(gmcsf, *extra):
    """The pool's IL-6 secretion [pg/mL/h] after 24 h at a held serum GM-CSF level [pg/mL] (no CAR-T)."""
    model = make(SMALL, "cells.cart.dose=0", *extra)
    for _ in range(240):
        serum = model.serum
        serum[model.index["GMCSF"]] = gmcsf
        model.blood.serum_pg_ml = serum
        model.step()
    return model.readouts()["monocyte_pool_secretion/IL6"]


def test_a_spread_of_sensitivities_grades_the_pools_response():
    """One level for the whole pool switches on over a few-fold range of GM-CSF; classes of graded sensitivity answer over a
    wider range (Tay et al., Nature 2010: each cell switches, the share of cells that switch rises with the dose)."""
    one = [pool_il6(g, "cells.monocyte.pool_sensitivity_sd=0") for g in (10.0, 100.0)]
    spread = [pool_il6(g) for g in (10.0, 100.0)]
    assert one[1] > spread[1] > 0
    assert spread[1] / spread[0] < 0.5 * one[1] / one[0]  # tenfold GM-CSF: far less than the single switch's rise
    assert spread[0] > 2 * one[0]  # the most sensitive cells answer a low level already


def test_old_checkpoints_give_every_class_the_pools_level():
    state = monocyte.PoolActivation(("IL6",), 1.5)
    state.restore_checkpoint_state({"level": 0.3, "active_h": 2.0})  # written before the classes
    assert np.array_equal(state.level, np.full(monocyte.SENSITIVITY_CLASSES, 0.3))
    assert np.array_equal(state.active_h, np.full(monocyte.SENSITIVITY_CLASSES, 2.0))
    assert state.mean_level == pytest.approx(0.3)


def test_mcp1_speeds_the_marrows_refill_of_drained_blood_not_the_exit():
    def refill(mcp1, start_share):
        model = make(SMALL, "cells.cart.dose=0", "patient.tumor_burden_cells=1e8")  # a pool of 7,500 cells: rounding is negligible
        k = model.store.kind_id(monocyte.NAME)
        base = monocyte.baseline(model)
        model.circulation.pool[k, :] = 0
        model.circulation.pool[k, myeloid.RESTING] = int(round(start_share * base))
        serum = model.serum
        serum[model.index["MCP1"]] = mcp1
        model.blood.serum_pg_ml = serum
        for _ in range(60):  # 6 h
            monocyte.renew_pool(model)
        return model.circulation.pool[k].sum() / base

    assert refill(0.0, 0.5) == pytest.approx(1.0 - 0.5 * 2 ** (-6 / 24), abs=0.01)  # the blood half-life without MCP-1
    assert refill(1e4, 0.5) > 0.8  # marrow release through CCR2: most of the deficit back within 6 h
    assert refill(1e4, 1.5) == pytest.approx(refill(0.0, 1.5), abs=0.01)  # cells above the baseline leave at the same rate


def test_myeloid_rules_on_the_kinds_slots_equal_the_masked_rules_on_all_agents(monkeypatch):
    """The host runs the myeloid rules on one kind's slots, a GPU on all agents masked: the same numbers (the GPU's form, here on NumPy)."""
    results = []
    for masked in (False, True):
        model = make(SMALL, "run.seed=3")
        if masked:
            monkeypatch.setattr(model, "slots_of", lambda cells: None)
        model.fields_flat[model.index["IFNg"]] = np.linspace(0.0, 200.0, model.fields_flat.shape[1], dtype=np.float32)  # a gradient
        for _ in range(60):
            model.step()
        store = model.store
        results.append({name: np.asarray(store[name]).copy() for name in ("activation", "active_h")}
                       | {"state": np.asarray(store.state).copy(), "fields": np.asarray(model.fields_flat).copy()})  # fmt: skip
        assert (np.asarray(store["activation"]) > 0.05).sum() > 10  # the rules did something
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert np.array_equal(results[0][key], results[1][key]), key


def test_myeloid_cytokine_capacity_scales_what_myeloid_cells_make_not_how_they_activate():
    """patient.myeloid_cytokine_capacity: the same stimulus, a quarter of the circulating pool's output, the same activation; less serum IL-6."""

    def run(capacity, steps):
        model = make(SMALL, "cells.cart.dose=0", f"patient.myeloid_cytokine_capacity={capacity}")
        for _ in range(steps):
            serum = model.serum
            serum[model.index["IFNg"]] = 3000.0  # held: CAR-T-made IFN-gamma in serum
            model.blood.serum_pg_ml = serum
            model.step()
        return model.readouts()

    full, quarter = run(1.0, 1), run(0.25, 1)
    assert quarter["monocyte_pool_activation"] == full["monocyte_pool_activation"]
    for name in ("IL6", "IL1b", "TNFa", "IL10"):
        assert quarter[f"monocyte_pool_secretion/{name}"] == pytest.approx(0.25 * full[f"monocyte_pool_secretion/{name}"], rel=1e-12)
    assert full["monocyte_pool_secretion/IL6"] > 0.0
    # over hours the lower output shows in serum (the amplifying IL-1 loop runs slower too)
    rows = {capacity: run(capacity, 60)["serum/IL6"] for capacity in (1.0, 0.25)}
    assert rows[0.25] < 0.5 * rows[1.0]
