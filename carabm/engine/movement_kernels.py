"""The CUDA path of :class:`carabm.engine.movement.Movement`: moves, wall crossing and division by kernels.

Each operation is two launches: a proposal kernel (one thread per agent: random words,
target, compartment rules, ``atomicMax`` claim of the target voxel), then ``apply_moves``
(moves, wall crossing) or ``resolve_claims`` (division), which find the winners and release
their claims in one pass. The winners are the NumPy reference's (same random words, same
priorities, highest wins) and no host read happens except the number of daughters a
division adds (a documented read: the store's size must be known on the host).
``launcher`` is :func:`carabm.engine.kernels.launch` on a GPU; tests pass a host emulation
and NumPy arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from carabm.engine import kernels, rng
from carabm.engine.lattice import BLOOD, TISSUE

if TYPE_CHECKING:
    from carabm.engine.movement import Movement

_BLOCK = 256
MODULE = "movement"


def _check_block() -> None:
    """``apply_moves`` keeps a per-block histogram: its ``MOVE_BLOCK`` must be the block launched here."""
    block = kernels.source_info(MODULE).constants.get("MOVE_BLOCK")
    if block != _BLOCK:
        raise kernels.KernelError(f"movement.cu: MOVE_BLOCK is {block}, movement_kernels.py launches {_BLOCK} threads per block")


def _grid(n: int) -> tuple[int]:
    return ((n + _BLOCK - 1) // _BLOCK,)


class KernelTables:
    """The per-run constant tables of the kernels, on the device, made once per :class:`Movement`."""

    def __init__(self, movement: Movement) -> None:
        xp = movement.xp
        self.xp = xp
        self.labels = xp.ascontiguousarray(movement.labels.ravel(), dtype=xp.uint8)
        self.wall_labels = self.labels if movement.wall_labels is movement.labels else xp.ascontiguousarray(movement.wall_labels.ravel(), dtype=xp.uint8)
        self.offsets = xp.ascontiguousarray(movement.padded_offsets, dtype=xp.int64)
        self.offsets3 = xp.ascontiguousarray(movement.offsets, dtype=xp.int32)
        self.move_allowed = xp.ascontiguousarray(movement.move_allowed, dtype=xp.uint8)
        self.place_allowed = xp.ascontiguousarray(movement.place_allowed, dtype=xp.uint8)
        self.wall_allowed = xp.ascontiguousarray(movement.wall_allowed.ravel(), dtype=xp.uint8)
        fields = [-1 if f is None else int(f) for f in movement.chemotaxis_field]
        self.chemotaxis_field = xp.asarray(np.asarray(fields, dtype=np.int32))
        self.chemotaxis_chi = xp.ascontiguousarray(movement.chemotaxis_sensitivity, dtype=xp.float32)
        self.hop_rate = xp.ascontiguousarray(movement.hop_rate, dtype=xp.float32)
        self.p_out = xp.ascontiguousarray(movement.p_extravasate, dtype=xp.float32)
        self.p_in = xp.ascontiguousarray(movement.p_intravasate, dtype=xp.float32)
        self.placeholder_f32 = xp.zeros(1, dtype=xp.float32)
        self.has_chemotaxis = any(f >= 0 for f in fields)


def _tables(movement: Movement) -> KernelTables:
    tables = getattr(movement, "_kernel_tables", None)
    if tables is None:
        tables = movement._kernel_tables = KernelTables(movement)
    return tables


def _key(movement: Movement, step: int) -> tuple[int, int, int]:
    k0, k1 = rng._seed_key(movement.seed)
    return k0, k1, int(step) & rng._MASK32


def _per_agent(xp: Any, values: Any, n: int, tables: KernelTables) -> tuple[Any, int]:
    if values is None:
        return tables.placeholder_f32, 0
    return xp.ascontiguousarray(xp.broadcast_to(xp.asarray(values, dtype=xp.float32), (n,))), 1


def _scratch(xp: Any, n: int) -> tuple[Any, Any, Any]:
    """Per-request outputs of a proposal kernel, not zero-filled: it writes every ``target``,
    and ``priority`` and ``direction`` wherever ``target >= 0``, the only places they are read."""
    return xp.empty(n, dtype=xp.int64), xp.empty(n, dtype=xp.uint64), xp.empty(n, dtype=xp.int32)


def _resolve_and_apply(movement: Movement, launch: kernels.Launcher, target: Any, priority: Any, direction: Any) -> Any:
    """Winners of the claims move; returns moves per destination label (int32 ``[5]``, on the device)."""
    store, xp, tables = movement.store, movement.xp, _tables(movement)
    n = store.n
    columns = store._columns
    moved = xp.zeros(5, dtype=xp.int32)  # atomic counters: must start at 0
    position = columns["position"][:n]
    launch(MODULE, "apply_moves", _grid(n), (_BLOCK,),
           (target, direction, priority, tables.offsets3, tables.labels, store.padded_occupancy.reshape(-1),
            columns["_padded_index"][:n], position.reshape(-1), movement._scratch, moved, n))  # fmt: skip
    return moved


def step(movement: Movement, step: int, fields: Any, integrity: Any, speed_scale: Any, launch: kernels.Launcher) -> Any:
    """:meth:`Movement.step` by kernels; returns the number moved as a 0-d device array."""
    store, xp, tables = movement.store, movement.xp, _tables(movement)
    n = store.n
    if n == 0:
        return xp.zeros((), dtype=xp.int64)
    _check_block()
    scale, has_scale = _per_agent(xp, speed_scale, n, tables)
    if fields is not None and tables.has_chemotaxis:
        field_array, has_fields = xp.ascontiguousarray(fields, dtype=xp.float32).reshape(-1), 1
    else:
        field_array, has_fields = tables.placeholder_f32, 0
    if integrity is not None:
        integrity_array, has_integrity = xp.ascontiguousarray(integrity, dtype=xp.float32).reshape(-1), 1
    else:
        integrity_array, has_integrity = tables.placeholder_f32, 0
    target, priority, direction = _scratch(xp, n)
    k0, k1, step_word = _key(movement, step)
    nz, ny, nx = store.shape
    columns = store._columns
    launch(MODULE, "move_propose", _grid(n), (_BLOCK,),
           (columns["id"][:n], columns["kind"][:n], columns["_padded_index"][:n], store.padded_occupancy.reshape(-1),
            tables.labels, tables.hop_rate, scale, has_scale, tables.move_allowed, tables.offsets,
            int(tables.offsets.shape[0]), tables.chemotaxis_field, tables.chemotaxis_chi, field_array, has_fields,
            integrity_array, has_integrity, movement.bbb_hill, nz, ny, nx, k0, k1, step_word, rng.purpose_id("move"),
            rng.purpose_id("bbb_cross"), target, priority, direction, movement._scratch, n))  # fmt: skip
    return _resolve_and_apply(movement, launch, target, priority, direction).sum()


def transmigrate(
    movement: Movement, step: int, extravasation_scale: Any, intravasation_scale: Any, launch: kernels.Launcher
) -> tuple[Any, Any]:
    """:meth:`Movement.transmigrate` by kernels; returns (to tissue, to blood) as 0-d device arrays."""
    store, xp, tables = movement.store, movement.xp, _tables(movement)
    n = store.n
    if n == 0:
        zero = xp.zeros((), dtype=xp.int32)
        return zero, zero
    out_scale, has_out = _per_agent(xp, extravasation_scale, n, tables)
    in_scale, has_in = _per_agent(xp, intravasation_scale, n, tables)
    _check_block()
    target, priority, direction = _scratch(xp, n)
    k0, k1, step_word = _key(movement, step)
    columns = store._columns
    launch(MODULE, "wall_propose", _grid(n), (_BLOCK,),
           (columns["id"][:n], columns["kind"][:n], columns["_padded_index"][:n], store.padded_occupancy.reshape(-1),
            tables.wall_labels, tables.p_out, tables.p_in, out_scale, has_out, in_scale, has_in, tables.wall_allowed,
            tables.offsets, int(tables.offsets.shape[0]), k0, k1, step_word, rng.purpose_id("transmigrate"), target,
            priority, direction, movement._scratch, n))  # fmt: skip
    moved = _resolve_and_apply(movement, launch, target, priority, direction)
    return moved[TISSUE], moved[BLOOD]


def divide(movement: Movement, selection: Any, step: int, purpose: str, launch: kernels.Launcher) -> tuple[Any, Any]:
    """:meth:`Movement.divide` by kernels; one documented host read (how many daughters)."""
    store, xp, tables = movement.store, movement.xp, _tables(movement)
    n = store.n
    empty = xp.zeros(0, dtype=xp.int64)
    if n == 0:
        return empty, empty
    selected = xp.ascontiguousarray(store._as_mask(selection), dtype=xp.uint8)
    target, priority, direction = _scratch(xp, n)
    win = xp.empty(n, dtype=xp.uint8)  # resolve_claims writes every element
    k0, k1, step_word = _key(movement, step)
    columns = store._columns
    launch(MODULE, "divide_propose", _grid(n), (_BLOCK,),
           (columns["id"][:n], columns["kind"][:n], columns["_padded_index"][:n], selected,
            store.padded_occupancy.reshape(-1), tables.labels, tables.place_allowed, tables.offsets,
            int(tables.offsets.shape[0]), k0, k1, step_word, rng.purpose_id(purpose), target, priority, direction,
            movement._scratch, n))  # fmt: skip
    launch(MODULE, "resolve_claims", _grid(n), (_BLOCK,), (target, priority, movement._scratch, win, n))
    winners = win.astype(bool)
    count = int(store.backend.to_host(winners.sum(), "agents: divisions"))
    if count == 0:
        return empty, empty
    # the winners' slots by a scan (no boolean indexing, which reads its size on the host),
    # then only these put in the order of their ids (daughters' ids follow it), as the NumPy path
    slots = xp.empty(count + 1, dtype=xp.int64)
    slots[xp.where(winners, xp.cumsum(winners) - 1, count)] = xp.arange(n, dtype=xp.int64)
    slots = slots[:count]
    parents = slots[xp.argsort(columns["id"][:n][slots])]
    position = columns["position"][:n][parents] + tables.offsets3[direction[parents]]
    daughters = store.copy_rows(parents, position, check=False)
    return parents, daughters
