"""The CRS/ICANS model: registers the cell kinds with the engine, builds the world, and runs
one step as DESIGN.md's explicit list of layers (see :meth:`CrsModel.step`).

Representative-volume scaling: the lattice's tumour stands for the patient's tumour, so
``scale = cells.bcell.initial_count / patient.tumor_burden_cells``; the systemic blood
pool (cells and cytokines) holds ``patient.blood_volume_ml * scale`` mL, an infused dose D
puts ``D * scale`` CAR-T cells into it, and the monocyte pool starts at
``monocytes_per_ul * blood volume * scale``. Concentrations (pg/mL) need no scaling.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from carabm.biology import bcell, cart, clinical, endothelium, macrophage, monocyte, myeloid, rules
from carabm.biology.cytokines import INDEX, Secretion, transport
from carabm.biology.therapies import Effects, TherapyState
from carabm.engine import rng_cpu
from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.backend import Backend
from carabm.engine.blood_pool import BloodPool
from carabm.engine.circulation import BloodCirculation
from carabm.engine.fields import FieldSolver
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice
from carabm.engine.movement import Movement
from carabm.errors import ConfigError
from carabm.io.config import CELL_TYPES, CYTOKINES, Config

#: where each cell type is placed at t = 0
HOME = {"cart": "blood", "bcell": "tissue", "macrophage": "tissue", "monocyte": "tissue", "microglia": "cns"}
#: blood in a vessel segment of the lattice is replaced within about a second (flow of
#: ~1 mm/s through a few hundred um), so lattice blood stays close to serum; assumed
BLOOD_EXCHANGE_PER_S = 1.0
#: T cells leave tissue through lymph slowly (assumed 2 %/h)
CART_INTRAVASATION_PER_H = 0.02


def brain_separator(lattice: Lattice, reach: int = 4) -> np.ndarray:
    """Tissue voxels touching the brain's vessel: given zero conductance for cytokines.

    In the body the tumour site and the brain are far apart; on the lattice they share the
    brain vessel. Without this seam, cytokines made in the tumour would diffuse through the
    thin vessel straight to the BBB within one implicit step (blood is well mixed with the
    systemic pool only between steps). Blood within ``reach`` voxels of the BBB counts as
    the brain vessel. Cells still cross; only diffusion is cut.
    """
    from scipy import ndimage  # noqa: PLC0415

    near_bbb = ndimage.binary_dilation(lattice.labels == BBB, iterations=reach)
    brain_blood = near_bbb & (lattice.labels == BLOOD)
    return ndimage.binary_dilation(brain_blood) & (lattice.labels == TISSUE)


def kind_specs(config: Config) -> list[KindSpec]:
    """The agent kinds this model registers with the engine, in ``CELL_TYPES`` order."""
    c = config.cells
    variables = {**cart.VARIABLES, **myeloid.VARIABLES}
    specs = {
        "cart": KindSpec("cart", c.cart.speed_um_min, ("tissue", "blood", "cns"), extravasation_per_h=c.cart.homing_per_h,
                         intravasation_per_h=CART_INTRAVASATION_PER_H, bbb_crossing=True, variables=variables),
        "bcell": KindSpec("bcell", c.bcell.speed_um_min, ("tissue",), circulates=False),
        "macrophage": KindSpec("macrophage", c.macrophage.speed_um_min, ("tissue", "cns"), circulates=False),
        "monocyte": KindSpec("monocyte", c.monocyte.speed_um_min, ("tissue", "blood", "cns"), chemotaxis_field=INDEX["MCP1"],
                             chemotaxis_sensitivity=c.monocyte.chemotaxis_sensitivity,
                             extravasation_per_h=c.monocyte.recruitment_per_h, bbb_crossing=True),
        "microglia": KindSpec("microglia", c.microglia.speed_um_min, ("cns",), circulates=False),
    }  # fmt: skip
    return [specs[name] for name in CELL_TYPES]


class CrsModel:
    """World state and step of the CAR-T toxicity model."""

    def __init__(self, config: Config, lattice: Lattice, backend: Backend):
        self.config = config
        self.lattice = lattice
        self.backend = backend
        self.xp = xp = backend.xp
        self.seed = int(config.run.seed)
        self.dt_h = config.run.dt_min / 60.0
        self.dt_s = config.run.dt_min * 60.0
        self.step_index = 0
        self.index = dict(INDEX)
        self.effects = Effects()
        self.therapy = TherapyState(config)
        self.last_readouts: dict[str, float] = {}
        self.row: dict[str, Any] = {}
        self.counters: Counter[str] = Counter()
        self.leak = 0.0
        self._dead_ids: list[Any] = []
        self._neighbours: Any = None

        patient = config.patient
        self.scale = max(config.cells.bcell.initial_count, 1) / patient.tumor_burden_cells
        self.labels = xp.asarray(lattice.labels.ravel())
        self.store = AgentStore(kind_specs(config), lattice.shape, backend, capacity=4096)
        self.movement = Movement(self.store, lattice, config.run.dt_min, self.seed, connectivity=6,
                                 bbb_hill=config.endothelium.crossing_hill)  # fmt: skip
        self.circulation = BloodCirculation(self.store, lattice, config.run.dt_min, self.seed, self.scale, patient.blood_volume_ml)

        diffusion, decay, clearance, self.bbb_permeability = transport(config)
        self.solver = FieldSolver(lattice.shape, lattice.voxel_um, diffusion, decay, backend)
        self.blood = BloodPool(self.solver, lattice.labels == BLOOD, patient.blood_volume_ml, self.scale,
                               [np.log(2.0) / c for c in clearance], exchange_per_s=BLOOD_EXCHANGE_PER_S)  # fmt: skip
        self.fields = self.solver.zeros()
        self.integrity = xp.ones(lattice.shape, dtype=xp.float32)
        self.bbb_voxels = xp.asarray(lattice.flat_indices(BBB))
        self.cns_voxels = xp.asarray(lattice.flat_indices(CNS))
        self._conductance = xp.ones((len(CYTOKINES),) + lattice.shape, dtype=xp.float32)
        self._conductance[:, xp.asarray(brain_separator(lattice))] = 0.0
        self.refresh_conductance()
        scale_of_secretion = [getattr(config.cytokines, name).secretion_scale for name in CYTOKINES]
        self.secretion = Secretion(xp, lattice.n_voxels, lattice.voxel_volume_ml, scale_of_secretion)
        self.baseline_monocytes = patient.monocytes_per_ul * patient.blood_volume_ml * 1000.0 * self.scale
        self._place_initial_cells()

    # ------------------------------------------------------------------ set-up
    def _place_initial_cells(self) -> None:
        xp = self.xp
        for name in CELL_TYPES:
            count = 0 if name == "cart" else getattr(self.config.cells, name).initial_count
            free = self.lattice.flat_indices(HOME[name])
            free = xp.asarray(free)[self.store.occupancy.ravel()[xp.asarray(free)] < 0]
            if count > int(free.size):
                raise ConfigError(
                    f"cells.{name}.initial_count: {count} cells do not fit in the {int(free.size)} free "
                    f"{HOME[name]} voxels of this lattice; lower the count or enlarge lattice.shape"
                )
            self.store.place_random(name, count, free, self.seed, 0, purpose=f"place:{name}")
        self.circulation.infuse("cart", self.config.cells.cart.dose, cart.RESTING, step=0)
        pool_monocytes = int(round(self.baseline_monocytes))
        self.circulation.pool[self.store.kind_id("monocyte"), myeloid.RESTING] += pool_monocytes

    # ------------------------------------------------------------------ helpers for cell rules
    @property
    def fields_flat(self) -> Any:
        """Fields as ``[K, n_voxels]`` (a view)."""
        return self.fields.reshape(len(CYTOKINES), -1)

    @property
    def serum(self) -> np.ndarray:
        """Serum (systemic pool) concentrations [pg/mL] per cytokine, host."""
        return self.blood.serum_pg_ml

    def slots_of(self, name: str) -> Any:
        """Slots of the live agents of one kind."""
        return self.xp.nonzero(self.store.kind == self.store.kind_id(name))[0]

    def voxel_of(self, slots: Any) -> Any:
        """Flat voxel index of agents."""
        return self.store.flat_index(self.store.position[slots])

    def compartment_of(self, slots: Any) -> Any:
        """Compartment label of agents' voxels."""
        return self.labels[self.voxel_of(slots)]

    def uniform(self, slots: Any, purpose: str) -> Any:
        """One uniform number per agent for this step and purpose (keyed by agent id)."""
        word = rng_cpu.random_bits(self.xp, self.seed, self.step_index, self.store.id[slots], purpose)[0]
        return rng_cpu.to_unit(word, self.xp)

    def uniform_scalar(self, purpose: str) -> float:
        """One uniform number for this step and purpose (not tied to an agent)."""
        word = rng_cpu.random_bits(np, self.seed, self.step_index, np.zeros(1, np.int64), purpose)[0]
        return float(rng_cpu.to_unit(word, np)[0])

    def neighbours(self) -> Any:
        """Slots in the 26-neighbourhood of every agent ``[n, 26]`` (-1: none), cached per step."""
        if self._neighbours is None or self._neighbours.shape[0] > self.store.n:
            self._neighbours = self.store.neighbour_slots(26)
        return self._neighbours

    def random_neighbour_of_kind(self, cells: Any, kind: str, purpose: str) -> tuple[Any, Any]:
        """For each cell, a random neighbour of ``kind`` (slot, -1 if none) and whether it has one."""
        xp = self.xp
        nb = self.neighbours()[cells]
        is_kind = (nb >= 0) & (self.store.kind[xp.maximum(nb, 0)] == self.store.kind_id(kind))
        count = is_kind.sum(axis=1)
        pick = (self.uniform(cells, purpose) * count).astype(xp.int64)
        rank = xp.cumsum(is_kind, axis=1) - 1
        chosen = is_kind & (rank == pick[:, None])
        column = xp.argmax(chosen, axis=1)
        has = count > 0
        slot = xp.where(has, nb[xp.arange(cells.size), column], -1)
        return slot, has

    def has_neighbour(self, cells: Any, kind: str, where: Any = None) -> Any:
        """Whether each cell has a neighbour of ``kind`` (among agents where ``where`` [n] is true)."""
        xp = self.xp
        nb = self.neighbours()[cells]
        safe = xp.maximum(nb, 0)
        hit = (nb >= 0) & (self.store.kind[safe] == self.store.kind_id(kind))
        if where is not None:
            hit &= where[safe]
        return hit.any(axis=1)

    def mark_dead(self, slots: Any) -> None:
        """Agents to remove at the end of the decide layer."""
        if slots.size:
            self._dead_ids.append(self.store.id[slots].copy())

    def _flush_deaths(self) -> None:
        if self._dead_ids:
            dead = self.xp.concatenate(self._dead_ids)
            self.store.remove(self.xp.isin(self.store.id, dead))
            self._dead_ids = []
        self._neighbours = None

    def refresh_conductance(self) -> None:
        """Face conductance per field: 1 off the BBB; on it ``p + (1 - p)(1 - integrity)^h``.

        ``h`` is the same power that gates cells crossing (``endothelium.crossing_hill``): tight
        junctions open little while integrity is high and much once it has fallen.
        """
        xp = self.xp
        flat = self._conductance.reshape(len(CYTOKINES), -1)
        breach = (1.0 - self.integrity.reshape(-1)[self.bbb_voxels]) ** self.config.endothelium.crossing_hill
        p = xp.asarray(self.bbb_permeability, dtype=xp.float32)[:, None]
        flat[:, self.bbb_voxels] = p + (1.0 - p) * breach[None, :]
        self.solver.set_conductance(self._conductance)

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """One step: the layers of DESIGN.md in order."""
        # 0. therapies due now (schedule, or a trigger on the last readouts) and their effects
        self.therapy.administer(self.step_index * self.dt_h, self.last_readouts, self.dt_h)
        self.effects.update(self.therapy.plasma, self.mean_bbb_integrity())
        self.step_index += 1
        self.secretion.clear()
        # 1-2. sense and decide (rules read fields and contacts; deaths applied together)
        self._deplete()
        bcell.grow(self)
        cart.step(self)
        macrophage.step(self)
        monocyte.step(self)
        self._flush_deaths()
        cart.pool_step(self)
        monocyte.renew_pool(self)
        # 3. move: random walk / chemotaxis, vessel wall, BBB, circulation
        self.movement.step(self.step_index, self.fields, self.integrity)
        self.movement.transmigrate(self.step_index, extravasation_scale=monocyte.recruitment_scale(self))
        self.circulation.exchange(self.step_index)
        self._neighbours = None
        # 4. secrete / uptake
        cart.secrete(self)
        macrophage.secrete(self)
        monocyte.secrete(self)
        # 5. fields: blood-pool exchange, sources, uptake, decay, diffusion
        k = len(CYTOKINES)
        self.fields = self.blood.step(self.fields, self.dt_s, self.secretion.sources.reshape((k,) + self.lattice.shape),
                                      self.secretion.uptake.reshape((k,) + self.lattice.shape))  # fmt: skip
        # 6. endothelium / BBB, therapy PK
        endothelium.update(self)
        self.therapy.advance_pk(self.dt_h)
        # 7. readouts (also what the next step's triggers see)
        self.row = self.readouts()

    def _deplete(self) -> None:
        """Depletion therapies remove monocytes/macrophages on the lattice and in the blood pool."""
        for name, rate in self.effects.depletion_per_h.items():
            if rate <= 0.0:
                continue
            p = rules.probability(rate, self.dt_h)
            cells = self.slots_of(name)
            self.mark_dead(cells[self.uniform(cells, f"deplete:{name}") < p])
            k = self.store.kind_id(name)
            if self.circulation.circulating[k]:
                expected = self.circulation.pool[k] * p
                removed = np.floor(expected + rng_cpu.to_unit(rng_cpu.random_bits(np, self.seed, self.step_index, np.arange(expected.size), f"deplete_pool:{name}")[0], np))
                self.circulation.pool[k] = np.maximum(self.circulation.pool[k] - removed.astype(np.int64), 0)

    def mean_bbb_integrity(self) -> float:
        """Mean integrity over BBB voxels (1 = intact)."""
        return float(self.integrity.reshape(-1)[self.bbb_voxels].mean()) if self.bbb_voxels.size else 1.0

    # ------------------------------------------------------------------ readouts
    def readouts(self) -> dict[str, Any]:
        """The time-series row of this step (host scalars)."""
        xp, store, circ = self.xp, self.store, self.circulation
        row: dict[str, Any] = {"time_h": self.step_index * self.dt_h}
        kinds = self.backend.asnumpy(store.kind)
        lattice_counts = np.bincount(kinds, minlength=len(CELL_TYPES))
        for i, name in enumerate(CELL_TYPES):
            row[f"counts/{name}"] = int(lattice_counts[i] + circ.pool[i].sum())
        serum = self.serum
        free = self.effects.signal_free_fraction_scalar("blood")
        cns = self.backend.asnumpy(self.fields_flat[:, self.cns_voxels].mean(axis=1)) if self.cns_voxels.size else np.zeros(len(CYTOKINES))
        for name, i in INDEX.items():
            row[f"serum/{name}"] = float(serum[i])
            row[f"cns/{name}"] = float(cns[i])
        integrity = self.mean_bbb_integrity()
        row["bbb_integrity"] = integrity
        serum_free = {name: float(serum[i]) * free[name] for name, i in INDEX.items()}
        temperature = clinical.temperature_c(serum_free, self.config.clinical)
        row["temperature_c"] = temperature
        row["vascular_leak"] = self.leak
        row["crs_grade"] = clinical.crs_grade(temperature, self.leak, self.config.clinical, self.effects.fever_masked)
        index = clinical.cns_inflammation({n: float(cns[i]) for n, i in INDEX.items()}, self.config.clinical)
        ice = clinical.ice_score(index, self.config.clinical)
        row["ice_score"] = ice
        row["icans_grade"] = clinical.icans_grade(ice, integrity, self.config.clinical)
        row["tumor_burden"] = int(lattice_counts[CELL_TYPES.index("bcell")])
        row["blood_per_ul/cart"] = circ.blood_count_per_ul("cart")
        row["blood_per_ul/monocyte"] = circ.blood_count_per_ul("monocyte")
        states = self.backend.asnumpy(store.state)
        row["activated/cart"] = int(((kinds == 0) & (states == cart.ACTIVATED)).sum() + circ.pool[0, cart.ACTIVATED])
        for i, name in enumerate(CELL_TYPES[2:], start=2):
            row[f"activated/{name}"] = int(((kinds == i) & (states == myeloid.ACTIVATED)).sum())
        row["cns_infiltrate"] = int(np.isin(kinds, [0, 3]).astype(int)[self.backend.asnumpy(self.compartment_of(xp.arange(store.n))) == CNS].sum())
        for name, pk in self.therapy.plasma.items():
            row[f"drug/{name}"] = pk.conc_ug_ml
        self.last_readouts = {key.replace("/", "."): float(value) for key, value in row.items()}
        return row

    def agents_snapshot(self) -> dict[str, np.ndarray]:
        """Agents as host arrays for a snapshot."""
        s, b = self.store, self.backend
        out = {"id": b.asnumpy(s.id), "position": b.asnumpy(s.position).astype(np.int32), "type": b.asnumpy(s.kind),
               "state": b.asnumpy(s.state)}  # fmt: skip
        for name in s.variables:
            out[name] = b.asnumpy(s[name])
        return out
