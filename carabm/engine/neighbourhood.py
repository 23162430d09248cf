"""Where the agents are and who their neighbours are: per-agent voxels and the 26-voxel neighbourhood.

Cached while agents keep their voxels (call :meth:`Neighbourhood.forget` when they move or are
removed); knows no cell type: callers pass masks over the agents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carabm.engine import rng_compiled
from carabm.engine.agents import AgentStore
from carabm.engine.backend import on_device
from carabm.engine.jit_cache import compiled_twin


def first_beyond(xp: Any, flags: Any, pick: Any) -> Any:
    """Per column of ``flags`` (bool ``[r, m]``), the row of its ``pick``-th True (0-based; ``r`` when fewer)."""
    if not on_device(xp) and flags.shape[0] < 256:  # NumPy's cumsum along axis 0 is slow: r - 1 row adds in uint8
        running = flags.astype(np.uint8)
        for i in range(1, flags.shape[0]):
            np.add(running[i], running[i - 1], out=running[i])
        return (running <= np.minimum(pick, 255).astype(np.uint8)[None, :]).sum(axis=0, dtype=np.uint8).astype(np.int64)
    return (xp.cumsum(flags, axis=0) <= pick[None, :]).sum(axis=0)


class Neighbourhood:
    """Per-agent voxels and 26-neighbour table of an :class:`AgentStore`, cached until :meth:`forget`."""

    def __init__(self, store: AgentStore, seed: int):
        self.store = store
        self.xp = store.xp
        self.seed = seed
        self._voxels: Any = None
        self._neighbours: Any = None

    def forget(self) -> None:
        """Forget what depends on where the agents are (their voxels, the neighbourhood)."""
        self._voxels = None
        self._neighbours = None

    def voxels(self) -> Any:
        """Flat voxel index of every agent ``[n]``.

        Cached while agents keep their voxels; daughters added meanwhile (division) are appended.
        """
        cached, n = self._voxels, self.store.n
        if cached is None or cached.shape[0] > n:
            cached = self.store.flat_index()
        elif cached.shape[0] < n:
            cached = self.xp.concatenate([cached, self.store.flat_index(self.store.position[cached.shape[0] :])])
        self._voxels = cached
        return cached

    def neighbours(self) -> Any:
        """``1 + slot`` of the agent in each of the 26 neighbour voxels of every agent, ``int64 [26, m]`` (0: none).

        Neighbour-major (one row per direction), so reductions over the neighbourhood are
        vector operations over agents. Cached from the first use after :meth:`forget`; agents
        added after that (daughters) have no column (``m <= n``) and are not seen as neighbours.
        """
        if self._neighbours is None or self._neighbours.shape[1] > self.store.n:
            store, xp = self.store, self.xp
            offsets, flat = store.padded_offsets(26), store.padded_flat()
            table = compiled_twin("_neighbourhood_numba", "neighbour_table") if not on_device(xp) else None
            if table is not None:  # one compiled pass, the same table
                self._neighbours = np.empty((offsets.shape[0], flat.shape[0]), dtype=np.int64)
                table(store.padded_occupancy.ravel(), np.ascontiguousarray(flat), offsets, self._neighbours)
            else:
                self._neighbours = xp.take(store.padded_occupancy.ravel(), offsets[:, None] + flat[None, :]).astype(xp.int64) + 1
        return self._neighbours

    def flags(self, flag: Any) -> Any:
        """``flag`` (bool ``[n]``) of each agent's 26 neighbours, ``[26, m]`` (False where there is none)."""
        xp = self.xp
        return xp.take(xp.concatenate([xp.zeros(1, dtype=bool), flag]), self.neighbours())

    def pad_rows(self, values: Any, fill: Any) -> Any:
        """Extend a per-agent array of the cached neighbourhood's agents (``m``) to all ``n`` agents with ``fill``."""
        missing = self.store.n - int(values.shape[0])
        if missing <= 0:
            return values
        return self.xp.concatenate([values, self.xp.full(missing, fill, dtype=values.dtype)])

    def random_neighbour(self, among: Any, step: int, purpose: str, agents: Any = None) -> tuple[Any, Any]:
        """For every agent, a random neighbour where ``among`` (bool ``[n]``) is set: its slot (-1 if none) and whether it has one, ``[n]``.

        The neighbour is the ``floor(u * count)``-th such one in neighbourhood order, ``u``
        keyed by (seed, step, agent id, purpose). ``agents`` (bool ``[n]``): only these look for
        one (the others get -1 and False); each gets the neighbour it would get in a search by all.
        """
        xp = self.xp
        nb = self.neighbours()
        m = int(nb.shape[1])
        kernel = compiled_twin("_neighbourhood_numba", "random_neighbour") if not on_device(xp) else None
        if kernel is not None:  # one compiled pass instead of ~30 array operations (same numbers)
            columns = np.arange(m, dtype=np.int64) if agents is None else np.flatnonzero(np.asarray(agents, dtype=bool)[:m])
            u = rng_compiled.uniform(xp, self.seed, step, self.store.id[:m][columns], purpose)  # keyed by id: the same numbers
            slot, has = np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=bool)
            among_padded = np.concatenate([np.zeros(1, dtype=bool), np.asarray(among, dtype=bool)])
            kernel(np.ascontiguousarray(nb), among_padded, columns, u, slot, has)
            return self.pad_rows(slot, -1), self.pad_rows(has, False)
        slot, has = self.random_neighbour_arrays(among, step, purpose)
        if agents is None:
            return slot, has
        return xp.where(agents, slot, -1), has & agents

    def random_neighbour_arrays(self, among: Any, step: int, purpose: str) -> tuple[Any, Any]:
        """:meth:`random_neighbour` with array operations (any backend; the reference of the compiled CPU path)."""
        xp = self.xp
        nb = self.neighbours()
        m = int(nb.shape[1])
        is_kind = self.flags(among)
        count = is_kind.sum(axis=0, dtype=xp.uint8).astype(xp.int64)
        word = rng_compiled.random_bits(xp, self.seed, step, self.store.id[:m], purpose)[0]
        pick = (rng_compiled.to_unit(word, xp) * count).astype(xp.int64)  # < count
        direction = xp.minimum(first_beyond(xp, is_kind, pick), nb.shape[0] - 1)
        has = count > 0
        slot = xp.where(has, xp.take_along_axis(nb, direction[None, :], axis=0)[0] - 1, -1)
        return self.pad_rows(slot, -1), self.pad_rows(has, False)

    def has_neighbour(self, among: Any) -> Any:
        """Bool ``[n]``: whether each agent has a neighbour where ``among`` (bool ``[n]``) is set."""
        return self.pad_rows(self.flags(among).any(axis=0), False)

    def neighbour_sum(self, weights: Any) -> Any:
        """Per agent, the sum of ``weights`` (float ``[n]``) over its 26 neighbours, ``float32 [n]``.

        A count of neighbours of some kind when ``weights`` is 0/1. One gather and one sum over
        the neighbour axis (array operations on either backend); agents added after the cached
        neighbourhood (daughters) count as nobody's neighbour and get 0, as in :meth:`has_neighbour`.
        """
        xp = self.xp
        padded = xp.concatenate([xp.zeros(1, dtype=xp.float32), xp.asarray(weights, dtype=xp.float32)])
        table = self.neighbours()
        kernel = compiled_twin("_neighbourhood_numba", "neighbour_sum") if not on_device(xp) else None
        if kernel is not None:  # one compiled pass, the same float32 sums in the same order
            out = np.empty(table.shape[1], dtype=np.float32)
            kernel(table, padded, out)
            return self.pad_rows(out, 0.0)
        return self.pad_rows(xp.take(padded, table).sum(axis=0, dtype=xp.float32), 0.0)
