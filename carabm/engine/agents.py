"""The agent store: kinds registered by biology, a structure of arrays, and the occupancy grid.

Owns per-agent state on the backend (positions, kind, state, stable ids, declared variables),
batched add/remove with compaction, and the one-cell-per-voxel occupancy grid kept consistent
with it; also the neighbourhood reads (contacts, free neighbours) every rule needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from carabm.engine import rng_compiled
from carabm.engine.backend import Backend, get_backend, launcher_for, on_device
from carabm.engine.kinds import WEIGHT, KindSpec
from carabm.engine.lattice import neighbour_offsets
from carabm.errors import CheckpointError

#: cached padded-grid flat index of each agent, kept in step with ``position``
_PADDED_INDEX = "_padded_index"


class AgentStore:
    """Agents as a structure of arrays on a backend, with an occupancy grid (one cell per voxel).

    Columns are arrays sized to ``capacity`` (grown by doubling); the properties
    ``position`` (int32 ``[n, 3]`` in (z, y, x)), ``kind`` (uint8), ``state`` (uint8),
    ``id`` (int64, stable, never reused) and ``store[name]`` for declared variables return
    views of the ``n`` live rows. Slots (row numbers) are valid until the next
    :meth:`add` / :meth:`remove`; ids are for output and randomness.
    The occupancy grid holds each voxel's slot or -1; internally it is padded by one
    voxel of -1 on every side, so neighbour reads need no bounds checks.
    """

    def __init__(
        self,
        kinds: Sequence[KindSpec],
        shape: Sequence[int],
        backend: str | Backend = "numpy",
        capacity: int = 1024,
    ) -> None:
        self.kinds: tuple[KindSpec, ...] = tuple(kinds)
        if not self.kinds or len(self.kinds) > 255:
            raise ValueError("AgentStore needs 1..255 kinds")
        names = [k.name for k in self.kinds]
        if len(set(names)) != len(names):
            raise ValueError(f"kind names must be unique, got {names}")
        self.kind_index: dict[str, int] = {k.name: i for i, k in enumerate(self.kinds)}
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.shape: tuple[int, int, int] = tuple(int(s) for s in shape)  # type: ignore[assignment]
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be [nz, ny, nx] with positive sizes, got {shape}")
        self.variables: dict[str, np.dtype] = {}
        for kind in self.kinds:
            for name, dtype in kind.variables.items():
                if self.variables.setdefault(name, dtype) != dtype:
                    raise ValueError(f"variable {name!r} declared with dtypes {self.variables[name]} and {dtype}")
        self.n = 0
        self.next_id = 0
        self._capacity = 0
        self._columns: dict[str, Any] = {}
        self._grow(max(16, int(capacity)))
        nz, ny, nx = self.shape
        self._padded_shape = (nz + 2, ny + 2, nx + 2)
        self._strides = ((ny + 2) * (nx + 2), nx + 2, 1)
        self._occupancy = self.xp.full(self._padded_shape, -1, dtype=self.xp.int32)
        #: kernel launcher of the CUDA paths (``kernels.launch`` on a GPU, ``None`` on the CPU);
        #: tests set a host emulation here to run the kernels on NumPy arrays
        self.launcher: Any = launcher_for(self.backend)

    # ----------------------------------------------------------------- columns
    @property
    def capacity(self) -> int:
        """Rows allocated (live rows are the first ``n``)."""
        return self._capacity

    def _dtypes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        core = {"position": ((3,), np.dtype(np.int32)), "kind": ((), np.dtype(np.uint8)),
                "state": ((), np.dtype(np.uint8)), "id": ((), np.dtype(np.int64)),
                _PADDED_INDEX: ((), np.dtype(np.int64))}
        core.update({name: ((), dtype) for name, dtype in self.variables.items()})
        return core

    def _grow(self, needed: int) -> None:
        capacity = max(self._capacity, 16)
        while capacity < needed:
            capacity *= 2
        if capacity == self._capacity:
            return
        for name, (tail, dtype) in self._dtypes().items():
            new = self.xp.zeros((capacity, *tail), dtype=dtype)
            if name in self._columns:
                new[: self.n] = self._columns[name][: self.n]
            self._columns[name] = new
        self._capacity = capacity

    @property
    def position(self) -> Any:
        """Voxel coordinates ``int32 [n, 3]`` in (z, y, x)."""
        return self._columns["position"][: self.n]

    @property
    def kind(self) -> Any:
        """Kind index ``uint8 [n]`` into :attr:`kinds`."""
        return self._columns["kind"][: self.n]

    @property
    def state(self) -> Any:
        """Biology-defined state code ``uint8 [n]``."""
        return self._columns["state"][: self.n]

    @property
    def id(self) -> Any:
        """Stable agent ids ``int64 [n]`` (never reused)."""
        return self._columns["id"][: self.n]

    def __getitem__(self, name: str) -> Any:
        """Live view of any column, core or declared variable."""
        if name not in self._columns:
            raise KeyError(f"no agent column {name!r}; columns are {list(self._columns)}")
        return self._columns[name][: self.n]

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of every column (core, cached index and declared variables)."""
        return tuple(self._columns)

    def __len__(self) -> int:
        return self.n

    def weights(self) -> Any:
        """Cells each live agent stands for ``float32 [n]``: its :data:`WEIGHT` where its kind declares one, else 1."""
        xp = self.xp
        if WEIGHT not in self.variables:
            return xp.ones(self.n, dtype=xp.float32)
        weighted = xp.asarray(np.array([k.weighted for k in self.kinds], dtype=bool))
        return xp.where(weighted[self.kind], self[WEIGHT], xp.float32(1.0)).astype(xp.float32)

    def kind_id(self, name: str) -> int:
        """Index of a kind by name."""
        if name not in self.kind_index:
            raise KeyError(f"unknown agent kind {name!r}; registered {list(self.kind_index)}")
        return self.kind_index[name]

    def count(self, kind: str | int | None = None) -> int:
        """Live agents (of one kind, by name or index, when given)."""
        if kind is None:
            return self.n
        k = self.kind_id(kind) if isinstance(kind, str) else int(kind)
        return int((self.kind == k).sum())

    # --------------------------------------------------------------- geometry
    @property
    def occupancy(self) -> Any:
        """Slot of the agent in each voxel or -1, ``int32 [nz, ny, nx]`` (a view; do not write)."""
        return self._occupancy[1:-1, 1:-1, 1:-1]

    @property
    def padded_occupancy(self) -> Any:
        """The occupancy grid padded by one voxel of -1 on every side (engine use)."""
        return self._occupancy

    def padded_flat(self, position: Any = None) -> Any:
        """Flat index (int64) into the padded grid of each agent (or of given positions)."""
        if position is None:
            return self._columns[_PADDED_INDEX][: self.n]
        pos = position.astype(self.xp.int64)
        sz, sy, _ = self._strides
        return (pos[:, 0] + 1) * sz + (pos[:, 1] + 1) * sy + (pos[:, 2] + 1)

    def flat_index(self, position: Any = None) -> Any:
        """Flat C-order index (int64) into ``[nz, ny, nx]`` of each agent (or of given positions)."""
        pos = self.position if position is None else position
        pos = pos.astype(self.xp.int64)
        _, ny, nx = self.shape
        return (pos[:, 0] * ny + pos[:, 1]) * nx + pos[:, 2]

    def padded_from_flat(self, flat: Any) -> Any:
        """Padded-grid flat indices of C-order flat indices into ``[nz, ny, nx]``."""
        _, ny, nx = self.shape
        flat = self.xp.asarray(flat, dtype=self.xp.int64)
        z, rest = flat // (ny * nx), flat % (ny * nx)
        y, x = rest // nx, rest % nx
        sz, sy, _ = self._strides
        return (z + 1) * sz + (y + 1) * sy + (x + 1)

    def padded_offsets(self, connectivity: int) -> Any:
        """Flat offsets (int64 ``[m]``) of the neighbourhood in the padded grid (made once per connectivity)."""
        cache = self.__dict__.setdefault("_offsets_cache", {})
        if connectivity not in cache:
            off = neighbour_offsets(connectivity).astype(np.int64)
            cache[connectivity] = self.xp.ascontiguousarray(self.xp.asarray(off @ np.asarray(self._strides, dtype=np.int64)))
        return cache[connectivity]

    def pad(self, array: Any, value: Any) -> Any:
        """A lattice-shaped array padded by one voxel of ``value`` (to read with padded indices)."""
        array = self.xp.asarray(array)
        out = self.xp.full(self._padded_shape, value, dtype=array.dtype)
        out[1:-1, 1:-1, 1:-1] = array
        return out

    def neighbour_slots(self, connectivity: int = 6) -> Any:
        """Slot of the agent in each neighbour voxel of every agent, ``int32 [n, m]`` (-1: none or outside)."""
        flat = self.padded_flat()
        return self._occupancy.ravel()[flat[:, None] + self.padded_offsets(connectivity)[None, :]]

    def free_neighbours(self, connectivity: int = 6) -> Any:
        """True where a neighbour voxel is inside the lattice and empty, ``bool [n, m]``.

        Compartment rules are not applied here (see :mod:`carabm.engine.movement`).
        """
        flat = self.padded_flat()[:, None] + self.padded_offsets(connectivity)[None, :]
        inside = self._inside_padded().ravel()[flat]
        return inside & (self._occupancy.ravel()[flat] < 0)

    def _inside_padded(self) -> Any:
        if not hasattr(self, "_inside_cache"):
            self._inside_cache = self.pad(self.xp.ones(self.shape, dtype=bool), False)
        return self._inside_cache

    def contact_counts(self, connectivity: int = 6, kind: str | int | None = None) -> Any:
        """Number of neighbouring agents (of one kind when given) of every agent, ``int32 [n]``."""
        xp = self.xp
        k = None if kind is None else (self.kind_id(kind) if isinstance(kind, str) else int(kind))
        if self.launcher is not None:
            counts = xp.empty(self.n, dtype=xp.int32)  # contact_counts writes every element
            if self.n:
                offsets = xp.ascontiguousarray(self.padded_offsets(connectivity), dtype=xp.int64)
                args = (self._columns[_PADDED_INDEX][: self.n], self._occupancy.reshape(-1), self._columns["kind"][: self.n],
                        offsets, int(offsets.shape[0]), -1 if k is None else k, counts, self.n)  # fmt: skip
                self.launcher("scatter", "contact_counts", ((self.n + 255) // 256,), (256,), args)
            return counts
        flat = self.padded_flat()
        occ = self._occupancy.ravel()
        counts = xp.zeros(self.n, dtype=xp.int32)
        for offset in neighbour_offsets(connectivity).astype(np.int64) @ np.asarray(self._strides):
            slot = occ[flat + int(offset)]  # one pass per neighbour direction, all agents at once
            counts += slot >= 0 if k is None else (slot >= 0) & (self.kind[xp.maximum(slot, 0)] == k)
        return counts

    # ---------------------------------------------------------- add / remove
    def add(self, kind: str | int, position: Any, state: Any = 0, check: bool = True, **values: Any) -> Any:
        """Add agents of one kind at ``position`` (``[k, 3]``, free distinct voxels); returns their slots.

        New ids are ``next_id, next_id + 1, ...`` in the order given. ``values`` set declared
        variables (scalars or ``[k]`` arrays); unset variables start at 0 (a :data:`WEIGHT` at 1). ``check=False``
        skips checking that the voxels are inside, free and distinct (three host reads on a
        GPU), for callers that chose them so (e.g. :func:`choose_free_voxels`).
        """
        xp = self.xp
        k_index = self.kind_id(kind) if isinstance(kind, str) else int(kind)
        if not 0 <= k_index < len(self.kinds):
            raise ValueError(f"kind index {k_index} out of range")
        position = xp.asarray(position, dtype=xp.int32).reshape(-1, 3)
        k = int(position.shape[0])
        if k == 0:
            return xp.zeros(0, dtype=xp.int64)
        flat = self.padded_flat(position)
        if check:
            upper = xp.asarray(self.shape, dtype=xp.int32)
            if bool(((position < 0) | (position >= upper)).any()):
                raise ValueError(f"add: positions outside the lattice {self.shape}")
            if bool((self._occupancy.ravel()[flat] >= 0).any()):
                raise ValueError("add: some target voxels are already occupied")
            if int(xp.unique(flat).size) != k:
                raise ValueError("add: two new agents in one voxel")
        unknown = set(values) - set(self.variables) - {"state"}
        if unknown:
            raise KeyError(f"add: unknown variables {sorted(unknown)}; declared {sorted(self.variables)}")
        self._grow(self.n + k)
        rows = slice(self.n, self.n + k)
        self._columns["position"][rows] = position
        self._columns[_PADDED_INDEX][rows] = flat
        self._columns["kind"][rows] = k_index
        self._columns["state"][rows] = xp.asarray(state, dtype=xp.uint8)
        self._columns["id"][rows] = xp.arange(self.next_id, self.next_id + k, dtype=xp.int64)
        for name in self.variables:
            self._columns[name][rows] = xp.asarray(values.get(name, 1 if name == WEIGHT else 0), dtype=self.variables[name])
        slots = xp.arange(self.n, self.n + k, dtype=xp.int64)
        self._occupancy.ravel()[flat] = slots.astype(xp.int32)
        self.n += k
        self.next_id += k
        return slots

    def copy_rows(self, source_slots: Any, position: Any, check: bool = True) -> Any:
        """Add copies of the agents in ``source_slots`` (kind, state, variables) at new free voxels.

        Used for division: daughters get new ids in the order given; returns their slots.
        ``check=False`` skips checking that the voxels are free and distinct (host reads).
        """
        xp = self.xp
        source_slots = xp.asarray(source_slots, dtype=xp.int64)
        k = int(source_slots.size)
        if k == 0:
            return xp.zeros(0, dtype=xp.int64)
        position = xp.asarray(position, dtype=xp.int32).reshape(-1, 3)
        flat = self.padded_flat(position)
        if check and (bool((self._occupancy.ravel()[flat] >= 0).any()) or int(xp.unique(flat).size) != k):
            raise ValueError("copy_rows: target voxels must be free and distinct")
        self._grow(self.n + k)
        rows = slice(self.n, self.n + k)
        for name, column in self._columns.items():
            if name not in ("position", "id", _PADDED_INDEX):
                column[rows] = column[source_slots]
        self._columns["position"][rows] = position
        self._columns[_PADDED_INDEX][rows] = flat
        self._columns["id"][rows] = xp.arange(self.next_id, self.next_id + k, dtype=xp.int64)
        slots = xp.arange(self.n, self.n + k, dtype=xp.int64)
        self._occupancy.ravel()[flat] = slots.astype(xp.int32)
        self.n += k
        self.next_id += k
        return slots

    def _as_mask(self, selection: Any) -> Any:
        xp = self.xp
        selection = xp.asarray(selection)
        if selection.dtype == xp.bool_:
            if selection.shape != (self.n,):
                raise ValueError(f"mask must have shape ({self.n},), got {selection.shape}")
            return selection
        mask = xp.zeros(self.n, dtype=bool)
        mask[selection.astype(xp.int64)] = True
        return mask

    def remove(self, selection: Any, count: int | None = None) -> int:
        """Remove agents (bool mask ``[n]`` or slots) and compact the rest, keeping their order.

        Returns how many were removed. Slots of survivors change; ids do not. ``count``, when
        the caller knows it, saves the one host read of how many are removed (on a GPU).
        """
        xp = self.xp
        mask = self._as_mask(selection)
        if count is None:
            count = int(self.backend.to_host(mask.sum(), "agents: removals")) if self.launcher is not None else int(mask.sum())
        if count == 0:
            return 0
        occ = self._occupancy.ravel()
        k = self.n - count
        keep = ~mask
        if self.launcher is not None:
            # compaction by a scan, without boolean indexing (which reads its size on the host);
            # padded index 0 is a border voxel, always -1, so it can absorb the writes of survivors
            occ[xp.where(mask, self.padded_flat(), 0)] = -1
            destination = xp.where(keep, xp.cumsum(keep) - 1, k)
            order = xp.empty(k + 1, dtype=xp.int64)
            order[destination] = xp.arange(self.n, dtype=xp.int64)
            order = order[:k]
            for column in self._columns.values():
                column[:k] = column[: self.n][order]
        else:
            occ[self.padded_flat()[mask]] = -1
            for column in self._columns.values():
                column[:k] = column[: self.n][keep]
        self.n = k
        occ[self.padded_flat()] = xp.arange(k, dtype=xp.int32)
        return count

    kill = remove

    def reorder(self, order: Any) -> None:
        """Permute the rows (``order`` a permutation of ``range(n)``), e.g. to sort agents by voxel.

        Results of the engine do not depend on the order (randomness is keyed by id).
        """
        xp = self.xp
        order = xp.asarray(order, dtype=xp.int64)
        if order.shape != (self.n,) or not bool((xp.sort(order) == xp.arange(self.n)).all()):
            raise ValueError("reorder: order must be a permutation of range(n)")
        for column in self._columns.values():
            column[: self.n] = column[: self.n][order]
        self._occupancy.ravel()[self.padded_flat()] = xp.arange(self.n, dtype=xp.int32)

    def sort_by_voxel(self) -> None:
        """Reorder agents by voxel (C order): neighbours in space become neighbours in memory.

        On a GPU this makes the scattered reads of the occupancy grid and fields by
        neighbouring threads fall in the same cache lines; results do not change (every
        random number is keyed by id). No host read.
        """
        xp = self.xp
        if self.n < 2:
            return
        order = xp.argsort(self.padded_flat())
        for column in self._columns.values():
            column[: self.n] = column[: self.n][order]
        self._occupancy.ravel()[self.padded_flat()] = xp.arange(self.n, dtype=xp.int32)

    def move(self, slots: Any, new_position: Any) -> None:
        """Move agents to new voxels that are free or vacated by this same batch (engine use)."""
        xp = self.xp
        slots = xp.asarray(slots, dtype=xp.int64)
        occ = self._occupancy.ravel()
        occ[self._columns[_PADDED_INDEX][slots]] = -1
        new_position = xp.asarray(new_position, dtype=xp.int32)
        new_flat = self.padded_flat(new_position)
        self._columns["position"][slots] = new_position
        self._columns[_PADDED_INDEX][slots] = new_flat
        occ[new_flat] = slots.astype(xp.int32)

    # ------------------------------------------------------------ placement
    def place_random(
        self,
        kind: str | int,
        count: int,
        candidates: Any,
        seed: int,
        step: int = 0,
        state: int = 0,
        purpose: str = "place",
        **values: Any,
    ) -> Any:
        """Add up to ``count`` agents in free voxels among ``candidates`` (flat indices) chosen at random.

        The choice depends only on (seed, step, purpose, voxel index); returns the new slots.
        """
        flat = choose_free_voxels(self, candidates, count, seed, step, purpose)
        position = self.xp.stack(self.xp.unravel_index(flat, self.shape), axis=1)
        return self.add(kind, position, state=state, **values)

    # ------------------------------------------------------------ checking
    # ----------------------------------------------------------------- state (docs/state.md)
    def checkpoint_state(self) -> dict[str, Any]:
        """The live rows of every column (host NumPy, in row order), ``n`` and ``next_id``.

        The occupancy grid and the cached voxel index are not state: :meth:`restore_checkpoint_state`
        rebuilds them from the positions.
        """
        columns = {name: self.backend.to_host(column[: self.n], "checkpoint").copy()
                   for name, column in self._columns.items() if not name.startswith("_")}  # fmt: skip
        return {"n": int(self.n), "next_id": int(self.next_id), "columns": columns}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the rows of :meth:`checkpoint_state` (same kinds and variables); rebuilds the occupancy."""
        xp = self.xp
        n = int(state["n"])
        columns = state["columns"]
        expected = {name for name in self._columns if not name.startswith("_")}
        if set(columns) != expected:
            raise CheckpointError(f"saved agent columns {sorted(columns)} differ from this model's {sorted(expected)}; "
                                  "the cell rules changed since the state was saved")  # fmt: skip
        self._grow(n)
        self.n = n
        for name, values in columns.items():
            column = self._columns[name]
            column[:n] = xp.asarray(np.asarray(values), dtype=column.dtype)
        self.next_id = int(state["next_id"])
        self._columns[_PADDED_INDEX][:n] = self.padded_flat(self.position)
        self._occupancy[...] = -1
        self._occupancy.ravel()[self.padded_flat()] = xp.arange(n, dtype=xp.int32)
        self.check()

    def check(self) -> None:
        """Raise ``AssertionError`` naming the first broken invariant of store and occupancy."""
        xp = self.xp
        pos = self.position
        if self.n:
            upper = xp.asarray(self.shape, dtype=xp.int32)
            assert not bool(((pos < 0) | (pos >= upper)).any()), "agent outside the lattice"
        occ = self._occupancy
        border = xp.ones(self._padded_shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        assert not bool((occ[border] >= 0).any()), "occupancy set outside the lattice"
        assert int((occ >= 0).sum()) == self.n, "occupied voxels != live agents (two cells in a voxel?)"
        assert bool((self.padded_flat() == self.padded_flat(pos)).all()), "cached voxel index != position"
        assert bool((occ.ravel()[self.padded_flat()] == xp.arange(self.n)).all()), "occupancy and store disagree"
        if self.n:
            assert int(xp.unique(self.id).size) == self.n, "duplicate ids"
            assert int(self.id.max()) < self.next_id, "id beyond next_id"


def choose_free_voxels(
    store: AgentStore, candidates: Any, count: int, seed: int, step: int, purpose: str, n_free: int | None = None
) -> Any:
    """Up to ``count`` free voxels (flat indices, int64) among ``candidates``, by a random priority.

    The priority is keyed by (seed, step, purpose, voxel index), so the choice does not
    depend on the order of agents or candidates; the result is ordered by priority.
    ``n_free``, the number of free candidates when the caller knows it, lets the kernel path
    (``store.launcher`` set) choose without reading anything on the host; without it that
    path makes one documented read ("agents: free voxels") instead of boolean indexing
    (which reads its output size on the host, outside :meth:`Backend.to_host`).
    """
    xp = store.xp
    candidates = xp.asarray(candidates, dtype=xp.int64).ravel()
    occupied = store.padded_occupancy.ravel()[store.padded_from_flat(candidates)] >= 0
    if store.launcher is not None:
        if n_free is None:
            n_free = int(store.backend.to_host((~occupied).sum(), "agents: free voxels"))
        count = min(int(count), int(n_free))
        if count <= 0:
            return xp.zeros(0, dtype=xp.int64)
        priority = xp.where(occupied, xp.uint64(2**64 - 1), rng_compiled.priorities(xp, seed, step, candidates, purpose))
        return candidates[xp.argsort(priority)[:count]]
    free = candidates[~occupied]
    count = min(int(count), int(free.size))
    if count <= 0:
        return xp.zeros(0, dtype=xp.int64)
    priority = rng_compiled.priorities(xp, seed, step, free, purpose)
    order = xp.argsort(priority) if on_device(xp) else xp.argsort(priority, kind="stable")
    return free[order[:count]]
