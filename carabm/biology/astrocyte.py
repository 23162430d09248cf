"""Astrocytes: a voxel-level CNS cell population that answers IL-1β and TNF-α with IL-6 and MCP-1.

Astrocytes fill the brain parenchyma, so they are a density per CNS voxel rather than agents
(one agent per voxel would crowd out microglia and infiltrating cells). Their reactivity
``A`` (0..1) per CNS voxel follows ``dA/dt = r_on S (1 - A) - r_off A`` with ``S`` the OR of Hill
responses to the local IL-1β and TNF-α (from microglia and infiltrating cells) and to albumin
leaking through the opened BBB (the mean BBB opening ``(1 - I)^h``, the conductance law of
:class:`carabm.biology.endothelium.Conductance`; albumin taken up by astrocytes through TGF-β
receptors activates them: Ivens, Brain 2007), so reactivity lasts while the BBB heals; reactive
astrocytes secrete IL-6 and MCP-1/CCL2, a major CNS source of both, and resolve slowly. This
closes the CNS loop: microglia make IL-1β/TNF-α, astrocytes IL-6/MCP-1, MCP-1 draws monocytes
through a leaky BBB (Santomasso, Cancer Discov 2018: IL-6 and MCP-1 disproportionately high in
CSF during severe neurotoxicity, i.e. made in the CNS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from carabm.biology import rules
from carabm.errors import CheckpointError
from carabm.io.catalog import Layer
from carabm.io.config import CytokineMap, Strict, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "astrocyte"


class Astrocyte(Strict):
    """Reactive astrocytes of the CNS (a density per CNS voxel)."""

    cells_per_voxel: float = Field(0.3, ge=0, description="astrocytes per CNS voxel [cells]; assumed (astrocytes are a fifth to a third of brain cells)")
    activation_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL1b=100.0, TNFa=100.0), description="local level for half-maximal astrocyte reactivity, per cytokine [pg/mL]; assumed"
    )
    albumin_opening_half_max: float = Field(
        0.1, gt=0, description="mean BBB opening (1 - integrity)^crossing_hill for half-maximal reactivity from extravasated albumin "
                               "(Hill power 2) [1]; assumed: an opening of 0.1 is a BBB integrity near 0.7, where CNS infiltration "
                               "begins (albumin activates astrocytes through TGF-b receptors: Ivens, Brain 2007)",
    )  # fmt: skip
    activation_per_h: float = Field(0.2, ge=0, description="reactivity rise rate at full signal [1/h]; assumed (hours)")
    resolution_per_h: float = Field(0.02, ge=0, description="return to rest [1/h]; assumed (reactive astrocytes persist for days)")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IL6=1e-5, MCP1=5e-5),
        description="secretion at full reactivity [pg/cell/h]; assumed: IL-6 10x below microglia per cell, MCP-1 a main astrocyte product",
    )


class Astrocytes:
    """Reactivity per CNS voxel (device, float32 ``[n_cns]``)."""

    def __init__(self, xp: Any, n_cns: int):
        self.xp = xp
        self.reactivity = xp.zeros(n_cns, dtype=xp.float32)

    def checkpoint_state(self) -> dict[str, Any]:
        """Reactivity per CNS voxel (host copy; docs/state.md)."""
        from carabm.engine.backend import array_backend  # noqa: PLC0415

        return {"reactivity": array_backend(self.reactivity).to_host(self.reactivity, "checkpoint").copy()}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint_state` (same lattice)."""
        saved = np.asarray(state["reactivity"])
        if saved.shape != tuple(self.reactivity.shape):
            raise CheckpointError(f"saved astrocyte reactivity has {saved.size} CNS voxels but this lattice has {self.reactivity.size}")
        self.reactivity = self.xp.array(saved, dtype=self.xp.float32)


def bbb_opening(model: CrsModel) -> Any:
    """Mean opening ``(1 - I)^h`` over BBB voxels (0-d device array): what lets plasma proteins through."""
    integrity = model.integrity.reshape(-1)[model.bbb_voxels]
    return (model.xp.clip(1.0 - integrity, 0.0, 1.0) ** model.config.endothelium.crossing_hill).mean()


def step(model: CrsModel) -> None:
    """Reactivity from the local IL-1β/TNF-α (free of drugs) and the BBB breach, then IL-6 and MCP-1 secretion into the CNS voxels."""
    if not model.n_cns:
        return
    p = model.config.astrocyte
    xp = model.xp
    state = model.astrocytes
    free = model.effects.signal_free_fraction_scalar("cns")
    cns = model.cns_voxels
    albumin = rules.hill(bbb_opening(model), p.albumin_opening_half_max, 2.0) if model.n_bbb else 0.0
    signal = rules.any_of(*[rules.hill(model.fields_flat[model.index[name], cns] * free[name], h)
                            for name, h in p.activation_half_max_pg_ml.as_dict().items()], albumin)  # fmt: skip
    state.reactivity = rules.relax(state.reactivity, p.activation_per_h * signal, p.resolution_per_h, model.dt_h).astype(xp.float32)
    drive = state.reactivity * (p.cells_per_voxel * model.effects.cytokine_production)
    for name, rate in p.secretion_pg_cell_h.as_dict().items():
        model.secretion.add_voxels(name, cns, drive * rate)


#: the layer: after the cell types' secretion (catalog phase ``secrete``)
LAYER = Layer(NAME, "secrete", step)
