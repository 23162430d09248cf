"""Movement of all agents at once: random walk, chemotaxis, exclusion and compartment rules.

Owns the move probability from a speed, the per-kind compartment tables (which moves are
allowed, the BBB gate, extravasation/intravasation through the vessel wall), the parallel
conflict resolution by random priority, and division into a free neighbouring voxel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carabm.engine import movement_kernels, rng_compiled
from carabm.engine.agents import AgentStore
from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice, neighbour_offsets

#: label code of the voxels just outside the lattice in the padded label grid
OUTSIDE = 4
_N_LABELS = 5


def mean_hop_um(connectivity: int, voxel_um: float) -> float:
    """Mean length (µm) of one hop to a neighbour chosen uniformly (1, 1.416 voxels for 6, 26)."""
    offsets = neighbour_offsets(connectivity)
    return float(np.sqrt((offsets**2).sum(axis=1)).mean()) * voxel_um


def mean_square_hop_um2(connectivity: int, voxel_um: float) -> float:
    """Mean squared hop length (µm²): 1 voxel² for 6, 54/26 voxel² for 26 neighbours."""
    offsets = neighbour_offsets(connectivity)
    return float((offsets**2).sum(axis=1).mean()) * voxel_um**2


def move_probability(speed_um_min: float, dt_min: float, voxel_um: float, connectivity: int = 6) -> float:
    """Hop probability per step, ``p = min(1, v dt / mean hop)``: the mean path per step is ``v dt``."""
    return min(1.0, float(speed_um_min) * float(dt_min) / mean_hop_um(connectivity, voxel_um))


def diffusion_um2_min(p_move: float, dt_min: float, voxel_um: float, connectivity: int = 6) -> float:
    """Diffusion coefficient of the free lattice walk: ``D = p <l²> / (6 dt)`` (MSD = 6 D t)."""
    return float(p_move) * mean_square_hop_um2(connectivity, voxel_um) / (6.0 * float(dt_min))


def bbb_crossing_probability(xp: Any, integrity: Any, hill: float) -> Any:
    """Probability that a move into a BBB voxel is let through: ``(1 - integrity)^hill`` (0 when intact)."""
    leak = xp.clip(1.0 - xp.asarray(integrity, dtype=xp.float32), 0.0, 1.0)
    return leak ** xp.float32(hill)


def _choose_among(xp: Any, valid: Any, u: Any) -> tuple[Any, Any]:
    """Per row, the index of a valid column picked uniformly with ``u`` in [0, 1); and whether any exists."""
    count = valid.sum(axis=1)
    rank = xp.minimum((u * count).astype(xp.int64), xp.maximum(count - 1, 0))
    cumulative = xp.cumsum(valid, axis=1)
    choice = xp.argmax(cumulative > rank[:, None], axis=1)
    return choice, count > 0


def priority_from(xp: Any, random_word: Any, ids: Any) -> Any:
    """Conflict priority: 32 random bits above the low 32 bits of id + 1.

    Unique while ids < 2**32 - 1, and then never 0 (the CUDA path's fused claim-and-apply
    relies on that: a released claim reads 0, which no request may take for its own).
    """
    low = (ids.astype(xp.uint64) + xp.uint64(1)) & xp.uint64(0xFFFFFFFF)
    return (random_word.astype(xp.uint64) << xp.uint64(32)) | low


def resolve_conflicts(xp: Any, target: Any, priority: Any, scratch: Any | None = None, unique: bool = False) -> Any:
    """Winners (bool) among requests for voxels ``target``: per voxel, the highest ``priority``.

    ``scratch`` is a zeroed uint64 array indexable by ``target`` (returned zeroed); with it the
    scatter-max path is used, otherwise a sort. Unless ``unique`` promises distinct priorities,
    a tie is broken so that exactly one request per voxel wins.
    """
    n = int(target.size)
    if n == 0:
        return xp.zeros(0, dtype=bool)
    scatter_max = getattr(xp.maximum, "at", None)
    if scratch is not None and scatter_max is not None:
        scatter_max(scratch, target, priority)
        win = scratch[target] == priority
        scratch[target] = 0
        if unique:
            return win
        # an exact priority tie (chance ~2**-64) would give two winners: keep one of them
        winners = xp.nonzero(win)[0]
        claim = scratch.view(xp.int64)
        claim[target[winners]] = winners + 1
        keep = claim[target[winners]] == winners + 1
        claim[target[winners]] = 0
        win[winners[~keep]] = False
        return win
    order = xp.lexsort(xp.stack([priority, target.astype(xp.uint64)]))
    sorted_target = target[order]
    last = xp.ones(n, dtype=bool)
    last[:-1] = sorted_target[1:] != sorted_target[:-1]
    win = xp.zeros(n, dtype=bool)
    win[order[last]] = True
    return win


class Movement:
    """Moves, transmigration and division for an :class:`AgentStore` on a :class:`Lattice`.

    Built once per run: per-kind tables (hop probability per step, allowed moves between
    compartments, chemotaxis) live on the backend. Every random number is keyed by
    (seed, step, agent id, purpose), so results do not depend on the order of agents.
    When the store has a kernel launcher (``store.launcher``: on a GPU), moves, wall
    crossing and division run as CUDA kernels (:mod:`carabm.engine.movement_kernels`) with
    the same random words and winners; counts are then 0-d device arrays, not ints.
    """

    def __init__(
        self,
        store: AgentStore,
        lattice: Lattice,
        dt_min: float,
        seed: int,
        connectivity: int = 6,
        bbb_hill: float = 2.0,
        wall_closed: np.ndarray | None = None,
    ) -> None:
        if tuple(lattice.shape) != store.shape:
            raise ValueError(f"lattice shape {lattice.shape} != store shape {store.shape}")
        if lattice.voxel_um <= 0 or dt_min <= 0:
            raise ValueError("voxel_um and dt_min must be > 0")
        self.store = store
        self.lattice = lattice
        self.xp = xp = store.xp
        self.dt_min = float(dt_min)
        self.seed = int(seed)
        self.connectivity = int(connectivity)
        self.bbb_hill = float(bbb_hill)
        self.offsets = xp.asarray(neighbour_offsets(connectivity))
        self.padded_offsets = store.padded_offsets(connectivity)
        self.labels = store.pad(xp.asarray(lattice.labels), OUTSIDE)
        # transmigration reads these labels: voxels where the vessel wall is closed count as outside,
        # so no cell crosses into or out of them (moves and divisions read ``labels``)
        if wall_closed is None:
            self.wall_labels = self.labels
        else:
            closed = np.asarray(wall_closed, dtype=bool)
            if closed.shape != tuple(lattice.shape):
                raise ValueError(f"wall_closed has shape {closed.shape}, the lattice {tuple(lattice.shape)}")
            self.wall_labels = store.pad(xp.asarray(np.where(closed, OUTSIDE, lattice.labels).astype(lattice.labels.dtype)), OUTSIDE)
        hop_um = mean_hop_um(connectivity, lattice.voxel_um)
        kinds = store.kinds
        self.hop_rate = xp.asarray([k.speed_um_min * dt_min / hop_um for k in kinds], dtype=xp.float32)
        self.move_allowed = xp.asarray(self._pair_table(bbb=True))
        self.place_allowed = xp.asarray(self._pair_table(bbb=False))
        self.chemotaxis_field = [k.chemotaxis_field for k in kinds]
        self.chemotaxis_sensitivity = xp.asarray([k.chemotaxis_sensitivity for k in kinds], dtype=xp.float32)
        dt_h = dt_min / 60.0
        self.p_extravasate = xp.asarray([k.extravasation_per_h * dt_h for k in kinds], dtype=xp.float32)
        self.p_intravasate = xp.asarray([k.intravasation_per_h * dt_h for k in kinds], dtype=xp.float32)
        self.wall_allowed = xp.asarray([[k.allows(TISSUE), k.allows(BLOOD)] for k in kinds])
        self._scratch = xp.zeros(int(np.prod(store.padded_occupancy.shape)), dtype=xp.uint64)

    @property
    def _unique_priorities(self) -> bool:
        return self.store.next_id <= 2**32 - 1  # ids < 2**32 - 1: see priority_from

    def _pair_table(self, bbb: bool) -> np.ndarray:
        """``[K * 25]`` bool: may a cell of kind k step from label s to label t (flat ``k*25 + s*5 + t``)."""
        table = np.zeros((len(self.store.kinds), _N_LABELS, _N_LABELS), dtype=bool)
        for k, kind in enumerate(self.store.kinds):
            for t in (TISSUE, BLOOD, BBB, CNS):
                table[k, :, t] = kind.allows(t) if bbb else t in kind.allowed_compartments
        # the vessel wall is crossed only by transmigration; CNS touches blood only through the BBB
        for a, b in ((BLOOD, TISSUE), (BLOOD, CNS)):
            table[:, a, b] = table[:, b, a] = False
        return table.ravel()

    def _pair_index(self, kind: Any, source_label: Any, target_label: Any) -> Any:
        xp = self.xp
        source = source_label.astype(xp.int64)
        return (kind.astype(xp.int64) * _N_LABELS + source) * _N_LABELS + target_label

    def move_probability(self, speed_scale: Any = None) -> Any:
        """Hop probability of every agent this step, ``float32 [n]``."""
        xp = self.xp
        rate = self.hop_rate[self.store.kind]
        if speed_scale is not None:
            rate = rate * xp.asarray(speed_scale, dtype=xp.float32)
        return xp.minimum(rate, xp.float32(1.0))

    # ------------------------------------------------------------------ move
    def step(self, step: int, fields: Any = None, integrity: Any = None, speed_scale: Any = None) -> int:
        """Move every motile agent by at most one voxel; returns how many moved.

        ``fields`` (``[K, nz, ny, nx]``) feeds chemotaxis of kinds that name a field;
        ``integrity`` (``[nz, ny, nx]`` in 0..1, 1 = intact; ``None`` = intact everywhere)
        gates moves into BBB voxels; ``speed_scale`` (``[n]``) multiplies each agent's speed.
        A mover picks a neighbour (uniformly, or biased up the gradient); the move is a
        request if that voxel is inside, free at the start of the step and allowed for its
        kind; of several requests for one voxel the highest priority wins, the rest stay.
        """
        store, xp = self.store, self.xp
        if store.launcher is not None:
            return movement_kernels.step(self, step, fields, integrity, speed_scale, store.launcher)
        if store.n == 0:
            return 0
        ids = store.id
        w_move, w_dir, w_hi, _ = rng_compiled.random_bits(xp, self.seed, step, ids, "move")
        moving = rng_compiled.to_unit(w_move, xp) < self.move_probability(speed_scale)
        movers = xp.nonzero(moving)[0]
        if movers.size == 0:
            return 0
        kind = store.kind[movers]
        source = store.padded_flat()[movers]
        m = int(self.offsets.shape[0])
        direction = (((w_dir[movers] >> 16).astype(xp.uint32) * xp.uint32(m)) >> 16).astype(xp.int64)
        if fields is not None:
            direction = self._chemotaxis(fields, movers, kind, source, direction, w_dir)
        target = source + self.padded_offsets[direction]
        source_label = self.labels.ravel()[source]
        target_label = self.labels.ravel()[target]
        ok = store.padded_occupancy.ravel()[target] < 0
        ok &= self.move_allowed[self._pair_index(kind, source_label, target_label)]
        ok = self._bbb_gate(ok, target_label, target, ids[movers], step, integrity)
        request = xp.nonzero(ok)[0]
        priority = priority_from(xp, w_hi[movers[request]], ids[movers[request]])
        win = request[resolve_conflicts(xp, target[request], priority, self._scratch, self._unique_priorities)]
        slots = movers[win]
        store.move(slots, store.position[slots] + self.offsets[direction[win]])
        return int(slots.size)

    def _chemotaxis(self, fields: Any, movers: Any, kind: Any, source: Any, direction: Any, w_dir: Any) -> Any:
        """Redraw the direction of chemotactic movers: weight ``exp(chi * (c_neighbour - c_here))``."""
        xp, store = self.xp, self.store
        for field_index in sorted({f for f in self.chemotaxis_field if f is not None}):
            follows = xp.asarray(np.array([f == field_index for f in self.chemotaxis_field], dtype=bool))  # per kind
            sub = xp.nonzero(follows[kind])[0]  # the movers of those kinds (a table lookup: isin sorts)
            if sub.size == 0:
                continue
            padded = store.pad(xp.asarray(fields[field_index], dtype=xp.float32), np.nan).ravel()
            here = padded[source[sub]]
            there = padded[source[sub][:, None] + self.padded_offsets[None, :]]
            there = xp.where(xp.isnan(there), here[:, None], there)  # outside: no pull, and a pick there stays
            chi = self.chemotaxis_sensitivity[kind[sub]]
            weight = xp.exp(xp.clip(chi[:, None] * (there - here[:, None]), -30.0, 30.0))
            cumulative = xp.cumsum(weight, axis=1)
            u = rng_compiled.to_unit(w_dir[movers[sub]], xp) * cumulative[:, -1]
            choice = xp.minimum((cumulative <= u[:, None]).sum(axis=1), weight.shape[1] - 1)
            direction[sub] = choice
        return direction

    def _bbb_gate(self, ok: Any, target_label: Any, target: Any, ids: Any, step: int, integrity: Any) -> Any:
        """Let a request into a BBB voxel through with probability ``(1 - integrity)^h``."""
        xp = self.xp
        at_bbb = xp.nonzero(ok & (target_label == BBB))[0]
        if at_bbb.size == 0:
            return ok
        if integrity is None:
            ok[at_bbb] = False
            return ok
        leak = bbb_crossing_probability(xp, xp.asarray(integrity).ravel()[self._unpad(target[at_bbb])], self.bbb_hill)
        u = rng_compiled.uniform(xp, self.seed, step, ids[at_bbb], "bbb_cross")
        ok[at_bbb] = u < leak
        return ok

    def _unpad(self, padded_flat: Any) -> Any:
        nz, ny, nx = self.store.shape
        sz, sy, _ = (ny + 2) * (nx + 2), nx + 2, 1
        z, rest = padded_flat // sz - 1, padded_flat % sz
        y, x = rest // sy - 1, rest % sy - 1
        return (z * ny + y) * nx + x

    # ------------------------------------------------------- transmigration
    def transmigrate(
        self, step: int, extravasation_scale: Any = None, intravasation_scale: Any = None
    ) -> tuple[int, int]:
        """Cross the vessel wall: BLOOD -> TISSUE (extravasation) and TISSUE -> BLOOD (intravasation).

        A cell at the wall (a free neighbour of the other compartment that its kind allows)
        crosses this step with probability ``rate * scale * dt`` (rates per hour from the kind,
        capped at 1); ``*_scale`` are optional per-agent multipliers ``[n]`` (e.g. MCP-1
        recruitment). The target is a uniformly chosen free wall-side neighbour; conflicts are
        resolved as for moves. Voxels in the constructor's ``wall_closed`` take no part: nothing
        crosses into or out of them. Returns (extravasated, intravasated).
        """
        store, xp = self.store, self.xp
        if store.launcher is not None:
            return movement_kernels.transmigrate(self, step, extravasation_scale, intravasation_scale, store.launcher)
        if store.n == 0:
            return 0, 0
        wall_labels = self.wall_labels.ravel()
        label = wall_labels[store.padded_flat()]
        p_out = self.p_extravasate[store.kind]
        p_in = self.p_intravasate[store.kind]
        if extravasation_scale is not None:
            p_out = p_out * xp.asarray(extravasation_scale, dtype=xp.float32)
        if intravasation_scale is not None:
            p_in = p_in * xp.asarray(intravasation_scale, dtype=xp.float32)
        p = xp.where(label == BLOOD, p_out, xp.where(label == TISSUE, p_in, xp.float32(0.0)))
        cand = xp.nonzero(p > 0)[0]
        if cand.size == 0:
            return 0, 0
        w0, w1, w_hi, _ = rng_compiled.random_bits(xp, self.seed, step, store.id[cand], "transmigrate")
        go = rng_compiled.to_unit(w0, xp) < xp.minimum(p[cand], xp.float32(1.0))
        cand, w1, w_hi = cand[go], w1[go], w_hi[go]
        source = store.padded_flat()[cand]
        neighbours = source[:, None] + self.padded_offsets[None, :]
        other = xp.where(label[cand] == BLOOD, TISSUE, BLOOD).astype(xp.uint8)
        valid = (wall_labels[neighbours] == other[:, None]) & (store.padded_occupancy.ravel()[neighbours] < 0)
        choice, has = _choose_among(xp, valid, rng_compiled.to_unit(w1, xp))
        has &= self.wall_allowed[store.kind[cand], (other == BLOOD).astype(xp.int64)]
        request = xp.nonzero(has)[0]
        target = neighbours[request, choice[request]]
        priority = priority_from(xp, w_hi[request], store.id[cand[request]])
        win = request[resolve_conflicts(xp, target, priority, self._scratch, self._unique_priorities)]
        slots = cand[win]
        to_tissue = int((other[win] == TISSUE).sum())
        store.move(slots, store.position[slots] + self.offsets[choice[win]])
        return to_tissue, int(slots.size) - to_tissue

    # -------------------------------------------------------------- division
    def divide(self, selection: Any, step: int, purpose: str = "divide") -> tuple[Any, Any]:
        """Divide the selected agents (bool mask ``[n]`` or slots) into a free neighbouring voxel.

        A parent picks uniformly among its free neighbours whose compartment its kind may
        occupy (BBB voxels only when listed in ``allowed_compartments``); competing parents
        are resolved by priority; a parent with no free voxel does not divide. Daughters copy
        kind, state and variables and get new ids in the order of their parents' ids.
        Returns ``(parent_slots, daughter_slots)``.
        """
        store, xp = self.store, self.xp
        if store.launcher is not None:
            return movement_kernels.divide(self, selection, step, purpose, store.launcher)
        empty = xp.zeros(0, dtype=xp.int64)
        if store.n == 0:
            return empty, empty
        parents = xp.nonzero(store._as_mask(selection))[0]
        if parents.size == 0:
            return empty, empty
        ids = store.id[parents]
        _, w1, w_hi, _ = rng_compiled.random_bits(xp, self.seed, step, ids, purpose)
        source = store.padded_flat()[parents]
        neighbours = source[:, None] + self.padded_offsets[None, :]
        kind = store.kind[parents]
        valid = store.padded_occupancy.ravel()[neighbours] < 0
        valid &= self.place_allowed[
            self._pair_index(kind[:, None], self.labels.ravel()[source][:, None], self.labels.ravel()[neighbours])
        ]
        choice, has = _choose_among(xp, valid, rng_compiled.to_unit(w1, xp))
        request = xp.nonzero(has)[0]
        target = neighbours[request, choice[request]]
        priority = priority_from(xp, w_hi[request], ids[request])
        win = request[resolve_conflicts(xp, target, priority, self._scratch, self._unique_priorities)]
        win = win[xp.argsort(ids[win])]
        parent_slots = parents[win]
        daughter_position = store.position[parent_slots] + self.offsets[choice[win]]
        daughters = store.copy_rows(parent_slots, daughter_position)
        return parent_slots, daughters
