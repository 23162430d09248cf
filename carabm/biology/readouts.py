"""The time-series row of a step: counts, blood levels, CNS means, BBB integrity, clinical grades, drugs.

Built from the catalog (every registered cell type and cytokine), from one packed array read
from the device per step (host read ``readouts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from carabm.biology import acute_phase, clinical, endothelium, monocyte
from carabm.engine import scatter
from carabm.engine.circulation import UL_PER_ML
from carabm.engine.lattice import CNS
from carabm.io.catalog import CATALOG

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel


#: the per-agent variable whose mean per cell type is the ``mean_activation/<name>`` readout
ACTIVATION = "activation"


def _activation_kinds(model: CrsModel) -> list[int]:
    """Kind ids of the cell types with an activation level (the myeloid kinds)."""
    return [k for k, cell in enumerate(CATALOG.cell_types.values()) if ACTIVATION in cell.variables]


#: activation levels are summed as whole multiples of 1/ACTIVATION_QUANTUM (order-independent sums)
ACTIVATION_QUANTUM = float(2**32)


def _kind_groups(model: CrsModel) -> tuple[list[int], list[int], list[int]]:
    """Kind ids of the cell types that may be in blood, that cross the BBB, and that are the tumour."""
    kinds = model.store.kinds
    blood = [k for k, spec in enumerate(kinds) if spec.in_blood]
    crossing = [k for k, spec in enumerate(kinds) if spec.bbb_crossing]
    tumour = [k for k, cell in enumerate(CATALOG.cell_types.values()) if cell.tumour]
    return blood, crossing, tumour


def packed(model: CrsModel) -> Any:
    """Everything the readouts need from the device, as one float64 array (see :func:`row`).

    Layout: lattice counts per kind ``[K]``, activated agents per kind ``[K]``, lattice-blood
    cells (agents' weights) of the kinds that may be in blood ``[B]``, lattice cells (agents'
    weights) per kind ``[K]``, CNS infiltrate ``[1]``, mean CNS level per cytokine ``[C]``
    (float32 values), mean BBB integrity ``[1]`` (float32 value), minimum BBB integrity ``[1]``,
    BBB voxels below ``clinical.edema_integrity`` ``[1]``, this step's tallies ``[T]``, summed
    activation level per kind with one ``[A]``. Counts are exact in float64.
    """
    xp = model.xp
    agents, activation = _by_kind_host(model) if xp is np else _by_kind_masked(model)
    return xp.concatenate(agents + _site_parts(model) + activation)


def _by_kind_masked(model: CrsModel) -> tuple[list[Any], list[Any]]:
    """The per-kind parts of :func:`packed` from a ``[K, n]`` mask (the device form: no host read)."""
    xp, store = model.xp, model.store
    f64 = xp.float64
    cells = list(CATALOG.cell_types.values())
    blood_kinds, crossing, _ = _kind_groups(model)
    kinds = xp.arange(len(cells), dtype=store.kind.dtype)
    is_kind = store.kind[None, :] == kinds[:, None]  # [K, n]
    activated_state = xp.asarray([c.code(c.activated) if c.activated else -1 for c in cells], dtype=xp.int16)
    activated = is_kind & (store.state.astype(xp.int16)[None, :] == activated_state[:, None])
    in_blood = model.circulation.in_lattice_blood()
    weight = store.weights().astype(f64)[None, :]
    blood = is_kind[blood_kinds] & in_blood[None, :]
    in_cns = model.compartments() == CNS
    infiltrating = is_kind[crossing].any(axis=0) & in_cns
    parts = [is_kind.sum(axis=1, dtype=xp.int64), activated.sum(axis=1, dtype=xp.int64), (blood * weight).sum(axis=1),
             (is_kind * weight).sum(axis=1), infiltrating.sum(dtype=xp.int64).reshape(1)]  # fmt: skip
    active_kinds = _activation_kinds(model)
    activation = []
    if active_kinds:
        # summed as integers of 2^-32 (exact, so the same whatever the agents' order: the GPU path
        # sorts agents by voxel), then back to a level sum; 4096 agents at 1.0 stay far below 2^63
        level = xp.rint(store[ACTIVATION].astype(f64) * ACTIVATION_QUANTUM).astype(xp.int64)
        sums = xp.where(is_kind[active_kinds], level[None, :], 0).sum(axis=1, dtype=xp.int64)
        activation.append(sums.astype(f64) / ACTIVATION_QUANTUM)
    return [part.astype(f64) for part in parts], activation


def _by_kind_host(model: CrsModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_by_kind_masked` on host arrays: histograms by kind (``bincount``) instead of a ``[K, n]`` mask.

    The same numbers: counts are integers; float32 weights within 20 binary orders of magnitude
    of each other (what divisions from ``min_agents`` make) sum exactly in float64 in any order,
    and so do the activation quanta (whole numbers below 2^53).
    """
    store = model.store
    n_kinds = len(CATALOG.cell_types)
    blood_kinds, crossing, _ = _kind_groups(model)
    kind = store.kind.astype(np.intp)
    weight = store.weights().astype(np.float64)
    cells = list(CATALOG.cell_types.values())
    activated_state = np.asarray([c.code(c.activated) if c.activated else -1 for c in cells], dtype=np.int16)
    activated = store.state.astype(np.int16) == activated_state[kind]
    in_blood = model.circulation.in_lattice_blood()
    in_cns = model.compartments() == CNS
    crossing_kind = np.zeros(n_kinds, dtype=bool)
    crossing_kind[crossing] = True
    parts = [np.bincount(kind, minlength=n_kinds).astype(np.float64), np.bincount(kind[activated], minlength=n_kinds).astype(np.float64),
             np.bincount(kind[in_blood], weights=weight[in_blood], minlength=n_kinds)[blood_kinds],
             np.bincount(kind, weights=weight, minlength=n_kinds),
             np.array([np.count_nonzero(crossing_kind[kind] & in_cns)], dtype=np.float64)]  # fmt: skip
    active_kinds = _activation_kinds(model)
    activation = []
    if active_kinds:
        level = np.rint(store[ACTIVATION].astype(np.float64) * ACTIVATION_QUANTUM)
        activation.append(np.bincount(kind, weights=level, minlength=n_kinds)[active_kinds] / ACTIVATION_QUANTUM)
    return parts, activation


def _site_parts(model: CrsModel) -> list[Any]:
    """The parts of :func:`packed` that are not per kind: CNS means, BBB integrity (mean, minimum, oedema voxels), tallies."""
    xp = model.xp
    f64 = xp.float64
    parts = []
    if model.n_cns:
        parts.append(scatter.mean_at(model.fields_flat, model.cns_voxels).astype(f64))
    else:
        parts.append(xp.zeros(len(CATALOG.cytokines), dtype=f64))
    if model.n_bbb:
        bbb = model.integrity.reshape(-1)[model.bbb_voxels]
        edema = (bbb < model.config.clinical.edema_integrity).sum(dtype=xp.int64).astype(f64).reshape(1)
        parts += [model.integrity_mean_device().astype(f64).reshape(1), bbb.min().astype(f64).reshape(1), edema]
    else:
        parts.append(xp.asarray([1.0, 1.0, 0.0], dtype=f64))
    parts.append(model.tallies.astype(f64))
    return parts


def row(model: CrsModel, serum: np.ndarray) -> dict[str, Any]:
    """The time-series row of this step (host scalars), from one packed ``readouts`` host read.

    Also adds the step's tallies to ``model.counters`` and leaves the mean BBB integrity with
    the model (the next step's start then reads nothing).
    """
    circ, config = model.circulation, model.config
    cells = list(CATALOG.cell_types)
    cytokines = list(CATALOG.cytokines)
    blood_kinds, _, tumour = _kind_groups(model)
    n_kinds, n_cyt, n_blood = len(cells), len(cytokines), len(blood_kinds)
    values = model.backend.to_host(packed(model), "readouts")
    model.tallies.fill(0)
    lattice_counts = values[:n_kinds].astype(np.int64)
    activated = values[n_kinds : 2 * n_kinds].astype(np.int64)
    at = 2 * n_kinds
    in_lattice_blood = values[at : at + n_blood]
    lattice_cells = values[at + n_blood : at + n_blood + n_kinds]
    infiltrate = int(values[at + n_blood + n_kinds])
    at += n_blood + n_kinds + 1
    cns = values[at : at + n_cyt]
    integrity, integrity_min, edema_voxels = (float(v) for v in values[at + n_cyt : at + n_cyt + 3])
    n_tallies = len(model.tally_names)
    for name, value in zip(model.tally_names, values[at + n_cyt + 3 : at + n_cyt + 3 + n_tallies].astype(np.int64)):
        model.counters[name] += int(value)
    activation_sums = values[at + n_cyt + 3 + n_tallies :]
    model.integrity_known(integrity)

    out: dict[str, Any] = {"time_h": model.step_index * model.dt_h}
    for k, name in enumerate(cells):
        out[f"counts/{name}"] = int(lattice_counts[k] + circ.pool[k].sum())
    for k, name in enumerate(cells):
        out[f"cells/{name}"] = float(lattice_cells[k] + (circ.pool[k] * circ.pool_weight[k]).sum())
    free = model.effects.signal_free_fraction_scalar("blood")
    for i, name in enumerate(cytokines):
        out[f"serum/{name}"] = float(serum[i])
        out[f"cns/{name}"] = float(cns[i])
    out["bbb_integrity"] = integrity
    serum_free = {name: float(serum[i]) * free[name] for i, name in enumerate(cytokines)}
    temperature = clinical.temperature_c(serum_free, config.clinical)
    out["temperature_c"] = temperature
    vascular, p = model.vascular, config.clinical
    out["endothelial_activation"] = vascular.activation
    out["ang2_ang1"] = float(endothelium.ang2_ang1(config.patient.ang2_ang1_baseline, vascular.activation, config.endothelium))
    out["vascular_leak"] = vascular.leak
    out["vasodilation"] = vascular.vasodilation
    vasopressor = clinical.vasopressor_need(vascular.vasodilation, vascular.leak, p)
    oxygen = clinical.oxygen_need(vascular.leak)
    out["vasopressor_need"] = vasopressor
    out["oxygen_need"] = oxygen
    out["crs_grade"] = clinical.crs_grade(temperature, vasopressor, oxygen, p, model.effects.fever_masked)
    cns_levels = {name: float(cns[i]) for i, name in enumerate(cytokines)}
    index = clinical.cns_inflammation(cns_levels, p)
    ice = clinical.ice_score(index, p)
    consciousness = clinical.consciousness_depression(index, p)
    seizure = clinical.seizure_propensity(cns_levels, p)
    motor = 1.0 - integrity_min
    edema = edema_voxels / model.n_bbb if model.n_bbb else 0.0
    out["ice_score"] = ice
    out["consciousness_depression"] = consciousness
    out["seizure_propensity"] = seizure
    out["motor_deficit"] = motor
    out["cerebral_edema"] = edema
    domains = clinical.icans_domains(ice, consciousness, seizure, motor, edema, p)
    out["icans_grade"] = clinical.icans_grade(domains)
    for name, grade in domains.items():
        out[f"icans_domain/{name}"] = grade
    out["tumor_burden"] = int(sum(lattice_counts[k] for k in tumour))
    volume_ul = circ.total_volume_ml * UL_PER_ML  # as BloodCirculation.blood_count_per_ul
    for j, k in enumerate(blood_kinds):
        out[f"blood_per_ul/{cells[k]}"] = (circ.pool_cells(cells[k]) + float(in_lattice_blood[j])) / volume_ul
    for k, cell in enumerate(CATALOG.cell_types.values()):
        if cell.activated is not None:
            in_pool = int(circ.pool[k, cell.code(cell.activated)]) if circ.circulating[k] else 0
            out[f"activated/{cell.name}"] = int(activated[k] + in_pool)
    out["cns_infiltrate"] = infiltrate
    for j, k in enumerate(_activation_kinds(model)):
        out[f"mean_activation/{cells[k]}"] = float(activation_sums[j] / lattice_counts[k]) if lattice_counts[k] else 0.0
    pool = model.parts.get(monocyte.POOL_PART)
    if pool is not None:
        out["monocyte_pool_activation"] = pool.mean_level
        for name, rate in pool.secretion_pg_ml_h.items():
            out[f"monocyte_pool_secretion/{name}"] = rate
    out.update(acute_phase.readouts(model))
    for name, pk in model.therapy.plasma.items():
        out[f"drug/{name}"] = pk.conc_ug_ml
        out[f"drug_cns/{name}"] = pk.cns_ug_ml(integrity)
    return out
