"""The systemic blood pool: a well-mixed compartment that the lattice's blood voxels exchange with.

Owns :class:`BloodPool`, which wraps a :class:`~carabm.engine.fields.FieldSolver` so that
serum concentrations (pg/mL) mean what they mean clinically.

Representative-volume scaling: the lattice stands for a fraction ``scale`` of the patient
(e.g. lattice volume / body volume), so the rest of that fraction's blood is a pool of
``pool_volume_ml = blood_volume_ml * scale``. Serum is reported as the pool's concentration.

Per step of ``dt`` (Lie splitting, first order): (1) blood voxels and pool exchange and are
cleared, implicitly and together; (2) the solver steps sources, uptake, decay and diffusion;
(3) the voxels with a capillary bed trade with the pool across its wall (optional, below).
Exchange: each blood voxel (volume ``v``) trades mass with the pool at
``k_ex * v * (c_voxel - C_pool)`` (default ``k_ex`` = 1/min: cardiac output ~5 L/min over a
blood volume of ~5 L). Clearance ``k_cl = ln 2 / half_life`` acts on all systemic blood —
pool and blood voxels alike — so the serum half-life holds whatever share of the blood the
lattice holds. The backward-Euler exchange conserves total mass (voxels + pool) exactly,
apart from clearance, which removes the factor ``1/(1 + k_cl dt)`` per step.

Weighted blood voxels (``blood_weight``): a lattice can hold organs that do not scale with the
tumour. Each blood voxel's trade with the pool counts ``w`` times in the pool's mass balance
(``w = 1``: the lattice's share ``scale``; the brain's vessel of a lattice whose CNS stands for
the patient's whole brain: ``w = scale / brain share``). The voxels' own update is unchanged;
the pool's closed form uses ``sum(w c)`` and ``sum(w)`` in place of ``sum(c)`` and ``n``, so mass
is conserved with each voxel's mass counted ``w`` times. One sum per distinct weight (a few).

Capillary bed (``capillary_mask``, ``capillary_rate_per_s``): tissue holds capillaries every
few cell diameters, far more wall than a lattice resolves, so the tissue's exchange with serum is
spread over its voxels: each voxel of the mask trades with the pool at ``k = P S/V`` (wall
permeability times capillary area per tissue volume, 1/s, per field). Step (3) moves
``min(1, k dt) (c - C)`` of each such voxel's level ``c`` to the pool (``C`` the serum), from the
level the diffusion solve leaves, never passing the serum level; what leaves the voxels enters the
pool, cleared over the step like the pool's own sources (conserving mass apart from clearance). ``k dt``
is small (0.007 at 6-minute steps with carabm's defaults), so where in the step it sits matters little. The
caller closes lattice blood that is not meant to diffuse into tissue (conductance 0): free
diffusion into a one-voxel sink is stiff (``D dt / dx²`` ~ 100), and no splitting of it into the
exchange and the diffusion solves converges in the step (docs/model.md, "Time step").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from carabm.engine.backend import launcher_for
from carabm.engine.fields import FieldSolver

#: blood turnover by the circulation, 1/s (cardiac output ~5 L/min over ~5 L of blood)
DEFAULT_EXCHANGE_PER_S = 1.0 / 60.0
#: most distinct ``blood_weight`` values (each costs one sum over its voxels per step)
MAX_BLOOD_WEIGHTS = 8


# ---------------------------------------------------------------------------------------
# CUDA kernels (kernels/blood_exchange.cu); ``launch`` is carabm.engine.kernels.launch.

#: threads per block; must equal BLOCK in kernels/blood_exchange.cu (checked at first use)
_BLOCK = 256
#: at most this many partial sums per field (a fixed count keeps the summation order, and
#: so the bits, independent of anything but the number of blood voxels)
_MAX_PARTIALS = 1024


def _check_block() -> None:
    from carabm.engine.kernels import source_info  # noqa: PLC0415

    block = source_info("blood_exchange").constants.get("BLOCK")
    if block != _BLOCK:
        from carabm.errors import KernelError  # noqa: PLC0415

        raise KernelError(f"blood_exchange.cu: BLOCK is {block}, blood_pool.py launches {_BLOCK} threads per block")


def blood_sums_kernels(fields: Any, index: Any, launch: Any) -> Any:
    """Per-field float64 sums of ``fields[k].flat[index]`` (``index`` int32), deterministic, on the device."""
    _check_block()
    xp = _array_module(fields)
    n_fields = fields.shape[0]
    per_field = int(np.prod(fields.shape[1:]))
    n_index = int(index.size)
    n_partials = max(1, min(_MAX_PARTIALS, (n_index + _BLOCK - 1) // _BLOCK))
    partials = xp.empty((n_fields, n_partials), dtype=np.float64)
    sums = xp.empty(n_fields, dtype=np.float64)
    launch(
        "blood_exchange", "blood_partial_sums", (n_partials, n_fields), (_BLOCK,), (fields, index, partials, n_index, per_field)
    )
    launch("blood_exchange", "blood_sum_partials", (n_fields,), (_BLOCK,), (partials, sums, n_partials))
    return sums


def blood_update_kernels(fields: Any, index: Any, add: Any, q: Any, launch: Any) -> None:
    """``fields[k].flat[index] = (fields[k].flat[index] + add[k]) / q[k]`` in place (float32 ``add``, ``q``)."""
    n_index = int(index.size)
    per_field = int(np.prod(fields.shape[1:]))
    grid = ((n_index + _BLOCK - 1) // _BLOCK, fields.shape[0])
    launch("blood_exchange", "blood_update", grid, (_BLOCK,), (fields, index, add, q, n_index, per_field))


def _array_module(array: Any) -> Any:
    from carabm.engine.backend import array_backend  # noqa: PLC0415

    return array_backend(array).xp


class BloodPool:
    """A well-mixed systemic pool (one concentration per field) coupled to the lattice's blood voxels.

    Parameters
    ----------
    solver:
        The field solver whose fields the blood voxels belong to.
    blood_mask:
        Boolean ``[nz, ny, nx]``: the voxels that exchange with the pool (label BLOOD).
    blood_volume_ml:
        The patient's blood volume in mL.
    scale:
        Fraction of the patient the lattice represents (0 < scale); the pool volume is
        ``blood_volume_ml * scale`` mL.
    half_life_s:
        Serum half-life per field in s (``inf`` for none).
    exchange_per_s:
        Exchange rate constant between a blood voxel and the pool, 1/s.
    serum_pg_ml:
        Initial pool concentrations per field (default 0).
    capillary_mask:
        Optional boolean ``[nz, ny, nx]``: the voxels that hold a capillary bed.
    capillary_rate_per_s:
        Their exchange rate with the pool per field, ``P S/V`` [1/s]; required with ``capillary_mask``.
    blood_weight:
        Optional float ``[nz, ny, nx]``: how many times each blood voxel's trade counts in the
        pool (> 0 at every blood voxel, at most ``MAX_BLOOD_WEIGHTS`` distinct values; default 1).
    """

    def __init__(
        self,
        solver: FieldSolver,
        blood_mask: Any,
        blood_volume_ml: float,
        scale: float,
        half_life_s: Sequence[float],
        exchange_per_s: float = DEFAULT_EXCHANGE_PER_S,
        serum_pg_ml: Sequence[float] | None = None,
        capillary_mask: Any = None,
        capillary_rate_per_s: Sequence[float] | None = None,
        blood_weight: Any = None,
    ) -> None:
        self.solver = solver
        xp = solver.backend.xp
        mask = np.asarray(solver.backend.asnumpy(blood_mask), dtype=bool)
        if mask.shape != solver.shape:
            raise ValueError(f"blood_mask: expected shape {solver.shape}, got {mask.shape}")
        if not (blood_volume_ml > 0 and scale > 0 and math.isfinite(blood_volume_ml * scale)):
            raise ValueError(f"blood_volume_ml and scale: must be > 0, got {blood_volume_ml} and {scale}")
        if not (exchange_per_s >= 0 and math.isfinite(exchange_per_s)):
            raise ValueError(f"exchange_per_s: must be finite and >= 0, got {exchange_per_s}")
        half_life = np.atleast_1d(np.asarray(half_life_s, dtype=np.float64))
        if half_life.shape != (solver.n_fields,) or np.any(~(half_life > 0)):
            raise ValueError(f"half_life_s: one value > 0 per field ({solver.n_fields}), got {half_life.tolist()}")
        self.pool_volume_ml = float(blood_volume_ml) * float(scale)
        self.voxel_volume_ml = solver.voxel_um**3 * 1e-12
        self.exchange_per_s = float(exchange_per_s)
        self.clearance_per_s = np.where(np.isinf(half_life), 0.0, math.log(2.0) / half_life)
        self.blood_index = xp.asarray(np.flatnonzero(mask.ravel()))
        self.n_blood = int(mask.sum())
        initial = np.zeros(solver.n_fields) if serum_pg_ml is None else np.asarray(serum_pg_ml, dtype=np.float64)
        if initial.shape != (solver.n_fields,) or np.any(~(initial >= 0)):
            raise ValueError(f"serum_pg_ml: one value >= 0 per field, got {initial.tolist()}")
        self._serum = xp.asarray(initial, dtype=np.float64)
        self._blood_index_i32: Any = None  # the kernels' int32 copy of blood_index, made at first use
        self._capillary_positions_i32: Any = None  # the bed's voxels (int32) for the kernels' sum of the capillary transfer
        self._systemic: dict[str, np.ndarray] = {}  # named productions straight into the pool [pg/mL/s per field]
        self._set_capillaries(capillary_mask, capillary_rate_per_s)
        self._set_blood_weights(mask, blood_weight)

    def _set_blood_weights(self, mask: np.ndarray, weight: Any) -> None:
        """The blood voxels grouped by the weight of their trade with the pool: ``[(w, flat indices)]`` and ``sum(w)``."""
        solver = self.solver
        self._blood_groups_i32: list[Any] | None = None  # the kernels' int32 copies, made at first use
        self._unweighted = weight is None
        if weight is None:
            self.blood_groups: list[tuple[float, Any]] = [(1.0, self.blood_index)]
            self.blood_weight_sum = float(self.n_blood)
            return
        weight = np.asarray(solver.backend.asnumpy(weight), dtype=np.float64)
        if weight.shape != solver.shape:
            raise ValueError(f"blood_weight: expected shape {solver.shape}, got {weight.shape}")
        flat = np.flatnonzero(mask.ravel())
        at_blood = weight.ravel()[flat]
        if not np.all(np.isfinite(at_blood) & (at_blood > 0)):
            raise ValueError("blood_weight: must be finite and > 0 at every blood voxel")
        values = np.unique(at_blood)
        if values.size > MAX_BLOOD_WEIGHTS:
            raise ValueError(f"blood_weight: at most {MAX_BLOOD_WEIGHTS} distinct values at the blood voxels (one sum each), got {values.size}")
        self.blood_groups = [(float(w), solver.backend.xp.asarray(flat[at_blood == w])) for w in values]
        self.blood_weight_sum = float(sum(w * int(np.count_nonzero(at_blood == w)) for w in values))

    def _weighted_blood_sum(self, fields: Any, flat: Any, launch: Any, gathered: Any = None) -> Any:
        """``sum(w c)`` over the blood voxels per field (float64 ``[K]``), one sum per weight.

        ``gathered``: ``flat[:, blood_index]`` already taken on the host path, summed as it is when
        every weight is 1 (no second gather).
        """
        xp = self.solver.backend.xp
        if launch is None and gathered is not None and self._unweighted:
            return gathered.sum(axis=1, dtype=np.float64)
        if launch is not None:
            if self._blood_groups_i32 is None:
                self._blood_groups_i32 = [xp.asarray(index, dtype=np.int32) for _, index in self.blood_groups]
            sums = [blood_sums_kernels(fields, index, launch) for index in self._blood_groups_i32]
        else:
            sums = [flat[:, index].sum(axis=1, dtype=np.float64) for _, index in self.blood_groups]
        total = sums[0] * self.blood_groups[0][0]
        for (w, _), part in zip(self.blood_groups[1:], sums[1:], strict=True):
            total = total + w * part
        return total

    def _set_capillaries(self, mask: Any, rate_per_s: Sequence[float] | None) -> None:
        """The capillary voxels' flat indices and their exchange rates per field (``[K]`` float64 host, 1/s)."""
        solver = self.solver
        self._capillary_fraction: dict[float, Any] = {}  # per step size: min(1, k dt) [K, 1] in the fields' dtype, 1 + k_cl dt [K]
        self.capillary_rate_per_s = np.zeros(solver.n_fields)
        if mask is None:
            if rate_per_s is not None:
                raise ValueError("capillary_rate_per_s: given without capillary_mask")
            self.capillary_index, self.n_capillary = solver.backend.xp.zeros(0, dtype=np.int64), 0
            return
        mask = np.asarray(solver.backend.asnumpy(mask), dtype=bool)
        if mask.shape != solver.shape:
            raise ValueError(f"capillary_mask: expected shape {solver.shape}, got {mask.shape}")
        rate = np.atleast_1d(np.asarray(rate_per_s if rate_per_s is not None else [], dtype=np.float64))
        if rate.shape != (solver.n_fields,) or not np.all(np.isfinite(rate)) or np.any(rate < 0):
            raise ValueError(f"capillary_rate_per_s: one finite value >= 0 per field ({solver.n_fields}) required with "
                             f"capillary_mask, got {rate.tolist()}")  # fmt: skip
        self.capillary_rate_per_s = rate
        self.capillary_index = solver.backend.xp.asarray(np.flatnonzero(mask.ravel()))
        self.n_capillary = int(mask.sum())
        self._capillary_mask = solver.backend.xp.asarray(mask.ravel(), dtype=solver.dtype)  # 1 in the bed, 0 elsewhere
        self._capillary_scratch: Any = None  # [K, n_voxels] in the fields' dtype: what moves this step

    @property
    def _serum(self) -> Any:
        """Pool concentrations on the backend (float64 ``[K]``); assigning forgets the host copy."""
        return self._serum_device

    @_serum.setter
    def _serum(self, value: Any) -> None:
        self._serum_device = value
        self._serum_host: np.ndarray | None = None

    @property
    def serum_pg_ml(self) -> np.ndarray:
        """Pool (serum) concentration per field in pg/mL, on the host.

        A documented read on a GPU ("blood pool: serum"), made at most once per change of
        the pool (it changes only in :meth:`exchange`), so once per step however often asked.
        """
        if self._serum_host is None:
            self._serum_host = self.solver.backend.to_host(self._serum, "blood pool: serum")
        return self._serum_host.copy()

    @serum_pg_ml.setter
    def serum_pg_ml(self, values: Sequence[float]) -> None:
        self._serum = self.solver.backend.xp.asarray(np.asarray(values, dtype=np.float64).reshape(self.solver.n_fields))

    def balancing_production(self, levels_pg_ml: Sequence[float]) -> np.ndarray:
        """Production into the pool [pg/mL/s per field] that balances serum clearance at ``levels_pg_ml``."""
        levels = np.asarray(levels_pg_ml, dtype=np.float64).reshape(self.solver.n_fields)
        return levels * self.clearance_per_s

    def set_systemic_source(self, name: str, pg_ml_s: Sequence[float]) -> None:
        """A named production straight into the pool (host, pg/mL/s per field): sources outside the lattice.

        Held until set again and added at every :meth:`step` (summed in the order first set);
        not checkpointed: its owner sets it at set-up or anew each step before the field step.
        """
        values = np.asarray(pg_ml_s, dtype=np.float64).reshape(self.solver.n_fields)
        if np.any(~np.isfinite(values)):
            raise ValueError(f"systemic source {name!r}: finite values per field, got {values.tolist()}")
        self._systemic[name] = values

    def systemic_sources(self) -> np.ndarray | None:
        """The sum of the named systemic sources [pg/mL/s per field], None when none is set."""
        if not self._systemic:
            return None
        total = np.zeros(self.solver.n_fields)
        for values in self._systemic.values():
            total = total + values
        return total

    def checkpoint_state(self) -> dict[str, Any]:
        """The serum concentrations [pg/mL] (host float64)."""
        return {"serum_pg_ml": np.array(self.serum_pg_ml, dtype=np.float64)}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the serum of :meth:`checkpoint_state`."""
        self.serum_pg_ml = state["serum_pg_ml"]

    def total_mass_pg(self, fields: Any) -> np.ndarray:
        """Mass per field in pg: lattice (all voxels, fields in pg/mL; blood voxels counted with their weight) plus pool."""
        lattice = self.solver.total(fields)
        flat = fields.reshape(self.solver.n_fields, -1)
        for weight, index in self.blood_groups:
            if weight != 1.0:
                lattice = lattice + (weight - 1.0) * self.solver.backend.asnumpy(flat[:, index].sum(axis=1, dtype=np.float64))
        return lattice * self.voxel_volume_ml + self.serum_pg_ml * self.pool_volume_ml

    def exchange(self, fields: Any, dt_s: float, pool_sources_pg_ml_s: Any = None, launch: Any = None) -> Any:
        """Implicit exchange + clearance of blood voxels and pool over ``dt_s`` (fields in place).

        With ``a = k_ex dt``, ``b = k_cl dt``, ``q = 1 + a + b`` and ``n`` blood voxels, the
        backward-Euler system is solved in closed form::

            C' (V (1 + b) + a v n (1 - a/q)) = V (C + dt P) + (a v / q) * sum(c)
            c' = (c + a C') / q

        ``pool_sources_pg_ml_s`` (``P``, per field) adds mass straight into the pool. With
        ``blood_weight``, ``n`` is ``sum(w)`` and ``sum(c)`` is ``sum(w c)``. ``launch``: a kernel
        launcher that wins over the fields' own (e.g. the tests' host emulation).
        """
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s: must be > 0, got {dt_s}")
        xp = self.solver.backend.xp
        a = self.exchange_per_s * dt_s
        b = xp.asarray(self.clearance_per_s * dt_s)
        q = 1.0 + a + b
        pool = self.pool_volume_ml
        v = self.voxel_volume_ml
        flat = fields.reshape(self.solver.n_fields, -1)
        inflow = self._serum if pool_sources_pg_ml_s is None else self._serum + dt_s * xp.asarray(pool_sources_pg_ml_s)
        if self.n_blood == 0:
            self._serum = inflow / (1.0 + b)
            return fields
        launch = launcher_for(fields, launch) if fields.dtype == np.float32 else None
        if launch is not None:
            if self._blood_index_i32 is None:
                self._blood_index_i32 = xp.asarray(self.blood_index, dtype=np.int32)
            blood_sum = self._weighted_blood_sum(fields, flat, launch)
        else:
            blood = flat[:, self.blood_index]
            blood_sum = self._weighted_blood_sum(fields, flat, None, gathered=blood)
        weights = self.blood_weight_sum
        serum = (pool * inflow + (a * v / q) * blood_sum) / (pool * (1.0 + b) + a * v * weights * (1.0 - a / q))
        self._serum = serum
        add = (a * serum).astype(fields.dtype)
        q_cast = q.astype(fields.dtype)
        if launch is not None:
            blood_update_kernels(fields, self._blood_index_i32, add, q_cast, launch)
        else:
            flat[:, self.blood_index] = (blood + add[:, None]) / q_cast[:, None]
        return fields

    def capillary_exchange(self, fields: Any, dt_s: float, launch: Any = None) -> Any:
        """Move ``min(1, k dt) (c - C)`` from each capillary voxel to the pool (``fields`` in place; see the module's docstring).

        Negative where the serum is above the voxel's level: the pool feeds the tissue. The sum
        over voxels is float64 (on a GPU, the blood exchange's deterministic kernel; ``launch``:
        a kernel launcher that wins over the fields' own, e.g. the tests' host emulation).
        """
        if self.n_capillary == 0:
            return fields
        xp = self.solver.backend.xp
        cached = self._capillary_fraction.get(dt_s)
        if cached is None:
            if len(self._capillary_fraction) >= 8:
                self._capillary_fraction.clear()
            # the share moved per step, and the pool's backward-Euler clearance factor 1 + k_cl dt (float64)
            cached = (xp.asarray(np.minimum(self.capillary_rate_per_s * dt_s, 1.0)[:, None], dtype=fields.dtype),
                      xp.asarray(1.0 + self.clearance_per_s * dt_s))  # fmt: skip
            self._capillary_fraction[dt_s] = cached
        fraction, clearance = cached
        flat = fields.reshape(self.solver.n_fields, -1)
        # dense over the lattice, zero off the bed (a gather and a scatter of the bed's voxels cost ~4x as much on the CPU)
        moved = self._capillary_scratch
        if moved is None or moved.shape != flat.shape or moved.dtype != flat.dtype:
            moved = self._capillary_scratch = xp.empty_like(flat)
        xp.subtract(flat, self._serum.astype(fields.dtype)[:, None], out=moved)
        moved *= self._capillary_mask.astype(fields.dtype, copy=False)[None, :]
        moved *= fraction
        flat -= moved
        launch = launcher_for(fields, launch) if fields.dtype == np.float32 else None
        if launch is not None:
            if self._capillary_positions_i32 is None:
                self._capillary_positions_i32 = xp.asarray(self.capillary_index, dtype=np.int32)
            total = blood_sums_kernels(moved, self._capillary_positions_i32, launch)
        else:
            total = moved.sum(axis=1, dtype=np.float64)
        # cleared with the pool's backward-Euler factor, as the pool's own sources are in exchange(): added
        # uncleared, the steady serum would be too high by 1 + k_cl dt (18 % at 12-min steps for IL-6)
        self._serum = self._serum + total * (self.voxel_volume_ml / self.pool_volume_ml) / clearance
        return fields

    def step(self, fields: Any, dt_s: float, sources: Any = None, uptake: Any = None, pool_sources_pg_ml_s: Any = None) -> Any:
        """Exchange with the pool, one solver step, then the capillary bed; ``fields`` updated in place and returned.

        ``pool_sources_pg_ml_s`` defaults to the systemic sources (:meth:`set_systemic_source`).
        """
        if pool_sources_pg_ml_s is None:
            pool_sources_pg_ml_s = self.systemic_sources()
        self.exchange(fields, dt_s, pool_sources_pg_ml_s)
        self.solver.step(fields, dt_s, sources, uptake)
        return self.capillary_exchange(fields, dt_s)
