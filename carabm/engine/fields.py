"""Diffusing, decaying scalar fields on the lattice: an implicit LOD solver, stable at minute steps.

Owns :class:`FieldSolver` (one step of sources, uptake, decay and diffusion with BBB face
conductances) and the per-operation dispatch to its NumPy/CuPy (``xp``) and numba twins.

Method (as BioFVM, Ghaffarizadeh et al. 2016, Bioinformatics 32:1256). Per step of ``dt``:

1. local implicit reaction, voxel by voxel:
   ``c <- (c + dt*S) / (1 + dt*(decay + U))``;
2. three backward-Euler 1D diffusion solves, one per axis (z, then y, then x:
   locally one-dimensional splitting): ``(I - dt*D*L_axis) c_new = c``,
   each a tridiagonal system solved for all lines at once (Thomas algorithm).

Every factor is an M-matrix with unit column sums, so the step is unconditionally stable,
maps non-negative fields (and non-negative ``S``, ``U``) to non-negative fields, and
conserves mass exactly apart from decay, uptake and sources. The splitting error is first
order in ``dt``. Units: length µm, time s, ``D`` in µm²/s, ``decay`` and ``U`` in 1/s,
``S`` in concentration/s (any concentration unit; carabm uses pg/mL).

Face conductance: a voxel's conductance ``g`` in 0..1 scales the flux through its faces
(BBB integrity). The face between voxels ``i`` and ``j`` gets the harmonic mean
``2 g_i g_j / (g_i + g_j)`` (0 when both are 0), i.e. the face coefficient is
``D*dt/dx² * 2 g_i g_j / (g_i + g_j)``. Why: each half voxel is a resistance ``dx/(2 D g)``
and the two halves are in series, exactly the finite-volume flux for a piecewise constant
diffusivity ``D g``; a voxel with ``g = 0`` therefore blocks all of its faces, and the flux
through a BBB layer of integrity ``g`` scales like ``g`` (``g (m+1)/(m+g)`` for a layer ``m``
voxels thick between open voxels).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from carabm.engine.backend import Backend, get_backend, launcher_for, on_device

CPU_IMPLS = ("auto", "numpy", "numba")


def numba_available() -> bool:
    """True when numba (and so the compiled CPU sweeps) can be imported."""
    try:
        import carabm.engine._fields_numba  # noqa: F401, PLC0415
    except Exception:  # ImportError or a broken numba/llvmlite install
        return False
    return True


def face_conductance(g_lo: Any, g_hi: Any, xp: Any = np) -> Any:
    """Harmonic mean ``2 g_lo g_hi / (g_lo + g_hi)`` of two voxel conductances; 0 when both are 0."""
    total = g_lo + g_hi
    open_face = total > 0
    return xp.where(open_face, (2 * g_lo * g_hi) / xp.where(open_face, total, 1), 0).astype(g_lo.dtype, copy=False)


# ---------------------------------------------------------------------------------------
# xp implementation (NumPy; CuPy for float64): sweep axis outermost, one field at a time
# so that scratch stays at one field's size. The reference the CUDA kernels match.


def _axis_first(field: Any, axis: int) -> Any:
    """View of a 3D field with ``axis`` first (x needs a copy; see :func:`_sweep_xp`)."""
    return field if axis == 0 else field.transpose(1, 0, 2)


def _faces_axis_first(g: Any, axis: int, xp: Any) -> Any:
    """Face conductances ``[n-1, ...]`` along ``axis`` of a 3D conductance, axis-first layout."""
    ga = g.transpose((axis,) + tuple(a for a in range(3) if a != axis))
    return xp.ascontiguousarray(face_conductance(ga[:-1], ga[1:], xp))


def _uniform_thomas_factors(n: int, alpha: float) -> tuple[list[float], list[float]]:
    """Thomas factors (``w``, ``1/pivot``) of ``(I - alpha L)`` with no-flux ends (host, float64)."""
    w, inv = [0.0] * n, [0.0] * n
    u_prev = 0.0  # u = 1 - w, carried without cancellation
    for i in range(n):
        lower = alpha if i > 0 else 0.0
        upper = alpha if i < n - 1 else 0.0
        inv[i] = 1.0 / (1.0 + upper + lower * u_prev)
        w[i] = upper * inv[i]
        u_prev = (1.0 + lower * u_prev) * inv[i]
    return w, inv


def _thomas_xp(v: Any, faces: Any, alpha: float, scratch: dict[str, Any], xp: Any) -> None:
    """Solve ``(I - alpha L_faces) x = v`` along axis 0 of ``v`` in place; ``faces=None`` means all 1."""
    n = v.shape[0]
    if n < 2 or alpha == 0:
        return
    tmp = scratch["tmp"]
    if faces is None:
        w, inv = _uniform_thomas_factors(n, alpha)
        v[0] *= inv[0]
        for i in range(1, n):
            xp.multiply(v[i - 1], alpha, out=tmp)
            v[i] += tmp
            v[i] *= inv[i]
        for i in range(n - 2, -1, -1):
            xp.multiply(v[i + 1], w[i], out=tmp)
            v[i] += tmp
        return
    # u = 1 - w (w: the Thomas upper factor) is carried instead of w: the pivot needs 1 - w,
    # which cancels badly in float32 when alpha is large; u is formed without cancellation.
    u_all, lower, upper, pivot = scratch["w"], scratch["lower"], scratch["upper"], scratch["pivot"]
    xp.multiply(faces[0], alpha, out=upper)
    xp.add(upper, 1, out=pivot)
    xp.divide(1, pivot, out=u_all[0])
    v[0] /= pivot
    for i in range(1, n):
        lower, upper = upper, lower  # this row's lower face is the previous row's upper face
        if i < n - 1:
            xp.multiply(faces[i], alpha, out=upper)
        else:
            upper.fill(0)
        u_row = u_all[i]
        xp.multiply(u_all[i - 1], lower, out=u_row)
        u_row += 1  # 1 + lower * u[i-1]
        xp.add(u_row, upper, out=pivot)
        u_row /= pivot
        xp.multiply(v[i - 1], lower, out=tmp)
        v[i] += tmp
        v[i] /= pivot
    for i in range(n - 2, -1, -1):
        xp.subtract(1, u_all[i], out=tmp)
        tmp *= v[i + 1]
        v[i] += tmp


def _sweep_xp(field: Any, axis: int, faces: Any, alpha: float, scratch: dict[str, Any], xp: Any) -> None:
    """One implicit 1D diffusion solve of a 3D field along ``axis``, in place."""
    if axis < 2:
        _thomas_xp(_axis_first(field, axis), faces, alpha, scratch[axis], xp)
        return
    # x is the contiguous axis: solve on a contiguous x-first copy so each step of the
    # recurrence touches whole contiguous planes instead of a strided column.
    buf = scratch["xbuf"]
    buf[...] = field.transpose(2, 0, 1)
    _thomas_xp(buf, faces, alpha, scratch[axis], xp)
    field[...] = buf.transpose(1, 2, 0)


def _make_scratch_xp(shape: tuple[int, int, int], dtype: Any, xp: Any) -> dict[Any, Any]:
    nz, ny, nx = shape
    scratch: dict[Any, Any] = {"xbuf": xp.empty((nx, nz, ny), dtype=dtype), "vol": xp.empty(shape, dtype=dtype)}
    for axis, plane in ((0, (ny, nx)), (1, (nz, nx)), (2, (nz, ny))):
        n = shape[axis]
        scratch[axis] = {
            "tmp": xp.empty(plane, dtype=dtype),
            "lower": xp.empty(plane, dtype=dtype),
            "upper": xp.empty(plane, dtype=dtype),
            "pivot": xp.empty(plane, dtype=dtype),
            "w": xp.empty((n,) + plane, dtype=dtype),
        }
    return scratch


def _lod_step_xp(solver: FieldSolver, c: Any, dt_s: float, sources: Any, uptake: Any) -> Any:
    xp = solver.backend.xp
    if solver._scratch is None:
        solver._scratch = _make_scratch_xp(solver.shape, solver.dtype, xp)
    scratch = solver._scratch
    vol = scratch["vol"]
    g = solver._conductance
    shared_faces = solver._faces_cache if g is not None and g.shape[0] == 1 else None
    for k in range(solver.n_fields):
        field = c[k]
        if sources is not None:
            xp.multiply(sources[k], dt_s, out=vol)
            field += vol
        base = 1.0 + dt_s * float(solver.decay_per_s[k])
        if uptake is not None:
            xp.multiply(uptake[k], dt_s, out=vol)
            vol += base
            field /= vol
        else:
            field /= base
        alpha = dt_s * float(solver.diffusion_um2_s[k]) / solver.voxel_um**2
        for axis in range(3):
            if g is None:
                faces = None
            elif shared_faces is not None:
                faces = shared_faces[axis]
            else:
                faces = _faces_axis_first(g[k], axis, xp)
            _sweep_xp(field, axis, faces, alpha, scratch, xp)
    return c


def _lod_step_numba(solver: FieldSolver, c: Any, dt_s: float, sources: Any, uptake: Any) -> Any:
    from carabm.engine import _fields_numba  # noqa: PLC0415

    alpha = (dt_s * solver.diffusion_um2_s / solver.voxel_um**2).astype(solver.dtype)
    decay = solver.decay_per_s.astype(solver.dtype)
    return _fields_numba.lod_step(c, sources, uptake, dt_s, decay, alpha, solver._conductance)


# ---------------------------------------------------------------------------------------
# CUDA kernels (kernels/diffusion_lod.cu): three launches per step for all K fields.

#: threads per block of the z and y sweeps (one thread per line)
_LINE_BLOCK = 128


def _kernel_constants(solver: FieldSolver, dt_s: float) -> dict[str, Any]:
    """Per-field alpha, reaction denominators and uniform Thomas factors for ``dt_s``, on the device.

    Computed in float64 on the host and rounded to float32 once, exactly as the NumPy path
    rounds its Python-float scalars; cached per ``dt_s`` (a run uses one or two step sizes).
    """
    cache = solver._kernel_cache.setdefault("dt", {})
    xp = solver.backend.xp
    alpha = dt_s * solver.diffusion_um2_s / solver.voxel_um**2
    if dt_s not in cache:
        if len(cache) >= 8:
            cache.clear()
        base = 1.0 + dt_s * solver.decay_per_s
        cache[dt_s] = {"alpha": xp.asarray(alpha, dtype=np.float32), "base": xp.asarray(base, dtype=np.float32)}
    entry = cache[dt_s]
    if solver._conductance is None and "w0" not in entry:
        for axis, n in enumerate(solver.shape):
            factors = [_uniform_thomas_factors(n, float(a)) for a in alpha]
            entry[f"w{axis}"] = xp.asarray(np.array([f[0] for f in factors], dtype=np.float32))
            entry[f"inv{axis}"] = xp.asarray(np.array([f[1] for f in factors], dtype=np.float32))
    return cache[dt_s]


def _lod_step_kernels(solver: FieldSolver, c: Any, dt_s: float, sources: Any, uptake: Any, launch: Callable[..., None]) -> Any:
    """One LOD step through the CUDA kernels, float32 only; ``launch`` is :func:`carabm.engine.kernels.launch`.

    The order is the NumPy path's: reaction and z, then y, then x (fields are independent,
    so doing each sweep for all fields at once changes no result).
    """
    from carabm.engine.kernels import source_info  # noqa: PLC0415

    xp = solver.backend.xp
    nz, ny, nx = solver.shape
    n_fields = solver.n_fields
    tile = source_info("diffusion_lod").constants
    consts = _kernel_constants(solver, dt_s)
    placeholder = solver._kernel_cache.setdefault("placeholder", xp.zeros(1, dtype=np.float32))
    g = solver._conductance
    has_g = g is not None
    if has_g and solver._kernel_cache.get("u") is None:
        solver._kernel_cache["u"] = xp.empty(c.shape, dtype=np.float32)
    u = solver._kernel_cache["u"] if has_g else placeholder
    g_arg = g if has_g else placeholder
    n_g = int(g.shape[0]) if has_g else 1
    w = [placeholder if has_g else consts[f"w{axis}"] for axis in range(3)]
    inv = [placeholder if has_g else consts[f"inv{axis}"] for axis in range(3)]
    sizes = (n_fields, nz, ny, nx, n_g, int(has_g))

    lines = n_fields * ny * nx
    launch(
        "diffusion_lod",
        "react_sweep_z",
        ((lines + _LINE_BLOCK - 1) // _LINE_BLOCK,),
        (_LINE_BLOCK,),
        (c, u, g_arg, placeholder if sources is None else sources, placeholder if uptake is None else uptake,
         consts["alpha"], consts["base"], w[0], inv[0], *sizes, int(sources is not None), int(uptake is not None), dt_s),
    )  # fmt: skip
    if ny > 1:
        lines = n_fields * nz * nx
        launch(
            "diffusion_lod",
            "sweep_y",
            ((lines + _LINE_BLOCK - 1) // _LINE_BLOCK,),
            (_LINE_BLOCK,),
            (c, u, g_arg, consts["alpha"], w[1], inv[1], *sizes),
        )
    if nx > 1:
        per_block = tile["TILE"] * tile["WARPS_X"]
        lines = n_fields * nz * ny
        launch(
            "diffusion_lod",
            "sweep_x",
            ((lines + per_block - 1) // per_block,),
            (tile["TILE"], tile["WARPS_X"]),
            (c, u, g_arg, consts["alpha"], w[2], inv[2], *sizes),
        )
    return c


def _lod_step(solver: FieldSolver, c: Any, dt_s: float, sources: Any, uptake: Any) -> Any:
    """One LOD step by the CUDA kernels (float32 on a GPU), numba (``impl == "numba"``) or array code."""
    launch = launcher_for(c) if solver.dtype == np.float32 else None  # the kernels are float32; float64 takes the array path
    if launch is not None:
        return _lod_step_kernels(solver, c, dt_s, sources, uptake, launch)
    if solver.impl == "numba":
        return _lod_step_numba(solver, c, dt_s, sources, uptake)
    return _lod_step_xp(solver, c, dt_s, sources, uptake)


# ---------------------------------------------------------------------------------------


def _per_field(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: one value per field expected, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: values must be finite and >= 0, got {array.tolist()}")
    return array


class FieldSolver:
    """Implicit (backward-Euler LOD) solver for ``K`` fields on a ``[nz, ny, nx]`` lattice.

    Parameters
    ----------
    shape:
        ``(nz, ny, nx)``.
    voxel_um:
        Voxel edge length in µm.
    diffusion_um2_s, decay_per_s:
        One value per field: diffusion coefficient (µm²/s) and first-order decay (1/s).
    backend:
        ``"numpy"``, ``"cupy"``, ``"auto"`` or a :class:`~carabm.engine.backend.Backend`.
    conductance:
        Optional face-flux scaling in 0..1 per voxel, ``[nz, ny, nx]`` (shared by all
        fields) or ``[K, nz, ny, nx]`` (per-field baseline permeability); see
        :meth:`set_conductance`. ``None`` means 1 everywhere.
    dtype:
        ``float32`` (default) or ``float64``; fields passed to :meth:`step` must match.
    cpu_impl:
        On the NumPy backend: ``"numba"`` (compiled, parallel sweeps), ``"numpy"``
        (vectorised NumPy) or ``"auto"`` (numba when importable). Ignored on CuPy, which
        runs the CUDA kernels of ``kernels/diffusion_lod.cu`` for float32 (the generic
        array path for float64).
    """

    def __init__(
        self,
        shape: Sequence[int],
        voxel_um: float,
        diffusion_um2_s: Sequence[float],
        decay_per_s: Sequence[float],
        backend: str | Backend = "numpy",
        conductance: Any = None,
        dtype: Any = np.float32,
        cpu_impl: str = "auto",
    ) -> None:
        self.shape: tuple[int, int, int] = tuple(int(s) for s in shape)  # type: ignore[assignment]
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape: expected (nz, ny, nx) of positive sizes, got {tuple(shape)}")
        if not (math.isfinite(voxel_um) and voxel_um > 0):
            raise ValueError(f"voxel_um: must be > 0, got {voxel_um}")
        self.voxel_um = float(voxel_um)
        self.diffusion_um2_s = _per_field(diffusion_um2_s, "diffusion_um2_s")
        self.decay_per_s = _per_field(decay_per_s, "decay_per_s")
        if self.diffusion_um2_s.size != self.decay_per_s.size:
            raise ValueError(
                f"diffusion_um2_s and decay_per_s: one value per field each, got "
                f"{self.diffusion_um2_s.size} and {self.decay_per_s.size}"
            )
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: float32 or float64, got {self.dtype}")
        self.backend = get_backend(backend)
        if cpu_impl not in CPU_IMPLS:
            raise ValueError(f"cpu_impl: one of {', '.join(CPU_IMPLS)}, got {cpu_impl!r}")
        if on_device(self.backend):
            self.impl = "cupy"
        elif cpu_impl == "auto":
            self.impl = "numba" if numba_available() else "numpy"
        else:
            if cpu_impl == "numba" and not numba_available():
                raise ValueError("cpu_impl: numba requested but numba is not importable; use 'numpy' or 'auto'")
            self.impl = cpu_impl
        self._scratch: dict[Any, Any] | None = None
        self._kernel_cache: dict[Any, Any] = {}
        self._conductance: Any = None
        self._faces_cache: list[Any] | None = None
        self.set_conductance(conductance)

    @property
    def n_fields(self) -> int:
        """Number of fields ``K``."""
        return int(self.diffusion_um2_s.size)

    @property
    def field_shape(self) -> tuple[int, int, int, int]:
        """``(K, nz, ny, nx)``: the shape of the array :meth:`step` advances."""
        return (self.n_fields,) + self.shape

    @property
    def conductance(self) -> Any:
        """The current conductance ``[1 or K, nz, ny, nx]`` on the backend, or ``None``."""
        return self._conductance

    def zeros(self) -> Any:
        """A zero field array ``[K, nz, ny, nx]`` of the solver's dtype on its backend."""
        return self.backend.xp.zeros(self.field_shape, dtype=self.dtype)

    def set_conductance(self, conductance: Any, check: bool = True) -> None:
        """Set the voxel conductances (0..1; ``[nz,ny,nx]``, ``[K,nz,ny,nx]`` or ``None``).

        Cheap enough to call every step: a copy (and, on the NumPy path with a shared
        conductance, three face arrays of one field's size); nothing is factorised.
        ``check=False`` skips the range check (a host read on a GPU) for values that are
        in range by construction, e.g. the model's BBB conductance updated every step.
        """
        self._faces_cache = None
        if conductance is None:
            self._conductance = None
            return
        xp = self.backend.xp
        g = xp.asarray(conductance, dtype=self.dtype)
        if g.shape == self.shape:
            g = g[None]
        if g.ndim != 4 or g.shape[1:] != self.shape or g.shape[0] not in (1, self.n_fields):
            raise ValueError(f"conductance: expected shape {self.shape} or {self.field_shape}, got {tuple(conductance.shape)}")
        low, high = (float(g.min()), float(g.max())) if check else (0.0, 1.0)
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise ValueError(f"conductance: values must lie in 0..1, got range [{low}, {high}]")
        self._conductance = xp.ascontiguousarray(g)
        if self.impl != "numba" and g.shape[0] == 1:
            self._faces_cache = [_faces_axis_first(self._conductance[0], axis, xp) for axis in range(3)]

    def _check_array(self, array: Any, name: str) -> Any:
        xp = self.backend.xp
        if not isinstance(array, xp.ndarray):
            raise TypeError(f"{name}: expected a {self.backend.name} array, got {type(array).__name__}")
        if array.shape != self.field_shape:
            raise ValueError(f"{name}: expected shape {self.field_shape}, got {tuple(array.shape)}")
        return array

    def step(self, fields: Any, dt_s: float, sources: Any = None, uptake: Any = None) -> Any:
        """Advance ``fields`` by ``dt_s`` seconds **in place** and return the same array.

        ``fields`` is ``[K, nz, ny, nx]``, C-contiguous, of the solver's dtype, on its
        backend. ``sources`` (concentration/s, >= 0) and ``uptake`` (1/s, >= 0), if given,
        have the same shape; they are cast to the solver's dtype when needed (a copy).
        Outer boundaries are no-flux. Non-negative inputs give non-negative results.
        """
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s: must be > 0, got {dt_s}")
        xp = self.backend.xp
        self._check_array(fields, "fields")
        if fields.dtype != self.dtype or not fields.flags.c_contiguous:
            raise TypeError(
                f"fields: expected a C-contiguous {self.dtype} array (updated in place), "
                f"got {fields.dtype}{'' if fields.flags.c_contiguous else ', non-contiguous'}"
            )
        if sources is not None:
            sources = xp.ascontiguousarray(self._check_array(sources, "sources"), dtype=self.dtype)
        if uptake is not None:
            uptake = xp.ascontiguousarray(self._check_array(uptake, "uptake"), dtype=self.dtype)
        return _lod_step(self, fields, float(dt_s), sources, uptake)

    def total(self, fields: Any) -> np.ndarray:
        """Sum of each field over the lattice (concentration x voxels), float64 on the host."""
        return self.backend.asnumpy(fields.reshape(self.n_fields, -1).sum(axis=1, dtype=np.float64))

    def __repr__(self) -> str:
        return (
            f"FieldSolver(shape={self.shape}, voxel_um={self.voxel_um}, K={self.n_fields}, "
            f"impl={self.impl}, dtype={self.dtype.name}, conductance={'none' if self._conductance is None else 'set'})"
        )
