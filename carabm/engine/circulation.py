"""Blood circulation: the systemic pool of circulating cells and its exchange with lattice blood.

Owns the representative-volume scaling (the lattice stands for a fraction ``scale`` of the
patient), the pool counts per (kind, state), infusion, the fast exchange between pool and
lattice blood voxels, and blood counts per µL.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from carabm.engine import rng, rng_compiled, scatter
from carabm.engine.agents import WEIGHT, AgentStore, choose_free_voxels
from carabm.engine.lattice import BLOOD, Lattice
from carabm.errors import CheckpointError

#: states are uint8 codes
N_STATES = 256
UL_PER_ML = 1000.0


class BloodCirculation:
    """Circulating cells outside the lattice as counts, exchanging with the lattice's blood voxels.

    The pool stands for ``blood_volume_ml * scale`` mL of blood. Each step every agent of a
    circulating kind in a lattice blood voxel leaves for the pool with probability
    ``q = 1 - exp(-dt / transit_min)``, and ``pool * (V_lattice / V_pool) * q`` cells (per kind
    and state, stochastically rounded) enter free blood voxels. So at equilibrium the density
    in lattice blood equals the pool density, and exchange conserves pool + lattice counts.
    Cells lose their declared variables in the pool (they re-enter with zeros and new ids).
    ``pool`` (int64 ``[kinds, 256]``, on the host) counts agents and may be edited by biology
    (e.g. expansion or death in the circulation, depletion therapies).

    Super-individuals (kinds with a :data:`~carabm.engine.kinds.WEIGHT`): ``pool_weight``
    (float64 ``[kinds, 256]``) is the mean weight of the pool's agents per (kind, state);
    agents leaving the lattice fold their weights into it, agents entering take it, and
    biology's edits of ``pool`` (deaths at random) leave it unchanged, so the cells the pool
    stands for, ``pool * pool_weight``, stay right in expectation.

    Carried variables (:meth:`carry`, e.g. a CAR-T cell's kills and divisions, which decide its
    exhaustion): ``pool_means[name]`` (float64 ``[kinds, 256]``) is the mean of the variable
    over the pool's agents per (kind, state), folded in like the weights; agents entering the
    lattice take it, stochastically rounded, so a cell's history survives a passage through the
    blood in expectation (without it, every passage would reset it to zero).
    """

    def __init__(
        self,
        store: AgentStore,
        lattice: Lattice,
        dt_min: float,
        seed: int,
        scale: float,
        blood_volume_ml: float = 5000.0,
        transit_min: float = 1.0,
    ) -> None:
        if not scale > 0 or not blood_volume_ml > 0 or not transit_min > 0 or not dt_min > 0:
            raise ValueError("scale, blood_volume_ml, transit_min and dt_min must be > 0")
        self.store = store
        self.xp = store.xp
        self.seed = int(seed)
        self.scale = float(scale)
        self.dt_min = float(dt_min)
        self.transit_min = float(transit_min)
        self.blood_voxels = self.xp.asarray(lattice.flat_indices(BLOOD))
        self.lattice_volume_ml = int(self.blood_voxels.size) * lattice.voxel_volume_ml
        self.pool_volume_ml = float(blood_volume_ml) * self.scale
        self.exchange_probability = 1.0 - math.exp(-self.dt_min / self.transit_min)
        self.pool = np.zeros((len(store.kinds), N_STATES), dtype=np.int64)
        self.pool_weight = np.ones((len(store.kinds), N_STATES), dtype=np.float64)
        self.weighted = np.array([k.weighted for k in store.kinds], dtype=bool)
        #: variables kept through the pool (name -> the kinds that carry it) and their pool means
        self.carried: dict[str, set[int]] = {}
        self.pool_means: dict[str, np.ndarray] = {}
        self.circulating = np.array([k.circulates and k.in_blood for k in store.kinds], dtype=bool)
        self._blood_padded = store.pad(self.xp.asarray(lattice.labels == BLOOD), False).ravel()
        self._blood_voxels_padded = store.padded_from_flat(self.blood_voxels)

    @property
    def total_volume_ml(self) -> float:
        """Blood the model represents: pool plus lattice blood voxels (mL)."""
        return self.pool_volume_ml + self.lattice_volume_ml

    def _kind(self, kind: str | int) -> int:
        k = self.store.kind_id(kind) if isinstance(kind, str) else int(kind)
        if not self.circulating[k]:
            name = self.store.kinds[k].name
            raise ValueError(f"kind {name!r} does not circulate (needs blood allowed and circulates=True)")
        return k

    def infuse(self, kind: str | int, count: float, state: int = 0, step: int = 0, min_agents: int = 0) -> int:
        """Infuse ``count`` cells (whole patient) into the pool; it receives ``count * scale`` of them.

        The fraction is rounded stochastically (keyed by seed, step, kind and state); returns
        the number of agents added to the pool. A weighted kind whose share is below
        ``min_agents`` (and above zero) gets ``min_agents`` agents of weight
        ``count * scale / min_agents`` instead: the same cells, enough agents for statistics.
        """
        k = self._kind(kind)
        if count < 0:
            raise ValueError(f"infuse: count must be >= 0, got {count}")
        if min_agents and not self.weighted[k]:
            raise ValueError(f"infuse: kind {self.store.kinds[k].name!r} has no {WEIGHT!r} variable; min_agents needs one")
        expected = float(count) * self.scale
        if self.weighted[k] and 0.0 < expected < min_agents:
            added, weight = int(min_agents), expected / min_agents
        else:
            key = np.array([k * N_STATES + int(state)], dtype=np.int64)
            u = float(rng.uniform(np, self.seed, step, key, "infuse")[0])
            added, weight = rng.stochastic_round(expected, u), 1.0
        self._fold_in(k, int(state), added, added * weight)
        self.pool[k, int(state)] += added
        return added

    def carry(self, kind: str | int, names: tuple[str, ...]) -> None:
        """Keep the declared variables ``names`` of ``kind`` through the pool (as pool means, see the class)."""
        k = self._kind(kind)
        for name in names:
            if name not in self.store.kinds[k].variables:
                raise ValueError(f"carry: kind {self.store.kinds[k].name!r} has no variable {name!r}")
            self.carried.setdefault(name, set()).add(k)
            self.pool_means.setdefault(name, np.zeros(self.pool.shape, dtype=np.float64))

    def _fold_in_means(self, agents: np.ndarray, sums: dict[str, np.ndarray]) -> None:
        """Fold leaving agents ``[kinds, 256]`` with the summed carried variables ``sums`` into the pool means."""
        for name, total in sums.items():
            for k in self.carried[name]:
                self.pool_means[name][k] = self._pooled_mean(k, agents, self.pool_means[name][k], total[k])

    def _pooled_mean(self, k: int, agents: np.ndarray, mean: np.ndarray, added_sum: np.ndarray) -> np.ndarray:
        """Per state of kind ``k``: the mean over the pool's agents and ``agents[k]`` leaving agents summing to ``added_sum``."""
        total = self.pool[k] + agents[k]
        return np.where(total > 0, (self.pool[k] * mean + added_sum) / np.maximum(total, 1), mean)

    def _fold_in(self, k: int, state: int, agents: int, weight_sum: float) -> None:
        """Fold ``agents`` of total weight ``weight_sum`` into the mean pool weight of (``k``, ``state``)."""
        total = int(self.pool[k, state]) + int(agents)
        if total > 0:
            self.pool_weight[k, state] = (self.pool[k, state] * self.pool_weight[k, state] + weight_sum) / total
            for name, kinds in self.carried.items():  # the new agents carry nothing yet
                if k in kinds:
                    self.pool_means[name][k, state] *= self.pool[k, state] / total

    def pool_cells(self, kind: str | int, state: int | None = None) -> float:
        """Cells the pool's agents of a kind (and state) stand for (their weights; 1 per agent for unweighted kinds)."""
        k = self._kind(kind)
        cells = self.pool[k] * self.pool_weight[k]
        return float(cells.sum() if state is None else cells[int(state)])

    def checkpoint_state(self) -> dict[str, Any]:
        """The systemic pool: agents per (kind, state) outside the lattice and their mean weights."""
        return {"pool": self.pool.copy(), "pool_weight": self.pool_weight.copy(),
                "pool_means": {name: mean.copy() for name, mean in self.pool_means.items()}}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the pool of :meth:`checkpoint_state` (the same cell types; a state without weights: all 1)."""
        pool = np.asarray(state["pool"])
        if pool.shape != self.pool.shape:
            raise CheckpointError(f"saved circulation pool has shape {list(pool.shape)}, expected {list(self.pool.shape)}")
        self.pool = pool.astype(self.pool.dtype)
        weight = np.asarray(state.get("pool_weight", np.ones(pool.shape)), dtype=np.float64)
        if weight.shape != self.pool.shape:
            raise CheckpointError(f"saved pool weights have shape {list(weight.shape)}, expected {list(self.pool.shape)}")
        self.pool_weight = weight.copy()
        saved = state.get("pool_means", {})  # a state from before carried variables: means 0
        for name in self.pool_means:
            mean = np.asarray(saved.get(name, np.zeros(pool.shape)), dtype=np.float64)
            if mean.shape != self.pool.shape:
                raise CheckpointError(f"saved pool means of {name!r} have shape {list(mean.shape)}, expected {list(self.pool.shape)}")
            self.pool_means[name] = mean.copy()

    def in_lattice_blood(self) -> Any:
        """Mask ``[n]`` of agents in lattice blood voxels."""
        return self._blood_padded[self.store.padded_flat()]

    def lattice_blood_counts(self) -> Any:
        """Cells (agents' weights) in lattice blood voxels per kind, float64 ``[kinds]`` on the backend (no host read)."""
        xp = self.xp
        in_blood = self.in_lattice_blood()
        kinds = xp.arange(len(self.store.kinds), dtype=xp.uint8)
        selected = (self.store.kind[None, :] == kinds[:, None]) & in_blood[None, :]
        return (selected * self.store.weights().astype(xp.float64)[None, :]).sum(axis=1)

    def blood_per_ul(self, kind: str | int, lattice_count: float, state: int | None = None) -> float:
        """Circulating cells per µL from a lattice-blood count (cells) already on the host (see :meth:`lattice_blood_counts`)."""
        return (self.pool_cells(kind, state) + float(lattice_count)) / (self.total_volume_ml * UL_PER_ML)

    def lattice_count(self, kind: str | int, state: int | None = None) -> int:
        """Agents of a kind (and state) in lattice blood voxels."""
        k = self._kind(kind)
        mask = self.in_lattice_blood() & (self.store.kind == k)
        if state is not None:
            mask &= self.store.state == state
        return int(mask.sum())

    def pool_count(self, kind: str | int, state: int | None = None) -> int:
        """Cells of a kind (and state) in the pool."""
        k = self._kind(kind)
        return int(self.pool[k].sum() if state is None else self.pool[k, int(state)])

    def lattice_cells(self, kind: str | int, state: int | None = None) -> float:
        """Cells (agents' weights) of a kind (and state) in lattice blood voxels."""
        k = self._kind(kind)
        mask = self.in_lattice_blood() & (self.store.kind == k)
        if state is not None:
            mask &= self.store.state == state
        return float((self.store.weights() * mask).sum(dtype=self.xp.float64))

    def blood_count_per_ul(self, kind: str | int, state: int | None = None) -> float:
        """Circulating cells per µL: (pool + lattice blood) over the represented blood volume."""
        total = self.pool_cells(kind, state) + self.lattice_cells(kind, state)
        return total / (self.total_volume_ml * UL_PER_ML)

    def exchange(self, step: int) -> tuple[int, int]:
        """One step of exchange between lattice blood and the pool; returns (left, entered) agents.

        On a GPU this makes one documented host read ("circulation: cells leaving"): the
        leaving agents (and their weights) per (kind, state) and the free blood voxels, packed together.
        """
        store, xp = self.store, self.xp
        inflow = self._inflow_counts(step)
        left = 0
        n_free = None
        if store.n:
            circulating = xp.asarray(self.circulating)[store.kind] & self.in_lattice_blood()
            u = rng_compiled.uniform(xp, self.seed, step, store.id, "circulate_out")
            leaving = circulating & (u < xp.float32(self.exchange_probability))
            sums: dict[str, np.ndarray] = {}
            if store.launcher is not None:
                out, out_weight, n_free, sums = self._leaving_counts(leaving)
                n_free += int(out.sum())
                left = store.remove(leaving, count=int(out.sum()))
            else:
                codes = store.kind[leaving].astype(xp.int64) * N_STATES + store.state[leaving]
                out = store.backend.asnumpy(xp.bincount(codes, minlength=self.pool.size)).reshape(self.pool.shape)
                out_weight = None
                if self.weighted.any():
                    weights = store.weights()[leaving].astype(xp.float64)
                    out_weight = store.backend.asnumpy(xp.bincount(codes, weights=weights, minlength=self.pool.size)).reshape(self.pool.shape)
                for name in self.carried:
                    values = store[name][leaving].astype(xp.float64)
                    sums[name] = store.backend.asnumpy(xp.bincount(codes, weights=values, minlength=self.pool.size)).reshape(self.pool.shape)
                left = store.remove(leaving)
        entered = self._place(inflow, step, n_free)
        self.pool -= entered
        if left:
            if out_weight is not None:
                self._fold_in_weighted(out, out_weight)
            self._fold_in_means(out, sums)
            self.pool += out
        return left, int(entered.sum())

    def _fold_in_weighted(self, agents: np.ndarray, weight_sum: np.ndarray) -> None:
        """Fold leaving agents ``[kinds, 256]`` of total weights ``weight_sum`` into the mean weights of the weighted kinds."""
        for k in np.flatnonzero(self.weighted):
            self.pool_weight[k] = self._pooled_mean(k, agents, self.pool_weight[k], weight_sum[k])

    def _leaving_counts(self, leaving: Any) -> tuple[np.ndarray, np.ndarray | None, int, dict[str, np.ndarray]]:
        """Leaving agents, their summed weights and carried variables per (kind, state), and the free blood voxels now, in one host read."""
        store, xp = self.store, self.xp
        size = self.pool.size
        codes = xp.where(leaving, store.kind.astype(xp.int64) * N_STATES + store.state, 0)
        histogram = xp.zeros(size, dtype=xp.float32)  # counts < 2**24: exact in float32
        # masked: only the leaving agents add (unmasked, every other agent would add into one
        # spare bin, all atomics on one address)
        scatter.add_counts(histogram, codes, leaving, 1.0, launcher=store.launcher)
        free = (store.padded_occupancy.ravel()[self._blood_voxels_padded] < 0).sum(dtype=xp.int64)
        parts = [histogram.astype(xp.float64), free.astype(xp.float64)[None]]
        weighted = bool(self.weighted.any())
        if weighted:
            # float64 sums, as the NumPy path's bincount: weights of ~0.03 summed into hundreds lose bits in float32
            weight_histogram = xp.zeros(size, dtype=xp.float64)
            scatter.add_weights(weight_histogram, codes, xp.where(leaving, store.weights(), 0.0), 1.0, launcher=store.launcher)
            parts.append(weight_histogram)
        for name in self.carried:  # summed in float32: exact for integer sums below 2**24
            histogram_of = xp.zeros(size, dtype=xp.float32)
            scatter.add_weights(histogram_of, codes, xp.where(leaving, store[name], 0).astype(xp.float64), 1.0, launcher=store.launcher)
            parts.append(histogram_of.astype(xp.float64))
        host = store.backend.to_host(xp.concatenate(parts), "circulation: cells leaving")
        out = host[:size].astype(np.int64).reshape(self.pool.shape)
        start = size + 1
        out_weight = None
        if weighted:
            out_weight, start = host[start : start + size].reshape(self.pool.shape), start + size
        sums = {}
        for name in self.carried:
            sums[name], start = host[start : start + size].reshape(self.pool.shape), start + size
        return out, out_weight, int(host[size]), sums

    def _inflow_counts(self, step: int) -> np.ndarray:
        """Cells due to enter per (kind, state): ``pool * V_lattice / V_pool * q``, stochastically rounded."""
        expected = self.pool * (self.lattice_volume_ml / self.pool_volume_ml * self.exchange_probability)
        codes = np.flatnonzero(self.pool)
        counts = np.zeros(self.pool.size, dtype=np.int64)
        if codes.size:
            u = rng_compiled.uniform(np, self.seed, step, codes, "circulate_in").astype(np.float64)
            lam = expected.ravel()[codes]
            counts[codes] = rng.stochastic_round(lam, u)
        return np.minimum(counts.reshape(self.pool.shape), self.pool)

    def _place(self, inflow: np.ndarray, step: int, n_free: int | None = None) -> np.ndarray:
        """Put the inflow into free blood voxels (chosen by voxel-keyed priority); returns counts placed.

        ``n_free``: the free blood voxels, when known on the host (saves a host read on a GPU).
        """
        total = int(inflow.sum())
        placed = np.zeros_like(inflow)
        if total == 0:
            return placed
        voxels = choose_free_voxels(self.store, self.blood_voxels, total, self.seed, step, "circulate_place", n_free=n_free)
        free = int(voxels.size)
        if free < total:  # crowded vessel: the rest waits in the pool
            inflow = np.floor(inflow * (free / total)).astype(np.int64)
        _, ny, nx = self.store.shape
        position = self.xp.stack([voxels // (ny * nx), voxels // nx % ny, voxels % nx], axis=1)
        start = 0
        for code in np.flatnonzero(inflow.ravel()):  # loop over (kind, state) groups, not agents
            k, state = divmod(int(code), N_STATES)
            count = int(inflow[k, state])
            values: dict[str, Any] = {WEIGHT: float(self.pool_weight[k, state])} if self.weighted[k] else {}
            for name, kinds in self.carried.items():  # each entering agent: the pool mean, stochastically rounded
                if k in kinds:
                    u = rng_compiled.uniform(np, self.seed, step, np.arange(count, dtype=np.int64) + code * 1_000_003, f"carry:{name}")
                    values[name] = self.xp.asarray(rng.stochastic_round(np.full(count, self.pool_means[name][k, state]), u))
            self.store.add(k, position[start : start + count], state=state, check=False, **values)
            placed[k, state] = count
            start += count
        return placed
