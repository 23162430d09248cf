"""The CRS/ICANS model: registers the cell kinds with the engine, builds the world, and runs
one step as DESIGN.md's explicit list of layers (see :meth:`CrsModel.step`).

Representative-volume scaling: the lattice's tumour stands for the patient's tumour, so
``scale = cells.bcell.initial_count / patient.tumor_burden_cells``; the systemic blood
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
from typing import Any

import numpy as np

from carabm.biology import bcell, cart, clinical, endothelium, macrophage, monocyte, myeloid, rules
from carabm.biology.cytokines import INDEX, Secretion, transport
from carabm.biology.therapies import Effects, TherapyState
from carabm.engine import rng_compiled
from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.backend import Backend, on_device
from carabm.engine.blood_pool import BloodPool
from carabm.engine.circulation import UL_PER_ML, BloodCirculation
from carabm.engine.fields import FieldSolver
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice
from carabm.engine.movement import Movement
from carabm.engine.rng import stochastic_round
from carabm.errors import CheckpointError, ConfigError
from carabm.io.config import CELL_TYPES, CYTOKINES, Config
from carabm.io.config import HOME as CONFIG_HOME

#: the state code of an activated agent, per kind (the readouts' ``activated/<kind>``)
ACTIVATED_STATE = {"cart": cart.ACTIVATED, "macrophage": myeloid.ACTIVATED, "monocyte": myeloid.ACTIVATED,
                   "microglia": myeloid.ACTIVATED}  # fmt: skip
#: where each cell type is placed at t = 0
HOME = CONFIG_HOME  # where each cell type is placed (one table, in carabm.io.config)
#: blood in a vessel segment of the lattice is replaced within about a second (flow of
#: ~1 mm/s through a few hundred um), so lattice blood stays close to serum; assumed
BLOOD_EXCHANGE_PER_S = 1.0
#: on a GPU the agents are re-sorted by voxel this often (scattered reads of the grids by
#: neighbouring threads then share cache lines; results do not depend on the order)
SORT_EVERY_STEPS = 20
#: T cells leave tissue through lymph slowly (assumed 2 %/h)
CART_INTRAVASATION_PER_H = 0.02
#: events counted on the device during a step and added to ``CrsModel.counters`` by the readouts
TALLIES = ("cart_kills", "bcell_lysed")
#: the documented host reads of the biology, by reason: per step and per snapshot
HOST_READS = {"readouts": "the time-series row: counts, CNS means, BBB integrity, tallies (one packed array per step)",
              "bbb_integrity": "mean BBB integrity at a step's start, only when the last readouts did not leave it "
                               "(integrity assigned anew, e.g. by a checkpoint restore)",
              "snapshot": "fields, integrity and agents of a snapshot"}  # fmt: skip


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


def _first_beyond(xp: Any, flags: Any, pick: Any) -> Any:
    """Per column of ``flags`` (bool ``[r, m]``), the row of its ``pick``-th True (0-based; ``r`` when fewer)."""
    if not on_device(xp) and flags.shape[0] < 256:  # NumPy's cumsum along axis 0 is slow: r - 1 row adds in uint8
        running = flags.astype(np.uint8)
        for i in range(1, flags.shape[0]):
            np.add(running[i], running[i - 1], out=running[i])
        return (running <= np.minimum(pick, 255).astype(np.uint8)[None, :]).sum(axis=0, dtype=np.uint8).astype(np.int64)
    return (xp.cumsum(flags, axis=0) <= pick[None, :]).sum(axis=0)


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
        self._dies: Any = None  # bool [n]: agents to remove at the end of the decide layer
        self._tally = xp.zeros(len(TALLIES), dtype=xp.int64)  # this step's TALLIES, on the device
        self._neighbours: Any = None
        self._voxels: Any = None
        self._integrity = None
        self._integrity_mean: float | None = None  # host copy of mean_bbb_integrity(), None: not known

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
        self._integrity_mean = 1.0  # the mean of all ones, known without reading it
        self.bbb_voxels = xp.asarray(lattice.flat_indices(BBB))
        self.cns_voxels = xp.asarray(lattice.flat_indices(CNS))
        self.n_bbb = lattice.count(BBB)
        self.n_cns = lattice.count(CNS)
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

    def voxels(self) -> Any:
        """Flat voxel index of every agent ``[n]``.

        Cached while agents keep their voxels: :meth:`step` forgets it where agents move or
        are removed; daughters added meanwhile (division) are appended.
        """
        cached, n = self._voxels, self.store.n
        if cached is None or cached.shape[0] > n:
            cached = self.store.flat_index()
        elif cached.shape[0] < n:
            cached = self.xp.concatenate([cached, self.store.flat_index(self.store.position[cached.shape[0] :])])
        self._voxels = cached
        return cached

    def compartments(self) -> Any:
        """Compartment label of every agent's voxel ``[n]``."""
        return self.labels[self.voxels()]

    def _agents_moved(self) -> None:
        """Forget what depends on where the agents are (their voxels, the neighbourhood)."""
        self._voxels = None
        self._neighbours = None

    def uniform_all(self, purpose: str) -> Any:
        """One uniform number per agent for this step and purpose ``float32 [n]`` (keyed by agent id).

        Keyed by id, so an agent gets the same number whichever other agents are drawn with it.
        """
        word = rng_compiled.random_bits(self.xp, self.seed, self.step_index, self.store.id, purpose)[0]
        return rng_compiled.to_unit(word, self.xp)

    def uniform_scalar(self, purpose: str) -> float:
        """One uniform number for this step and purpose (not tied to an agent; host)."""
        word = rng_compiled.random_bits(np, self.seed, self.step_index, np.zeros(1, np.int64), purpose)[0]
        return float(rng_compiled.to_unit(word, np)[0])

    def neighbours(self) -> Any:
        """``1 + slot`` of the agent in each of the 26 neighbour voxels of every agent, ``int64 [26, m]`` (0: none).

        Neighbour-major (one row per direction), so reductions over the neighbourhood are
        vector operations over agents. Cached per step from the first use in the decide
        layer; agents added after that (daughters) have no column (``m <= n``) and are not
        seen as neighbours until the next step.
        """
        if self._neighbours is None or self._neighbours.shape[1] > self.store.n:
            store, xp = self.store, self.xp
            voxel = store.padded_offsets(26)[:, None] + store.padded_flat()[None, :]
            self._neighbours = xp.take(store.padded_occupancy.ravel(), voxel).astype(xp.int64) + 1
        return self._neighbours

    def neighbour_flags(self, flag: Any) -> Any:
        """``flag`` (bool ``[n]``) of each agent's 26 neighbours, ``[26, m]`` (False where there is none)."""
        xp = self.xp
        return xp.take(xp.concatenate([xp.zeros(1, dtype=bool), flag]), self.neighbours())

    def _pad_rows(self, values: Any, fill: Any) -> Any:
        """Extend a per-agent array of the cached neighbourhood's agents (``m``) to all ``n`` agents with ``fill``."""
        missing = self.store.n - int(values.shape[0])
        if missing <= 0:
            return values
        return self.xp.concatenate([values, self.xp.full(missing, fill, dtype=values.dtype)])

    def random_neighbour_of_kind(self, kind: str, purpose: str) -> tuple[Any, Any]:
        """For every agent, a random neighbour of ``kind`` (slot, -1 if none) and whether it has one, ``[n]``.

        The neighbour is the ``floor(u * count)``-th of its kind in neighbourhood order.
        """
        xp = self.xp
        nb = self.neighbours()
        m = int(nb.shape[1])
        is_kind = self.neighbour_flags(self.mask_of(kind))
        count = is_kind.sum(axis=0, dtype=xp.uint8).astype(xp.int64)
        word = rng_compiled.random_bits(xp, self.seed, self.step_index, self.store.id[:m], purpose)[0]
        pick = (rng_compiled.to_unit(word, xp) * count).astype(xp.int64)  # < count
        direction = xp.minimum(_first_beyond(xp, is_kind, pick), nb.shape[0] - 1)
        has = count > 0
        slot = xp.where(has, xp.take_along_axis(nb, direction[None, :], axis=0)[0] - 1, -1)
        return self._pad_rows(slot, -1), self._pad_rows(has, False)

    def has_neighbour(self, kind: str, where: Any = None) -> Any:
        """Bool ``[n]``: whether each agent has a neighbour of ``kind`` (among agents where ``where`` [n] is true)."""
        flag = self.mask_of(kind) if where is None else self.mask_of(kind) & where
        return self._pad_rows(self.neighbour_flags(flag).any(axis=0), False)

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
        """Add the number of set entries of ``events`` (bool) to this step's device tally ``name`` (see :data:`TALLIES`)."""
        i = TALLIES.index(name)
        self._tally[i : i + 1] += events.sum(dtype=self.xp.int64)

    def _flush_deaths(self) -> None:
        if self._dies is not None:
            dies = self._dies
            if dies.shape[0] < self.store.n:
                dies = self.xp.concatenate([dies, self.xp.zeros(self.store.n - dies.shape[0], dtype=bool)])
            self.store.remove(dies)  # the engine reads how many die (a documented population change)
            self._dies = None
        self._agents_moved()

    # ------------------------------------------------------------------ state (docs/state.md)
    def checkpoint_state(self) -> dict[str, Any]:
        """The run's dynamic state as plain data (a copy): step, fields, BBB, leak, counters and each part's own state."""
        if self._dies is not None:
            raise CheckpointError("model: deaths pending (state is saved only between steps)")
        b = self.backend
        return {
            "step_index": int(self.step_index),
            "fields": b.to_host(self.fields, "checkpoint").copy(),
            "integrity": b.to_host(self.integrity, "checkpoint").copy(),
            "leak": float(self.leak),
            "counters": dict(self.counters),
            "last_readouts": dict(self.last_readouts),  # what the next step's triggers see
            "store": self.store.checkpoint_state(),
            "blood": self.blood.checkpoint_state(),
            "circulation": self.circulation.checkpoint_state(),
            "effects": self.effects.checkpoint_state(),
            "therapy": self.therapy.checkpoint_state(),
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
        self.leak = float(state["leak"])
        self.counters = Counter(state["counters"])
        self.last_readouts = dict(state["last_readouts"])
        self.store.restore_checkpoint_state(state["store"])
        self.blood.restore_checkpoint_state(state["blood"])
        self.circulation.restore_checkpoint_state(state["circulation"])
        self.effects.restore_checkpoint_state(state["effects"])
        self.therapy.restore_checkpoint_state(state["therapy"])
        self._dies = None
        self._agents_moved()
        self.refresh_conductance()

    def refresh_conductance(self, check: bool = True) -> None:
        """Face conductance per field: 1 off the BBB; on it ``p + (1 - p)(1 - integrity)^h``.

        ``h`` is the same power that gates cells crossing (``endothelium.crossing_hill``): tight
        junctions open little while integrity is high and much once it has fallen.
        ``check=False`` (every step) skips the solver's range check, a host read on a GPU: the
        values lie in 0..1 by construction (``1 - integrity`` is clipped to 0..1, ``p`` in 0..1).
        """
        xp = self.xp
        flat = self._conductance.reshape(len(CYTOKINES), -1)
        breach = xp.clip(1.0 - self.integrity.reshape(-1)[self.bbb_voxels], 0.0, 1.0) ** self.config.endothelium.crossing_hill
        p = xp.asarray(self.bbb_permeability, dtype=xp.float32)[:, None]
        flat[:, self.bbb_voxels] = p + (1.0 - p) * breach[None, :]
        self.solver.set_conductance(self._conductance, check=check)

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """One step: the layers of DESIGN.md in order."""
        # 0. therapies due now (schedule, or a trigger on the last readouts) and their effects
        self.therapy.administer(self.step_index * self.dt_h, self.last_readouts, self.dt_h)
        self.effects.update(self.therapy.plasma, self.mean_bbb_integrity())
        self.step_index += 1
        self.secretion.clear()
        self._dies = None
        if self.store.launcher is not None and self.step_index % SORT_EVERY_STEPS == 0:
            self.store.sort_by_voxel()  # GPU: neighbours in space become neighbours in memory
        self._agents_moved()
        # 1-2. sense and decide (rules read fields and contacts; deaths applied together)
        self._deplete()
        bcell.grow(self)
        cart.step(self)
        sensed = myeloid.inputs(self)  # shared by the myeloid rules (nothing they sense changes between them)
        macrophage.step(self, sensed)
        monocyte.step(self, sensed)
        self._flush_deaths()
        cart.pool_step(self)
        monocyte.renew_pool(self)
        # 3. move: random walk / chemotaxis, vessel wall, BBB, circulation
        self.movement.step(self.step_index, self.fields, self.integrity)
        self._agents_moved()
        self.movement.transmigrate(self.step_index, extravasation_scale=monocyte.recruitment_scale(self))
        self.circulation.exchange(self.step_index)
        self._agents_moved()
        # 4. secrete / uptake
        cart.secrete(self)
        macrophage.secrete(self)
        monocyte.secrete(self)
        # 5. fields: blood-pool exchange, sources, uptake, decay, diffusion
        k = len(CYTOKINES)
        self.fields = self.blood.step(self.fields, self.dt_s, self.secretion.sources.reshape((k,) + self.lattice.shape),
                                      self.secretion.uptake.reshape((k,) + self.lattice.shape))  # fmt: skip
        serum = self.serum  # the systemic pool after this step's exchange, once for layers 6 and 7
        # 6. endothelium / BBB, therapy PK
        endothelium.update(self, serum)
        self.therapy.advance_pk(self.dt_h)
        # 7. readouts (also what the next step's triggers see)
        self.row = self.readouts(serum)

    def _deplete(self) -> None:
        """Depletion therapies remove monocytes/macrophages on the lattice and in the blood pool."""
        for name, rate in self.effects.depletion_per_h.items():
            if rate <= 0.0:
                continue
            p = rules.probability(rate, self.dt_h)
            self.mark_dead(self.mask_of(name) & (self.uniform_all(f"deplete:{name}") < p))
            k = self.store.kind_id(name)
            if self.circulation.circulating[k]:
                expected = self.circulation.pool[k] * p
                u = rng_compiled.to_unit(rng_compiled.random_bits(np, self.seed, self.step_index, np.arange(expected.size), f"deplete_pool:{name}")[0], np)
                self.circulation.pool[k] = np.maximum(self.circulation.pool[k] - stochastic_round(expected, u), 0)

    def _integrity_mean_device(self) -> Any:
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
            self._integrity_mean = float(self.backend.to_host(self._integrity_mean_device(), "bbb_integrity"))
        return self._integrity_mean

    def integrity_changed(self) -> None:
        """Forget the cached mean integrity (call after changing ``integrity`` in place)."""
        self._integrity_mean = None

    # ------------------------------------------------------------------ readouts
    def _packed_readouts(self) -> Any:
        """Everything the readouts need from the device, as one float64 array (see :meth:`readouts`).

        Layout: lattice counts per kind ``[K]``, activated agents per kind ``[K]``, lattice-blood
        counts of cart and monocyte ``[2]``, CNS infiltrate ``[1]``, mean CNS level per cytokine
        ``[C]`` (float32 values), mean BBB integrity ``[1]`` (float32 value), this step's
        tallies ``[len(TALLIES)]``. Counts are exact in float64.
        """
        xp, store = self.xp, self.store
        f64 = xp.float64
        kinds = xp.arange(len(CELL_TYPES), dtype=store.kind.dtype)
        is_kind = store.kind[None, :] == kinds[:, None]  # [K, n]
        activated_state = xp.asarray([ACTIVATED_STATE.get(name, -1) for name in CELL_TYPES], dtype=xp.int16)
        activated = is_kind & (store.state.astype(xp.int16)[None, :] == activated_state[:, None])
        in_blood = self.circulation.in_lattice_blood()
        blood = is_kind[[store.kind_id("cart"), store.kind_id("monocyte")]] & in_blood[None, :]
        in_cns = self.labels[store.flat_index()] == CNS
        infiltrating = (is_kind[store.kind_id("cart")] | is_kind[store.kind_id("monocyte")]) & in_cns
        parts = [is_kind.sum(axis=1, dtype=xp.int64), activated.sum(axis=1, dtype=xp.int64), blood.sum(axis=1, dtype=xp.int64),
                 infiltrating.sum(dtype=xp.int64).reshape(1)]  # fmt: skip
        parts = [part.astype(f64) for part in parts]
        if self.n_cns:
            parts.append(self.fields_flat[:, self.cns_voxels].mean(axis=1).astype(f64))
        else:
            parts.append(xp.zeros(len(CYTOKINES), dtype=f64))
        if self.n_bbb:
            parts.append(self._integrity_mean_device().astype(f64).reshape(1))
        else:
            parts.append(xp.ones(1, dtype=f64))
        parts.append(self._tally.astype(f64))
        return xp.concatenate(parts)

    def readouts(self, serum: np.ndarray | None = None) -> dict[str, Any]:
        """The time-series row of this step (host scalars), from one packed ``readouts`` host read.

        ``serum``: :attr:`serum` when the caller has just read it.
        """
        circ = self.circulation
        n_kinds, n_cyt = len(CELL_TYPES), len(CYTOKINES)
        packed = self.backend.to_host(self._packed_readouts(), "readouts")
        self._tally.fill(0)
        lattice_counts = packed[:n_kinds].astype(np.int64)
        activated = packed[n_kinds : 2 * n_kinds].astype(np.int64)
        blood_cart, blood_monocyte, infiltrate = packed[2 * n_kinds : 2 * n_kinds + 3].astype(np.int64)
        at = 2 * n_kinds + 3
        cns = packed[at : at + n_cyt]
        integrity = float(packed[at + n_cyt])
        tallies = packed[at + n_cyt + 1 :].astype(np.int64)
        for name, value in zip(TALLIES, tallies):
            self.counters[name] += int(value)
        if self.n_bbb:
            self._integrity_mean = integrity

        row: dict[str, Any] = {"time_h": self.step_index * self.dt_h}
        for i, name in enumerate(CELL_TYPES):
            row[f"counts/{name}"] = int(lattice_counts[i] + circ.pool[i].sum())
        serum = self.serum if serum is None else serum
        free = self.effects.signal_free_fraction_scalar("blood")
        for name, i in INDEX.items():
            row[f"serum/{name}"] = float(serum[i])
            row[f"cns/{name}"] = float(cns[i])
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
        volume_ul = circ.total_volume_ml * UL_PER_ML  # as BloodCirculation.blood_count_per_ul
        row["blood_per_ul/cart"] = (circ.pool_count("cart") + int(blood_cart)) / volume_ul
        row["blood_per_ul/monocyte"] = (circ.pool_count("monocyte") + int(blood_monocyte)) / volume_ul
        row["activated/cart"] = int(activated[0] + circ.pool[0, cart.ACTIVATED])
        for i, name in enumerate(CELL_TYPES[2:], start=2):
            row[f"activated/{name}"] = int(activated[i])
        row["cns_infiltrate"] = int(infiltrate)
        for name, pk in self.therapy.plasma.items():
            row[f"drug/{name}"] = pk.conc_ug_ml
            row[f"drug_cns/{name}"] = pk.cns_ug_ml(integrity)
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
