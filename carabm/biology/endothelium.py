"""Endothelial activation: BBB integrity per BBB voxel, and systemic capillary leak.

IL-6 (trans-signalling), IL-1β, TNF-α and IFN-γ lower integrity ``I`` of each BBB voxel,
``dI/dt = -k_damage D (1 - 0) I + k_recover (1 - I)``, with ``D`` the OR of Hill responses
to the larger of the serum level (blood side) and the level in the BBB voxel. Integrity
sets the field solver's face conductance (``p + (1 - p)(1 - I)`` per cytokine, ``p`` the
intact permeability) and the cells' crossing probability (engine). The systemic leak
``L`` (0..1) follows the same law from serum levels and drives hypotension and hypoxia.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carabm.biology import rules

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel


def damage_signal(levels: dict[str, Any], half_max: dict[str, float], power: float) -> Any:
    """OR of Hill responses to the damaging cytokines."""
    return rules.any_of(*[rules.hill(levels[name], h, power) for name, h in half_max.items()])


def update(model: CrsModel, serum_pg_ml: Any = None) -> None:
    """Advance BBB integrity and systemic leak by one step; refresh the solver's conductance.

    ``serum_pg_ml``: the serum per cytokine (host), when the caller has it; else read once.
    """
    p = model.config.endothelium
    xp = model.xp
    free = model.effects.signal_free_fraction_scalar("blood")
    levels = model.serum if serum_pg_ml is None else serum_pg_ml
    serum = {name: float(levels[i]) * free[name] for name, i in model.index.items()}
    bbb = model.bbb_voxels
    if model.n_bbb:
        local = {name: xp.maximum(model.fields_flat[model.index[name], bbb] * free[name], serum[name]) for name in p.damage_half_max_pg_ml.as_dict()}
        signal = damage_signal(local, p.damage_half_max_pg_ml.as_dict(), p.damage_hill)
        integrity = model.integrity.reshape(-1)
        integrity[bbb] = rules.relax(integrity[bbb], p.recovery_per_h, p.damage_per_h * signal, model.dt_h).astype(xp.float32)
        model.integrity_changed()
        model.refresh_conductance(check=False)
    leak_signal = float(damage_signal(serum, p.leak_half_max_pg_ml.as_dict(), p.damage_hill))
    model.leak = float(rules.relax(model.leak, p.leak_per_h * leak_signal, p.leak_recovery_per_h, model.dt_h))
