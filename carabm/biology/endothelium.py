"""Endothelial activation: its own state (Ang-2/Ang-1 balance), BBB integrity, systemic leak and vascular tone.

Endothelial activation ``E`` (0..1, systemic and per BBB voxel) rises with the OR of Hill
responses ``D`` to IL-6, IL-1β and TNF-α (not IFN-γ: it acts through myeloid cells), ``dE/dt = r_on D (1 - E) - r_off E``:
cytokines release Ang-2 from Weibel-Palade bodies, so the Ang-2/Ang-1 ratio
``R = R0 (1 + f E)`` rises from the patient's baseline ``R0`` (``patient.ang2_ang1_baseline``;
Gust, Cancer Discov 2017; Hay, Blood 2017). Ang-1 and Ang-2 compete for Tie2 with similar
affinity (Maisonpierre, Science 1997), so the share of Tie2 without the stabilising Ang-1
signal is ``U = R / (1 + R)``. Cytokine injury opens junctions in proportion to ``D U``:

* BBB integrity ``I`` per BBB voxel: ``dI/dt = -k_damage D U I + k_recover (1 - I)``, ``D`` from
  the larger of the serum level and the level in the voxel. Integrity sets the field
  solver's face conductance and the cells' crossing probability (engine).
* Systemic capillary leak ``L`` (pulmonary and peripheral; 0..1, drives hypoxia and part of
  hypotension): ``dL/dt = k_leak D U (1 - L) - k_reseal L`` from serum levels.
* Vasodilation ``V`` (0..1, drives hypotension): NO from iNOS that IL-1β and TNF-α induce in
  myeloid cells (Giavridis, Nat Med 2018): ``dV/dt = k_no N (1 - V) - k_tone V``, ``N`` the OR
  of Hill responses to serum IL-1β and TNF-α.

All in :class:`Vascular` (checkpointed with the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from carabm.biology import rules
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice
from carabm.errors import CheckpointError
from carabm.io.config import CytokineMap, Strict, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel


class Endothelium(Strict):
    """Endothelial activation (Ang-2/Ang-1), BBB integrity, systemic leak and vascular tone."""

    activation_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=1000.0, IL1b=50.0, TNFa=100.0),
        description="level for half-maximal endothelial activation, per cytokine [pg/mL]; assumed: between the peaks of mild "
                    "CRS (IL-6 ~1e2) and severe CRS (IL-6 1e3-1e4, Teachey, Cancer Discov 2016; Hay, Blood 2017), IL-1b and "
                    "TNF-a at the tens to hundreds of pg/mL seen in severe CRS. No IFN-g: CAR-T cells that make IFN-g (and "
                    "GM-CSF) cause no CRS in mice without monocytes and macrophages (Giavridis, Nat Med 2018; Norelli, Nat Med "
                    "2018), so IFN-g acts through myeloid priming, not on the endothelium directly",
    )  # fmt: skip
    activation_hill: float = Field(2.0, gt=0, description="Hill power of the activating and iNOS-inducing signals [1]; assumed (a response over about a decade of concentration)")
    activation_per_h: float = Field(0.5, ge=0, description="endothelial activation rate at full signal [1/h]; assumed (Weibel-Palade exocytosis within minutes, transcription over hours)")
    resolution_per_h: float = Field(0.03, ge=0, description="return of endothelial activation to rest [1/h]; assumed (Ang-2 stays raised for days after the cytokine peak)")
    ang2_release_fold: float = Field(
        4.0, ge=0, description="rise of the Ang-2/Ang-1 ratio at full activation, as a multiple of the baseline [1]; assumed (Ang-2 several-fold "
                               "above baseline in severe CRS, Hay, Blood 2017)",
    )  # fmt: skip
    damage_per_h: float = Field(0.06, ge=0, description="BBB integrity loss rate at full cytokine injury with no Tie2 protection [1/h]; assumed (foot-process loss over a day or two)")
    recovery_per_h: float = Field(0.01, ge=0, description="recovery rate of BBB integrity towards 1 [1/h]; assumed (days)")
    crossing_hill: float = Field(2.0, gt=0, description="BBB opening (1 - integrity)^h scales cell crossing per try and cytokine conductance; assumed")
    leak_per_h: float = Field(
        0.15, ge=0,
        description="systemic capillary leak rise rate at full cytokine injury with no Tie2 protection [1/h]; assumed: leak within "
        "hours (time constant ~6 h at full injury); with the resealing rate, the leak's steady state is graded over the whole "
        "range of injury, reaching the positive-pressure level (0.75) only near full injury and full Tie2 loss",
    )
    leak_recovery_per_h: float = Field(0.05, ge=0, description="resealing of the systemic capillary leak [1/h]; assumed (about a day once cytokines fall)")
    vasodilation_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL1b=50.0, TNFa=100.0),
        description="serum level for half-maximal iNOS/NO vasodilation, per cytokine [pg/mL]; assumed: IL-1 drives macrophage iNOS and NO "
                    "in CRS (Giavridis, Nat Med 2018), half-max at the tens to hundreds of pg/mL of severe CRS",
    )  # fmt: skip
    vasodilation_per_h: float = Field(0.3, ge=0, description="vasodilation rise rate at full iNOS induction [1/h]; assumed (iNOS expression within hours)")
    vasodilation_recovery_per_h: float = Field(0.1, ge=0, description="return of vascular tone [1/h]; assumed (iNOS protein decays over hours)")
    vessel_surface_per_cm: float = Field(
        200.0, gt=0,
        description="capillary wall area per tissue volume at the tumour site [cm^2/cm^3]; Baxter & Jain (Microvasc Res 1989) "
                    "take 200 for tumours. With each cytokine's vessel_permeability_um_s it sets the tissue's exchange with serum, "
                    "P S/V, spread over every tissue voxel (docs/model.md, 'Capillary exchange')",
    )


class Vascular:
    """The endothelium's state: activation per BBB voxel (device) and, systemic, activation, leak and vasodilation (host)."""

    def __init__(self, xp: Any, n_bbb: int):
        self.xp = xp
        self.bbb_activation = xp.zeros(n_bbb, dtype=xp.float32)
        self.activation = 0.0
        self.leak = 0.0
        self.vasodilation = 0.0

    def checkpoint_state(self) -> dict[str, Any]:
        """Activation per BBB voxel (host copy) and the systemic numbers (docs/state.md)."""
        from carabm.engine.backend import array_backend  # noqa: PLC0415

        host = array_backend(self.bbb_activation).to_host(self.bbb_activation, "checkpoint").copy()
        return {"bbb_activation": host, "activation": self.activation, "leak": self.leak, "vasodilation": self.vasodilation}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint_state` (same lattice)."""
        saved = np.asarray(state["bbb_activation"])
        if saved.shape != tuple(self.bbb_activation.shape):
            raise CheckpointError(f"saved endothelial activation has {saved.size} BBB voxels but this lattice has {self.bbb_activation.size}")
        self.bbb_activation = self.xp.array(saved, dtype=self.xp.float32)
        self.activation = float(state["activation"])
        self.leak = float(state["leak"])
        self.vasodilation = float(state["vasodilation"])


def brain_separator(lattice: Lattice, reach: int = 4) -> np.ndarray:
    """Tissue voxels touching the brain's vessel: given zero conductance for cytokines.

    In the body the tumour site and the brain are far apart; on the lattice they share the
    brain vessel. Without this seam, cytokines made in the tumour would diffuse through the
    thin vessel straight to the BBB within one implicit step (blood is well mixed with the
    systemic pool only between steps). Blood within ``reach`` voxels of the BBB counts as
    the brain vessel. Cells still cross; only diffusion is cut.
    """
    return dilate6(brain_vessel(lattice, reach)) & (lattice.labels == TISSUE)


def brain_vessel(lattice: Lattice, reach: int = 4) -> np.ndarray:
    """Blood within ``reach`` voxels of the BBB: the brain's vessel, whose wall is the BBB layer."""
    near_bbb = lattice.labels == BBB
    for _ in range(reach):
        near_bbb = dilate6(near_bbb)
    return near_bbb & (lattice.labels == BLOOD)


def brain_blood_weight(lattice: Lattice, scale: float, brain_fluid_ml: float) -> np.ndarray | None:
    """How many times each blood voxel's trade with serum counts: the brain's vessel at ``scale / brain share``, the rest 1.

    The lattice's tissue, its cells and its vessels stand for a share ``scale`` of the patient's
    tumour, but its CNS stands for the patient's brain, whose size does not follow the tumour's:
    the brain's share is ``CNS volume on the lattice / brain_fluid_ml``, the volume in which the
    brain holds its cytokines (its extracellular space). Without this the lattice's brain would
    stand for 20 mL of brain fluid at 1e9 tumour cells and 2 L at 1e11, and a large tumour would
    come with a large brain soaking up serum cytokines once the BBB opens. None when the lattice
    has no CNS. Cells crossing into the CNS still count at ``scale``.
    """
    n_cns = lattice.count(CNS)
    if n_cns == 0:
        return None
    brain_share = n_cns * lattice.voxel_volume_ml / brain_fluid_ml
    weight = np.ones(lattice.shape, dtype=np.float64)
    weight[brain_vessel(lattice)] = scale / brain_share
    return weight


def closed_blood(lattice: Lattice) -> np.ndarray:
    """Blood voxels closed to cytokine diffusion: all blood but the brain's vessel (see :class:`Conductance`).

    The tissue trades with serum through its capillary bed, spread over every tissue voxel
    (:func:`capillary_rate_per_s`); the lattice's vessels carry cells. The brain's vessel stays
    open: its wall is the BBB layer.
    """
    return (lattice.labels == BLOOD) & ~brain_vessel(lattice)


def capillary_rate_per_s(permeability_um_s: list[float], surface_per_cm: float) -> list[float]:
    """Each cytokine's exchange rate between tissue and serum, ``P S/V`` [1/s]: wall permeability times capillary area per volume."""
    return [p * 1e-4 * surface_per_cm for p in permeability_um_s]  # um/s -> cm/s, times cm^2/cm^3


def dilate6(mask: np.ndarray) -> np.ndarray:
    """One step of binary dilation of a 3D mask by its 6 face neighbours (nothing enters from outside).

    What ``scipy.ndimage.binary_dilation(mask)`` computes with its default cross; here so that
    building a model does not import ``scipy.ndimage`` (0.4 s, most of it parsing docstrings).
    """
    out = mask.copy()
    for axis in range(mask.ndim):
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out


class Conductance:
    """The field solver's face conductance per cytokine: 1 off the BBB, 0 across the brain separator and in the
    closed blood (the capillary bed, not diffusion, joins tissue and serum), and on the BBB
    ``p + (1 - p)(1 - integrity)^h`` (``p`` the intact permeability per cytokine).

    ``h`` is the same power that gates cells crossing (``endothelium.crossing_hill``): tight
    junctions open little while integrity is high and much once it has fallen.
    """

    def __init__(self, xp: Any, lattice: Lattice, permeability: list[float], crossing_hill: float, bbb_voxels: Any):
        self.xp = xp
        self.k = len(permeability)
        self.permeability = xp.asarray(permeability, dtype=xp.float32)[:, None]
        self.crossing_hill = crossing_hill
        self.bbb_voxels = bbb_voxels
        self.values = xp.ones((self.k,) + lattice.shape, dtype=xp.float32)
        self.values[:, xp.asarray(brain_separator(lattice) | closed_blood(lattice))] = 0.0

    def refresh(self, solver: Any, integrity: Any, check: bool = True) -> None:
        """Recompute the BBB faces from ``integrity`` and hand the conductance to ``solver``.

        ``check=False`` (every step) skips the solver's range check, a host read on a GPU: the
        values lie in 0..1 by construction (``1 - integrity`` is clipped to 0..1, ``p`` in 0..1).
        """
        xp = self.xp
        flat = self.values.reshape(self.k, -1)
        breach = xp.clip(1.0 - integrity.reshape(-1)[self.bbb_voxels], 0.0, 1.0) ** self.crossing_hill
        p = self.permeability
        flat[:, self.bbb_voxels] = p + (1.0 - p) * breach[None, :]
        solver.set_conductance(self.values, check=check)


def any_hill(levels: Mapping[str, Any], half_max: Mapping[str, float], power: float) -> Any:
    """OR of Hill responses to the named signals."""
    return rules.any_of(*[rules.hill(levels[name], h, power) for name, h in half_max.items()])


def ang2_ang1(baseline: float, activation: Any, p: Endothelium) -> Any:
    """Ang-2/Ang-1 ratio: the patient's baseline raised by Weibel-Palade Ang-2 release with activation."""
    return baseline * (1.0 + p.ang2_release_fold * activation)


def tie2_unprotected(ratio: Any) -> Any:
    """Share of Tie2 receptors held by Ang-2 rather than Ang-1 (equal affinities): ``R / (1 + R)``."""
    return ratio / (1.0 + ratio)


def step_systemic(state: Vascular, serum: Mapping[str, float], baseline: float, p: Endothelium, dt_h: float) -> None:
    """Advance the systemic activation, capillary leak and vasodilation by one step from serum levels (free fractions)."""
    injury = float(any_hill(serum, p.activation_half_max_pg_ml.as_dict(), p.activation_hill))
    state.activation = float(rules.relax(state.activation, p.activation_per_h * injury, p.resolution_per_h, dt_h))
    unprotected = float(tie2_unprotected(ang2_ang1(baseline, state.activation, p)))
    state.leak = float(rules.relax(state.leak, p.leak_per_h * injury * unprotected, p.leak_recovery_per_h, dt_h))
    inos = float(any_hill(serum, p.vasodilation_half_max_pg_ml.as_dict(), p.activation_hill))
    state.vasodilation = float(rules.relax(state.vasodilation, p.vasodilation_per_h * inos, p.vasodilation_recovery_per_h, dt_h))


def update(model: CrsModel, serum_pg_ml: Any = None) -> None:
    """Advance the endothelium by one step (BBB voxels and systemic); refresh the solver's conductance.

    ``serum_pg_ml``: the serum per cytokine (host), when the caller has it; else read once.
    """
    p = model.config.endothelium
    xp = model.xp
    baseline = model.config.patient.ang2_ang1_baseline
    free = model.effects.signal_free_fraction_scalar("blood")
    levels = model.serum if serum_pg_ml is None else serum_pg_ml
    serum = {name: float(levels[i]) * free[name] for name, i in model.index.items()}
    state = model.vascular
    if model.n_bbb:
        bbb = model.bbb_voxels
        half_max = p.activation_half_max_pg_ml.as_dict()
        local = {name: xp.maximum(model.fields_flat[model.index[name], bbb] * free[name], serum[name]) for name in half_max}
        injury = any_hill(local, half_max, p.activation_hill)
        state.bbb_activation = rules.relax(state.bbb_activation, p.activation_per_h * injury, p.resolution_per_h, model.dt_h).astype(xp.float32)
        unprotected = tie2_unprotected(ang2_ang1(baseline, state.bbb_activation, p))
        integrity = model.integrity.reshape(-1)
        integrity[bbb] = rules.relax(integrity[bbb], p.recovery_per_h, p.damage_per_h * injury * unprotected, model.dt_h).astype(xp.float32)
        model.integrity_changed()
        model.conductance.refresh(model.solver, model.integrity, check=False)
    step_systemic(state, serum, baseline, p, model.dt_h)
