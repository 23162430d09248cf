"""Monocytes: circulate, are recruited by MCP-1 and GM-CSF into tissue (and through a leaky
BBB into the CNS), are the main IL-1/IL-6 producers (Norelli 2018), and become macrophages
over days.

The circulating pool is kept at the patient's baseline by marrow output: pool cells leave
the blood with the circulating half-life and are replaced at the same rate; serum GM-CSF
raises that baseline (emergency myelopoiesis), so GM-CSF blockade (lenzilumab) lowers the
myeloid supply of the storm (Sterner, Blood 2019).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carabm.biology import myeloid, rules
from carabm.engine.lattice import BLOOD
from carabm.engine.rng import stochastic_round

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "monocyte"


def recruitment_scale(model: CrsModel) -> Any:
    """Per-agent multiplier on extravasation ``float32 [n]``: MCP-1 at the vessel wall raises recruitment."""
    p = model.config.cells.monocyte
    xp = model.xp
    voxels = model.voxels()
    mcp1 = model.fields_flat[model.index["MCP1"], voxels]
    gmcsf = model.fields_flat[model.index["GMCSF"], voxels] * model.effects.free["periphery"]["GMCSF"]
    gain = (1.0 + p.mcp1_recruitment_gain * rules.hill(mcp1, p.mcp1_half_max_pg_ml)) * (
        1.0 + p.gmcsf_recruitment_gain * rules.hill(gmcsf, p.gmcsf_half_max_pg_ml)
    )
    return xp.where(model.mask_of(NAME), gain.astype(xp.float32), xp.float32(1.0))


def step(model: CrsModel, sensed: myeloid.Inputs) -> None:
    """Activation and differentiation into macrophages of monocytes that left the blood."""
    p = model.config.cells.monocyte
    xp, store = model.xp, model.store
    cells = model.mask_of(NAME)
    myeloid.activate(model, cells, p, sensed)
    outside_blood = model.compartments() != BLOOD
    p_diff = rules.probability(1.0 / p.differentiation_h, model.dt_h)
    becomes = cells & outside_blood & (model.uniform_all("monocyte:differentiate") < p_diff)
    store.kind[...] = xp.where(becomes, store.kind_id("macrophage"), store.kind).astype(store.kind.dtype)


def secrete(model: CrsModel) -> None:
    """Secretion and IL-6 uptake of monocytes."""
    myeloid.secrete(model, model.mask_of(NAME), model.config.cells.monocyte)


def renew_pool(model: CrsModel) -> None:
    """Marrow output and blood exit keep the circulating pool at the patient's baseline."""
    p = model.config.cells.monocyte
    pool = model.circulation.pool
    k = model.store.kind_id(NAME)
    fraction = rules.probability(rules.rate_per_h_from_half_life(p.blood_half_life_h), model.dt_h)
    current = int(pool[k].sum())
    gmcsf = float(model.serum[model.index["GMCSF"]]) * model.effects.free["periphery"]["GMCSF"]
    target = model.baseline_monocytes * (1.0 + p.gmcsf_marrow_gain * rules.hill(gmcsf, p.gmcsf_half_max_pg_ml))
    change = (target - current) * fraction * model.effects.monocyte_supply
    whole = stochastic_round(change, model.uniform_scalar("monocyte:pool"))
    if whole >= 0:
        pool[k, myeloid.RESTING] += whole
    else:
        pool[k, myeloid.RESTING] = max(0, pool[k, myeloid.RESTING] + whole)
