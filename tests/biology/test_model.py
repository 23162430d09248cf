"""The whole model at a small size: it runs, keeps the engine's invariants, and is reproducible."""

import numpy as np
import pytest

from carabm.biology.endothelium import brain_separator, brain_vessel
from carabm.biology.model import CrsModel, capped_speeds
from carabm.engine.backend import get_backend
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE
from carabm.io.catalog import cell_names
from carabm.io.config import load_config
from carabm.simulation import build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=300", "cells.macrophage.initial_count=60",
         "cells.monocyte.initial_count=6", "cells.microglia.initial_count=30"]  # fmt: skip


def make(*extra):
    config = load_config(None, SMALL + list(extra))
    return CrsModel(config, build_lattice(config), get_backend("numpy"))


def test_runs_and_keeps_invariants():
    model = make()
    for _ in range(40):
        model.step()
        model.store.check()
    row = model.readouts()
    assert row["time_h"] == pytest.approx(40 * 0.1)
    labels = model.lattice.labels.ravel()[model.store.flat_index()]
    kinds = np.asarray(model.store.kind)
    for i, spec in enumerate(model.store.kinds):
        assert all(spec.allows(int(code)) for code in np.unique(labels[kinds == i]))
    fields = np.asarray(model.fields)
    assert np.all(np.isfinite(fields)) and fields.min() >= 0.0
    assert 0.0 <= row["bbb_integrity"] <= 1.0


def test_same_seed_same_result_and_seed_matters():
    rows = []
    for seed in (5, 5, 6):
        model = make(f"run.seed={seed}")
        for _ in range(30):
            model.step()
        rows.append(model.readouts())
    assert rows[0] == rows[1]
    assert rows[0] != rows[2]


@pytest.mark.parametrize("absent", cell_names())
def test_any_single_cell_type_absent_still_runs(absent):
    key = "cells.cart.dose=0" if absent == "cart" else f"cells.{absent}.initial_count=0"
    model = make(key)
    for _ in range(10):
        model.step()
    row = model.readouts()
    if absent in ("bcell", "microglia"):  # monocytes still come from the blood; macrophages from them
        assert row[f"counts/{absent}"] == 0


def test_infusion_is_scaled_to_the_lattice():
    model = make("cells.cart.dose=1e8", "patient.tumor_burden_cells=1e10")
    expected = 1e8 * 300 / 1e10
    assert abs(model.circulation.pool_cells("cart") - expected) <= 1


def test_brain_is_sealed_from_tumour_tissue():
    config = load_config(None, SMALL)
    lattice = build_lattice(config)
    seam = brain_separator(lattice)
    assert seam.any()
    assert np.all(lattice.labels[seam] == TISSUE)
    # the tissue column next to the brain vessel is the seam; the tumour's own vessel is not sealed
    labels = lattice.labels
    first_blood = int(np.argmax(labels[0, 0] == BLOOD))  # y = 0 is away from the tissue vessel
    assert labels[0, 0, first_blood + 2] == BBB
    assert seam[:, :, first_blood - 1].all()
    assert not seam[labels == BLOOD].any()


def test_the_seam_closes_to_cells_only_when_asked():
    """cells_cross_brain_seam: false closes the vessel wall at the seam (the tumour keeps its own vessels)."""
    open_model, closed_model = make(), make("lattice.layout.cells_cross_brain_seam=false")
    assert open_model.movement.wall_labels is open_model.movement.labels
    seam = brain_separator(closed_model.lattice)
    wall = np.asarray(closed_model.movement.wall_labels)[1:-1, 1:-1, 1:-1]  # the padding stripped
    assert np.all(wall[seam] != TISSUE) and np.array_equal(wall[~seam], closed_model.lattice.labels[~seam])
    # the tumour's own vessel still has tissue beside it: cells still enter the tumour there
    assert (wall == TISSUE).sum() == (closed_model.lattice.labels == TISSUE).sum() - seam.sum()


@pytest.mark.parametrize("burden", [1e9, 1e11])
def test_the_lattices_brain_stands_for_the_patients_brain_whatever_the_tumours_size(burden):
    """docs/model.md, section 8: the brain vessel's trade with serum counts scale / brain share times, so that the lattice's
    CNS weighs as the whole brain's fluid (brain volume x extracellular fraction) while the rest follows the tumour."""
    model = make(f"patient.tumor_burden_cells={burden}", "patient.brain_volume_ml=1000", "patient.brain_extracellular_fraction=0.25")
    lattice = model.lattice
    brain_share = np.count_nonzero(lattice.labels == CNS) * lattice.voxel_volume_ml / 250.0  # its fluid: 1000 mL x 0.25
    groups = {w: np.sort(np.asarray(index)) for w, index in model.blood.blood_groups}
    assert len(groups) == 2 and 1.0 in groups
    (brain_weight,) = set(groups) - {1.0}
    assert brain_weight == pytest.approx(model.scale / brain_share)
    assert (brain_weight > 1) == (burden == 1e9)  # 1e9 cells: a small tumour beside a whole brain
    assert np.array_equal(groups[brain_weight], np.flatnonzero(brain_vessel(lattice).ravel()))
    assert np.array_equal(groups[1.0], np.flatnonzero((lattice.labels == BLOOD).ravel() & ~brain_vessel(lattice).ravel()))
    assert model.scale == pytest.approx(300 / burden)  # 300 tumour agents


def test_tissue_trades_with_serum_through_its_capillary_bed_and_the_tumour_vessel_is_closed_to_diffusion():
    """docs/model.md, "Capillary exchange": every tissue voxel trades at P S/V; the tumour's vessel carries cells only; the
    brain's vessel stays open to the BBB layer (its wall)."""
    model = make("cytokines.IL6.vessel_permeability_um_s=0.002", "endothelium.vessel_surface_per_cm=150")
    labels = model.lattice.labels
    pool = model.blood
    assert np.array_equal(np.sort(np.asarray(pool.capillary_index)), np.flatnonzero(labels.ravel() == TISSUE))
    il6, il1b = model.index["IL6"], model.index["IL1b"]
    assert pool.capillary_rate_per_s[il6] == pytest.approx(0.002e-4 * 150)  # um/s -> cm/s, times cm^2/cm^3
    assert pool.capillary_rate_per_s[il1b] == pytest.approx(0.001e-4 * 150)  # the default permeability
    g = np.asarray(model.solver.conductance)
    blood = labels == BLOOD
    near_bbb = np.zeros_like(blood)
    near_bbb[:, :, :-1] |= labels[:, :, 1:] == BBB
    assert (blood & near_bbb).any() and np.all(g[:, blood & near_bbb] == 1.0)  # the brain vessel beside the BBB: open
    tumour_vessel = blood & (np.arange(labels.shape[2]) < labels.shape[2] // 3)[None, None, :]
    assert tumour_vessel.any() and np.all(g[:, tumour_vessel] == 0.0)  # the tumour's vessel (the middle of the tissue block)


def test_dilate6_is_scipys_default_binary_dilation():
    from scipy import ndimage  # noqa: PLC0415

    from carabm.biology.endothelium import dilate6  # noqa: PLC0415

    rng = np.random.default_rng(11)
    for density in (0.002, 0.05, 0.4):
        mask = rng.random((7, 9, 11)) < density
        assert np.array_equal(dilate6(mask), ndimage.binary_dilation(mask))
    edge = np.zeros((3, 4, 5), dtype=bool)
    edge[0, 0, 0] = edge[2, 3, 4] = True  # corners: nothing wraps around
    assert np.array_equal(dilate6(edge), ndimage.binary_dilation(edge))
    for layout in ([], ["lattice.layout.vessel_spacing_um=240"]):
        lattice = build_lattice(load_config(None, SMALL + layout))
        reach = lattice.labels == BBB  # the separator's own steps, against scipy's iterations
        assert np.array_equal(dilate6(dilate6(reach)), ndimage.binary_dilation(reach, iterations=2))


@pytest.mark.parametrize("dt_min", [6.0, 3.0, 1.0])
def test_the_capped_speeds_note_names_the_kinds_whose_hop_probability_is_capped(dt_min):
    """``carabm validate`` notes a speed above one hop per step exactly where the engine's walk caps the hop probability at 1."""
    model = make(f"run.dt_min={dt_min:g}")
    capped = {name for name, k in model.store.kind_index.items() if float(model.movement.hop_rate[k]) > 1.0}
    noted = {note.split(".")[1] for note in capped_speeds(model.config)}
    assert noted == capped
    assert ("cart" in capped) == (dt_min > 20.0 / 18.0)  # a 20-µm hop at 18 µm/min takes 1.1 min
    assert ("monocyte" in capped) == (dt_min > 4.0)
