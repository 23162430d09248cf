"""The CRS/ICANS model: builds the world from the catalog and runs one step as DESIGN.md's
explicit list of layers (:data:`STEP`, run by :meth:`CrsModel.step`).

Representative-volume scaling: the lattice's tumour stands for the patient's tumour, so
``scale = cells.bcell.initial_count / patient.tumor_burden_cells`` (the cell types declared ``tumour``); the systemic blood
pool (cells and cytokines) holds ``patient.blood_volume_ml * scale`` mL, an infused dose D
puts ``D * scale`` CAR-T cells into it, and the monocyte pool starts at
``monocytes_per_ul * blood volume * scale``. Concentrations (pg/mL) need no scaling.

Host reads: the rules work on masks over all live agents (``store.n`` of them, a host
number) and combine outcomes with ``xp.where``; counts (kills, lysed cells) are device
tallies and deaths a device mask, so on a GPU a step queues device work without waiting
for it. Biology reads device data on the host only through ``backend.to_host`` (counted
by reason, see :data:`HOST_READS`): once per step for the time-series row (``readouts``,
one packed array), and for snapshots (``snapshot``). The engine reads what it documents:
population changes (division, deaths, circulation) and the serum of the blood pool
(:attr:`CrsModel.serum`, once per step: the pool changes only in the field layer, and the
engine keeps the host copy until it does). tests/biology/test_host_reads.py checks all of this on the CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from carabm.biology import acute_phase, astrocyte, endothelium, readouts, rules
from carabm.biology.cytokines import Secretion, baselines, field_index, transport
from carabm.biology.therapies import Effects, TherapyState
from carabm.engine import rng_compiled
from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.backend import Backend
from carabm.engine.blood_pool import BloodPool
from carabm.engine.circulation import BloodCirculation
from carabm.engine.fields import FieldSolver
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice
from carabm.engine.movement import Movement, mean_hop_um
from carabm.engine.neighbourhood import Neighbourhood
from carabm.engine.rng import stochastic_round
from carabm.errors import CheckpointError, ConfigError
from carabm.io.catalog import CATALOG
from carabm.io.config import Config, initial_agents, tumour_agents

#: blood in a vessel segment of the lattice is replaced within about a second (flow of
#: ~1 mm/s through a few hundred um), so lattice blood stays close to serum; assumed
BLOOD_EXCHANGE_PER_S = 1.0
#: on a GPU the agents are re-sorted by voxel this often (scattered reads of the grids by
#: neighbouring threads then share cache lines; results do not depend on the order)
SORT_EVERY_STEPS = 20
#: the documented host reads of the biology, by reason: per step and per snapshot
HOST_READS = {"readouts": "the time-series row: counts, CNS means, BBB integrity, tallies (one packed array per step)",
              "bbb_integrity": "mean BBB integrity at a step's start, only when the last readouts did not leave it "
                               "(integrity assigned anew, e.g. by a checkpoint restore)",
              "snapshot": "fields, integrity and agents of a snapshot"}  # fmt: skip


#: neighbours an agent may hop to (faces of its voxel)
MOVE_CONNECTIVITY = 6


def walk_speed_limit_um_min(config: Config) -> float:
    """The fastest the lattice walk moves an agent [µm/min]: one hop per step, ``hop / dt``.

    A walker hops at most once per step (``p = min(1, v dt / hop)``; docs/agents.md), so on a
    given lattice and step a ``speed_um_min`` above this changes nothing.
    """
    return mean_hop_um(MOVE_CONNECTIVITY, config.lattice.voxel_um) / config.run.dt_min


def capped_speeds(config: Config) -> list[str]:
    """One line per cell type whose speed is above :func:`walk_speed_limit_um_min`, at which it moves instead."""
    hop = mean_hop_um(MOVE_CONNECTIVITY, config.lattice.voxel_um)
    top = walk_speed_limit_um_min(config)
    return [f"cells.{spec.name}.speed_um_min={spec.speed_um_min:g} is above one voxel per step ({hop:g} µm / "
            f"{config.run.dt_min:g} min = {top:.2g} µm/min): {spec.name} agents move at {top:.2g} µm/min on this lattice; "
            f"a shorter run.dt_min (at most {hop / spec.speed_um_min:.2g} min) resolves the full speed"
            for spec in kind_specs(config) if spec.speed_um_min > top]  # fmt: skip


def kind_specs(config: Config) -> list[KindSpec]:
    """The agent kinds this model registers with the engine, in catalog (``type`` code) order."""
    index = field_index()
    return [cell.spec(getattr(config.cells, name), index) for name, cell in CATALOG.cell_types.items()]


def _phase(name: str) -> Callable[[CrsModel], None]:
    """A step entry that runs the catalog's layers of one phase (cell types in catalog order, then extra layers)."""

    def run(model: CrsModel) -> None:
        for layer in CATALOG.phase_layers(name):
            layer(model)

    run.__name__ = f"phase:{name}"
    return run


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
        self.index = field_index()
        self.effects = Effects()
        self.therapy = TherapyState(config)
        self.last_readouts: dict[str, float] = {}
        self.row: dict[str, Any] = {}
        self.counters: Counter[str] = Counter()
        self._dies: Any = None  # bool [n]: agents to remove at the end of the decide layer
        self.tally_names = tuple(name for cell in CATALOG.cell_types.values() for name in cell.tallies)
        self.tallies = xp.zeros(len(self.tally_names), dtype=xp.int64)  # this step's tallies, on the device
        self._per_step: dict[str, Any] = {}
        self._integrity = None
        self._integrity_mean: float | None = None  # host copy of mean_bbb_integrity(), None: not known
        #: stateful parts the biology adds at set-up (name -> object with checkpoint_state/restore_checkpoint_state)
        self.parts: dict[str, Any] = {}

        patient = config.patient
        self.scale = max(tumour_agents(config.cells), 1) / patient.tumor_burden_cells  # the lattice's share of the patient's tumour
        self.labels = xp.asarray(lattice.labels.ravel())
        self.store = AgentStore(kind_specs(config), lattice.shape, backend, capacity=4096)
        self.neighbourhood = Neighbourhood(self.store, self.seed)
        seam = None if config.lattice.layout.cells_cross_brain_seam else endothelium.brain_separator(lattice)
        self.movement = Movement(self.store, lattice, config.run.dt_min, self.seed, connectivity=MOVE_CONNECTIVITY,
                                 bbb_hill=config.endothelium.crossing_hill, wall_closed=seam)  # fmt: skip
        self.circulation = BloodCirculation(self.store, lattice, config.run.dt_min, self.seed, self.scale, patient.blood_volume_ml)

        diffusion, decay, clearance, bbb_permeability, wall_permeability = transport(config)
        self.solver = FieldSolver(lattice.shape, lattice.voxel_um, diffusion, decay, backend)
        healthy = baselines(config)  # the serum starts at rest; basal production off the lattice keeps it there
        self.blood = BloodPool(self.solver, lattice.labels == BLOOD, patient.blood_volume_ml, self.scale,
                               [np.log(2.0) / c for c in clearance], exchange_per_s=BLOOD_EXCHANGE_PER_S, serum_pg_ml=healthy,
                               capillary_mask=lattice.labels == TISSUE,
                               capillary_rate_per_s=endothelium.capillary_rate_per_s(wall_permeability, config.endothelium.vessel_surface_per_cm),
                               blood_weight=endothelium.brain_blood_weight(lattice, self.scale, patient.brain_volume_ml * patient.brain_extracellular_fraction))  # fmt: skip
        self.blood.set_systemic_source("basal", self.blood.balancing_production(healthy))
        self.fields = self.solver.zeros()
        self.integrity = xp.ones(lattice.shape, dtype=xp.float32)
        self._integrity_mean = 1.0  # the mean of all ones, known without reading it
        self.bbb_voxels = xp.asarray(lattice.flat_indices(BBB))
        self.cns_voxels = xp.asarray(lattice.flat_indices(CNS))
        self.n_bbb = lattice.count(BBB)
        self.n_cns = lattice.count(CNS)
        self.vascular = endothelium.Vascular(xp, self.n_bbb)
        self.astrocytes = astrocyte.Astrocytes(xp, self.n_cns)
        self.conductance = endothelium.Conductance(xp, lattice, bbb_permeability, config.endothelium.crossing_hill, self.bbb_voxels)
        self.refresh_conductance()
        scale_of_secretion = [getattr(config.cytokines, name).secretion_scale for name in CATALOG.cytokines]
        self.secretion = Secretion(xp, lattice.n_voxels, lattice.voxel_volume_ml, scale_of_secretion)
        self._place_initial_cells()

    # ------------------------------------------------------------------ set-up
    def _place_initial_cells(self) -> None:
        """The t = 0 agents of each placed cell type (:func:`initial_agents`) in free voxels of its home; then each type's set-up."""
        xp = self.xp
        for name, cell in CATALOG.cell_types.items():
            count = initial_agents(self.config.cells, name) if cell.placed else 0
            free = self.lattice.flat_indices(cell.home)
            free = xp.asarray(free)[self.store.occupancy.ravel()[xp.asarray(free)] < 0]
            if count > int(free.size):
                raise ConfigError(
                    f"cells.{name}: {count} cells at t = 0 do not fit in the {int(free.size)} free "
                    f"{cell.home} voxels of this lattice; lower the count or enlarge lattice.shape"
                )
            self.store.place_random(name, count, free, self.seed, 0, purpose=f"place:{name}")
        for cell in CATALOG.cell_types.values():
            if cell.setup is not None:
                cell.setup(self)
        acute_phase.setup(self)

    # ------------------------------------------------------------------ what the cell rules use
    @property
    def fields_flat(self) -> Any:
        """Fields as ``[K, n_voxels]`` (a view)."""
        return self.fields.reshape(len(self.index), -1)

    @property
    def serum(self) -> np.ndarray:
        """Serum (systemic pool) concentrations [pg/mL] per cytokine, host (a read by the engine's blood pool)."""
        return self.blood.serum_pg_ml

    @property
    def integrity(self) -> Any:
        """BBB integrity per voxel ``float32 [nz, ny, nx]`` (1 = intact); assigning it forgets the cached mean."""
        return self._integrity

    @integrity.setter
    def integrity(self, value: Any) -> None:
        self._integrity = value
        self._integrity_mean = None

    def mask_of(self, name: str) -> Any:
        """Bool ``[n]``: the live agents of one kind."""
        return self.store.kind == self.store.kind_id(name)

    def slots_of(self, cells: Any) -> Any:
        """Slots ``int [m]`` of the agents where ``cells`` (bool ``[n]``) is set, on the host; ``None`` on a GPU.

        A rule for a few agents of one kind costs less on those few than on all ``n`` masked,
        and elementwise rules give the same numbers either way. On a GPU the masked form stays:
        the slots' count would be a host read.
        """
        return np.flatnonzero(cells) if self.xp is np else None

    def voxels(self) -> Any:
        """Flat voxel index of every agent ``[n]`` (cached while agents keep their voxels)."""
        return self.neighbourhood.voxels()

    def compartments(self) -> Any:
        """Compartment label of every agent's voxel ``[n]``."""
        return self.labels[self.voxels()]

    def _agents_moved(self) -> None:
        """Forget what depends on where the agents are (their voxels, the neighbourhood)."""
        self.neighbourhood.forget()

    def uniform_all(self, purpose: str) -> Any:
        """One uniform number per agent for this step and purpose ``float32 [n]`` (keyed by agent id).

        Keyed by id, so an agent gets the same number whichever other agents are drawn with it.
        """
        return rng_compiled.uniform(self.xp, self.seed, self.step_index, self.store.id, purpose)

    def uniform_scalar(self, purpose: str) -> float:
        """One uniform number for this step and purpose (not tied to an agent; host)."""
        return float(rng_compiled.uniform(np, self.seed, self.step_index, np.zeros(1, np.int64), purpose)[0])

    def random_neighbour_of_kind(self, kind: str, purpose: str, agents: Any = None) -> tuple[Any, Any]:
        """For every agent, a random neighbour of ``kind`` (slot, -1 if none) and whether it has one, ``[n]``.

        ``agents`` (bool ``[n]``, e.g. ``mask_of`` the searching kind): only these search (faster);
        the others get -1 and False, and the searching ones the same neighbour as without it.
        """
        return self.neighbourhood.random_neighbour(self.mask_of(kind), self.step_index, purpose, agents)

    def has_neighbour(self, kind: str, where: Any = None) -> Any:
        """Bool ``[n]``: whether each agent has a neighbour of ``kind`` (among agents where ``where`` [n] is true)."""
        flag = self.mask_of(kind) if where is None else self.mask_of(kind) & where
        return self.neighbourhood.has_neighbour(flag)

    def neighbour_sum(self, weights: Any) -> Any:
        """Float ``[n]``: per agent, the sum of ``weights`` (float ``[n]``, 0 for agents that do not count) over its 26 neighbours."""
        return self.neighbourhood.neighbour_sum(weights)

    def once_per_step(self, key: str, compute: Callable[[CrsModel], Any]) -> Any:
        """``compute(model)`` at its first use in a step, then the same value until the step ends."""
        if key not in self._per_step:
            self._per_step[key] = compute(self)
        return self._per_step[key]

    def mark_dead(self, dies: Any) -> None:
        """Agents (bool ``[n]``) to remove at the end of the decide layer.

        Masks made before a division in the layer are shorter than later ones; daughters are
        never dead, so the shorter of the two is extended with False.
        """
        xp = self.xp
        if self._dies is None:
            self._dies = xp.zeros(self.store.n, dtype=bool)
        a, b = self._dies, dies
        if a.shape[0] < b.shape[0]:
            a = xp.concatenate([a, xp.zeros(b.shape[0] - a.shape[0], dtype=bool)])
        elif b.shape[0] < a.shape[0]:
            b = xp.concatenate([b, xp.zeros(a.shape[0] - b.shape[0], dtype=bool)])
        self._dies = a | b

    def tally(self, name: str, events: Any) -> None:
        """Add the number of set entries of ``events`` (bool) to this step's device tally ``name`` (a cell type's ``tallies``)."""
        i = self.tally_names.index(name)
        self.tallies[i : i + 1] += events.sum(dtype=self.xp.int64)

    # ------------------------------------------------------------------ state (docs/state.md)
    def checkpoint_state(self) -> dict[str, Any]:
        """The run's dynamic state as plain data (a copy): step, fields, BBB, counters and each part's own state."""
        if self._dies is not None:
            raise CheckpointError("model: deaths pending (state is saved only between steps)")
        b = self.backend
        return {
            "step_index": int(self.step_index),
            "fields": b.to_host(self.fields, "checkpoint").copy(),
            "integrity": b.to_host(self.integrity, "checkpoint").copy(),
            "vascular": self.vascular.checkpoint_state(),
            "astrocytes": self.astrocytes.checkpoint_state(),
            "counters": dict(self.counters),
            "last_readouts": dict(self.last_readouts),  # what the next step's triggers see
            "store": self.store.checkpoint_state(),
            "blood": self.blood.checkpoint_state(),
            "circulation": self.circulation.checkpoint_state(),
            "effects": self.effects.checkpoint_state(),
            "therapy": self.therapy.checkpoint_state(),
            "parts": {name: part.checkpoint_state() for name, part in self.parts.items()},
        }

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint_state` in this freshly built model (same lattice; the config may be a branch's)."""
        xp = self.xp
        fields = np.asarray(state["fields"])
        if fields.shape != tuple(self.fields.shape):
            raise CheckpointError(f"saved fields have shape {list(fields.shape)} but this run's are {list(self.fields.shape)}; "
                                  "lattice.shape and the cytokine list cannot change when resuming or branching")  # fmt: skip
        self.step_index = int(state["step_index"])
        self.fields = xp.array(fields, dtype=self.fields.dtype, order="C")  # copies: the state stays the caller's
        self.integrity = xp.array(state["integrity"], dtype=self.integrity.dtype, order="C")
        for part in ("vascular", "astrocytes"):
            if part not in state:
                raise CheckpointError(f"the checkpoint has no {part} state (written by an older carabm); start the run anew")
            getattr(self, part).restore_checkpoint_state(state[part])
        self.counters = Counter(state["counters"])
        self.last_readouts = dict(state["last_readouts"])
        self.store.restore_checkpoint_state(state["store"])
        self.blood.restore_checkpoint_state(state["blood"])
        self.circulation.restore_checkpoint_state(state["circulation"])
        self.effects.restore_checkpoint_state(state["effects"])
        self.therapy.restore_checkpoint_state(state["therapy"])
        saved_parts = state.get("parts", {})
        for name, part in self.parts.items():
            if name not in saved_parts:
                raise CheckpointError(f"the checkpoint has no state of {name!r} (written by an older carabm); start the run again with --overwrite")
            part.restore_checkpoint_state(saved_parts[name])
        self._dies = None
        self._agents_moved()
        self.refresh_conductance()

    def refresh_conductance(self, check: bool = True) -> None:
        """Hand the solver the face conductance of the current BBB integrity (see :class:`endothelium.Conductance`)."""
        self.conductance.refresh(self.solver, self.integrity, check=check)

    def integrity_mean_device(self) -> Any:
        """Mean integrity over BBB voxels as a 0-d device array (float32)."""
        return self.integrity.reshape(-1)[self.bbb_voxels].mean()

    def mean_bbb_integrity(self) -> float:
        """Mean integrity over BBB voxels (1 = intact), host.

        The readouts leave it (integrity changes only in the endothelium layer, before them),
        so a step's start reads nothing; otherwise one ``bbb_integrity`` host read.
        """
        if self.n_bbb == 0:
            return 1.0
        if self._integrity_mean is None:
            self._integrity_mean = float(self.backend.to_host(self.integrity_mean_device(), "bbb_integrity"))
        return self._integrity_mean

    def integrity_known(self, mean: float) -> None:
        """The readouts computed the mean integrity: keep it (the next step's start then reads nothing)."""
        if self.n_bbb:
            self._integrity_mean = mean

    def integrity_changed(self) -> None:
        """Forget the cached mean integrity (call after changing ``integrity`` in place)."""
        self._integrity_mean = None

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """One step: the layers of :data:`STEP`, in order."""
        for layer in STEP:
            layer(self)

    def begin_step(self) -> None:
        """Layer 0: therapies due now (schedule, or a trigger on the last readouts), their effects; a fresh step."""
        self.therapy.administer(self.step_index * self.dt_h, self.last_readouts, self.dt_h)
        self.effects.update(self.therapy.plasma, self.mean_bbb_integrity())
        self.step_index += 1
        self.secretion.clear()
        self._dies = None
        self._per_step.clear()
        if self.store.launcher is not None and self.step_index % SORT_EVERY_STEPS == 0:
            self.store.sort_by_voxel()  # GPU: neighbours in space become neighbours in memory
        self._agents_moved()

    def deplete(self) -> None:
        """Depletion therapies remove monocytes/macrophages on the lattice and in the blood pool."""
        for name, rate in self.effects.depletion_per_h.items():
            if rate <= 0.0:
                continue
            p = rules.probability(rate, self.dt_h)
            self.mark_dead(self.mask_of(name) & (self.uniform_all(f"deplete:{name}") < p))
            k = self.store.kind_id(name)
            if self.circulation.circulating[k]:
                expected = self.circulation.pool[k] * p
                u = rng_compiled.uniform(np, self.seed, self.step_index, np.arange(expected.size), f"deplete_pool:{name}")
                self.circulation.pool[k] = np.maximum(self.circulation.pool[k] - stochastic_round(expected, u), 0)

    def flush_deaths(self) -> None:
        """End of the decide layer: remove the agents marked dead, all at once."""
        if self._dies is not None:
            dies = self._dies
            if dies.shape[0] < self.store.n:
                dies = self.xp.concatenate([dies, self.xp.zeros(self.store.n - dies.shape[0], dtype=bool)])
            self.store.remove(dies)  # the engine reads how many die (a documented population change)
            self._dies = None
        self._agents_moved()

    def move(self) -> None:
        """Random walk / chemotaxis, the vessel wall and the BBB, exchange with the systemic pool."""
        self.movement.step(self.step_index, self.fields, self.integrity)
        self._agents_moved()
        self.movement.transmigrate(self.step_index, extravasation_scale=self._extravasation_scale())
        self.circulation.exchange(self.step_index)
        self._agents_moved()

    def _extravasation_scale(self) -> Any:
        """Per-agent multiplier on leaving the blood: the product of the cell types' own (None when none declares one)."""
        scales = [cell.extravasation_scale(self) for cell in CATALOG.cell_types.values() if cell.extravasation_scale]
        if not scales:
            return None
        scale = scales[0]
        for other in scales[1:]:
            scale = scale * other
        return scale

    def transport_fields(self) -> None:
        """Blood-pool exchange, sources, uptake, decay and diffusion of every cytokine field."""
        k, shape = len(self.index), self.lattice.shape
        self.fields = self.blood.step(self.fields, self.dt_s, self.secretion.sources.reshape((k,) + shape),
                                      self.secretion.uptake.reshape((k,) + shape))  # fmt: skip

    def endothelium(self) -> None:
        """BBB integrity, conductance and systemic leak from this step's serum; then drug PK."""
        endothelium.update(self, self.serum)
        self.therapy.advance_pk(self.dt_h)

    def acute_phase(self) -> None:
        """Acute-phase proteins (CRP, ferritin) from this step's serum and the last readouts."""
        acute_phase.advance(self)

    def record(self) -> None:
        """The readouts: the time-series row (also what the next step's triggers see)."""
        self.row = self.readouts(self.serum)

    def readouts(self, serum: np.ndarray | None = None) -> dict[str, Any]:
        """The time-series row of this step (see :mod:`carabm.biology.readouts`); ``serum``: when just read."""
        row = readouts.row(self, self.serum if serum is None else serum)
        self.last_readouts = {key.replace("/", "."): float(value) for key, value in row.items()}
        return row

    def agents_snapshot(self) -> dict[str, np.ndarray]:
        """Agents as host arrays for a snapshot."""
        s, b = self.store, self.backend
        out = {"id": b.to_host(s.id, "snapshot"), "position": b.to_host(s.position, "snapshot").astype(np.int32),
               "type": b.to_host(s.kind, "snapshot"), "state": b.to_host(s.state, "snapshot")}  # fmt: skip
        for name in s.variables:
            out[name] = b.to_host(s[name], "snapshot")
        return out


#: One step, in order (DESIGN.md): each entry is a function of the model. The ``phase:*``
#: entries run the catalog's layers of that phase: each cell type's in catalog order, then
#: plug-ins' extra layers.
STEP: tuple[Callable[[CrsModel], None], ...] = (
    CrsModel.begin_step,  # 0. therapies due, their effects
    CrsModel.deplete,  # 1-2. sense and decide: depletion therapies,
    _phase("grow"),  # tumour growth into free space,
    _phase("decide"),  # activation, killing, division, death of each cell type,
    CrsModel.flush_deaths,  # deaths applied together,
    _phase("blood_pool"),  # the systemic pools (deaths, marrow output)
    CrsModel.move,  # 3. move: random walk / chemotaxis, vessel wall, BBB, circulation
    _phase("secrete"),  # 4. secrete / uptake
    CrsModel.transport_fields,  # 5. fields: blood-pool exchange, sources, uptake, decay, diffusion
    CrsModel.endothelium,  # 6. endothelium / BBB, therapy PK
    CrsModel.acute_phase,  # 6b. acute-phase proteins: CRP (IL-6), ferritin (macrophage activation)
    CrsModel.record,  # 7. readouts (also what the next step's triggers see)
)
