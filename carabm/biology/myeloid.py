"""What macrophages, monocytes and microglia share: activation by signals, secretion, IL-6 uptake.

Activation level ``a`` in [0, 1] follows ``da/dt = r_on S (1 - a) - r_off a``. The signal
``S = min(1, P (1 + g A)) / (1 + IL10/h10)``: priming ``P`` is the probabilistic OR of Hill
responses to IFN-γ, GM-CSF and DAMPs and of CD40L contact with activated CAR-T cells; the
amplifiers IL-1β, IL-6 and TNF-α (``A``, also an OR of Hill responses) multiply it by up to
``1 + g``. Amplifiers alone do not activate a resting cell, so the resting state is stable
and the storm needs the CAR-T trigger; IL-10 damps it. Secretion
rises from a basal fraction to full with ``a``; IL-6 production largely needs IL-1 signalling
(IL-1 induces IL-6), so IL-1 blockade lowers IL-6; IL-10 comes late (after ``il10_delay_h`` of
activation), closing the negative feedback loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carabm.biology import cart, rules
from carabm.biology.cytokines import sense

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel
    from carabm.io.config import Myeloid

RESTING, ACTIVATED = 0, 1
VARIABLES = {"activation": "float32", "active_h": "float32"}
ACTIVE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Inputs:
    """What the myeloid rules sense, per agent ``[n]``: cytokine levels at its voxel, its
    compartment's free signalling fractions, and CD40L contact with an engaged CAR-T cell.

    The same for every myeloid kind within a decide layer (fields, positions and CAR-T cells
    do not change between the myeloid rules), so :meth:`CrsModel.step` gathers them once.
    """

    local: dict[str, Any]
    block: dict[str, Any]
    cd40l: Any


def inputs(model: CrsModel) -> Inputs:
    """Gather :class:`Inputs` for all agents (after the CAR-T rules of the step)."""
    return Inputs(
        sense(model.fields_flat, model.voxels()),
        model.effects.signal_free_fraction(model.compartments()),
        model.has_neighbour(cart.NAME, where=cart.engaged(model)),
    )


def activate(model: CrsModel, cells: Any, params: Myeloid, sensed: Inputs) -> Any:
    """Update the activation level of the agents where ``cells`` (bool ``[n]``, one myeloid kind) is set; returns it ``[n]``."""
    xp, store = model.xp, model.store
    local, block, cd40l = sensed.local, sensed.block, sensed.cd40l
    power = params.activation_hill
    priming = rules.any_of(
        *[rules.hill(local[name] * block[name], h, power) for name, h in params.trigger_half_max_pg_ml.as_dict().items()],
        params.contact_signal * cd40l.astype(xp.float32),
    )
    amplifier = rules.any_of(*[rules.hill(local[name] * block[name], h, power) for name, h in params.amplifier_half_max_pg_ml.as_dict().items()])
    signal = xp.minimum(priming * (1.0 + params.amplification_gain * amplifier), 1.0)
    signal = signal * rules.inhibition(local["IL10"], params.il10_half_max_pg_ml) * model.effects.myeloid_activation
    level = rules.relax(store["activation"], params.activation_per_h * signal, params.deactivation_per_h, model.dt_h)
    active = level > ACTIVE_THRESHOLD
    active_h = xp.where(active, store["active_h"] + model.dt_h, xp.where(level < 0.2, 0.0, store["active_h"]))
    store["activation"][...] = xp.where(cells, level.astype(xp.float32), store["activation"])
    store["active_h"][...] = xp.where(cells, active_h.astype(xp.float32), store["active_h"])
    store.state[...] = xp.where(cells, xp.where(active, ACTIVATED, RESTING).astype(store.state.dtype), store.state)
    return level


def secrete(model: CrsModel, cells: Any, params: Myeloid) -> None:
    """Secretion scaled by activation (IL-10 late), and IL-6 consumption by IL-6 receptors, of the agents where ``cells`` is set."""
    xp, store = model.xp, model.store
    voxels = model.voxels()
    compartments = model.compartments()
    level = store["activation"]
    drive = (params.basal_fraction + (1.0 - params.basal_fraction) * level) * model.effects.cytokine_production
    late = rules.hill(store["active_h"], params.il10_delay_h)
    il1_free = model.effects.signal_free_fraction(compartments)["IL1b"]
    il1_signal = rules.hill(model.fields_flat[model.index["IL1b"], voxels] * il1_free, params.il1_for_il6_half_max_pg_ml, params.activation_hill)
    il6_induction = (1.0 - params.il6_needs_il1) + params.il6_needs_il1 * il1_signal
    for name, rate in params.secretion_pg_cell_h.as_dict().items():
        factor = late if name == "IL10" else il6_induction if name == "IL6" else 1.0
        model.secretion.add_each(name, voxels, xp.where(cells, rate * drive * factor, 0.0))
    free_receptors = model.effects.il6_receptor_free(compartments)
    model.secretion.consume("IL6", voxels, cells, params.il6_uptake_per_h * free_receptors)
