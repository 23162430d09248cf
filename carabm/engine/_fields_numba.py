"""numba CPU twin of the LOD field sweeps (see :mod:`carabm.engine.fields` for the method).

Two fused passes over memory per step: (reaction + z sweep), then (y sweep + x sweep)
on each ``(field, z)`` plane while it sits in cache. Lines are solved in blocks with the
contiguous x index innermost so LLVM vectorises the Thomas recurrences across lines.
With a conductance, the z and y lines that see conductance 1 everywhere (all but those through
the BBB and the brain separator) share one set of Thomas factors per field and step, made by the
same operations as the per-line ones, so they cost no divisions and give the same bits.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from carabm.engine.numba_cache import CACHE

#: grids with fewer values than this (fields x voxels) are swept on one thread
SERIAL_BELOW = 1 << 20

_JIT = {"cache": CACHE, "nogil": True, "error_model": "numpy", "boundscheck": False}


@nb.njit(**_JIT)
def _harmonic_rows(lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> None:
    """``out = 2 lo hi / (lo + hi)`` elementwise (0 where both are 0)."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            a = lo[i, j]
            b = hi[i, j]
            s = a + b
            out[i, j] = (a * b + a * b) / s if s > 0 else s


@nb.njit(**_JIT)
def _thomas(c: np.ndarray, h: np.ndarray, alpha, one, u: np.ndarray) -> None:  # noqa: ANN001
    """Solve ``(I - alpha L_h) x = c`` along axis 0 of ``c [n, m]`` in place (m independent lines).

    ``h [n-1, m]`` are the face factors (harmonic-mean conductance), ``u [n, m]`` scratch.
    Every pivot is >= 1 (the matrix is a diagonally dominant M-matrix), so no pivoting is
    needed and non-negative right-hand sides give non-negative solutions.
    """
    n, m = c.shape
    if n < 2:
        return
    # u = 1 - w is carried instead of w: the pivot needs 1 - w, which cancels badly in
    # float32 when alpha is large (w -> 1); u itself is computed without cancellation.
    for j in range(m):
        au = alpha * h[0, j]
        inv = one / (one + au)
        u[0, j] = inv
        c[0, j] = c[0, j] * inv
    for i in range(1, n - 1):
        for j in range(m):
            al = alpha * h[i - 1, j]
            au = alpha * h[i, j]
            inv = one / (one + au + al * u[i - 1, j])
            u[i, j] = (one + al * u[i - 1, j]) * inv
            c[i, j] = (c[i, j] + al * c[i - 1, j]) * inv
    for j in range(m):
        al = alpha * h[n - 2, j]
        inv = one / (one + al * u[n - 2, j])
        c[n - 1, j] = (c[n - 1, j] + al * c[n - 2, j]) * inv
    for i in range(n - 2, -1, -1):
        for j in range(m):
            c[i, j] = c[i, j] + (one - u[i, j]) * c[i + 1, j]


@nb.njit(**_JIT)
def _thomas_uniform(c: np.ndarray, alpha, w: np.ndarray, inv: np.ndarray) -> None:  # noqa: ANN001
    """As :func:`_thomas` when every face has factor 1: ``w``, ``inv`` [n] are shared by all lines."""
    n, m = c.shape
    if n < 2:
        return
    for j in range(m):
        c[0, j] = c[0, j] * inv[0]
    for i in range(1, n):
        for j in range(m):
            c[i, j] = (c[i, j] + alpha * c[i - 1, j]) * inv[i]
    for i in range(n - 2, -1, -1):
        for j in range(m):
            c[i, j] = c[i, j] + w[i] * c[i + 1, j]


@nb.njit(**_JIT)
def _uniform_factors(n: int, alpha, one, w: np.ndarray, inv: np.ndarray) -> None:  # noqa: ANN001
    """The Thomas factors of ``(I - alpha L)`` with no-flux ends, shared by all lines."""
    if n < 2:
        return
    inv[0] = one / (one + alpha)
    w[0] = alpha * inv[0]
    u_prev = inv[0]  # u = 1 - w without cancellation (see _thomas)
    for i in range(1, n):
        au = alpha if i < n - 1 else alpha - alpha
        inv[i] = one / (one + au + alpha * u_prev)
        w[i] = au * inv[i]
        u_prev = (one + alpha * u_prev) * inv[i]


@nb.njit(**_JIT)
def _flat_factors(n: int, alpha, one, inv: np.ndarray, w: np.ndarray) -> None:  # noqa: ANN001
    """The factors :func:`_thomas` makes on a line whose faces are all 1, by the same operations (so the same bits).

    ``inv [n]`` are the pivots' inverses and ``w [n]`` the back-substitution factors ``1 - u``.
    """
    if n < 2:
        return
    au = alpha * one
    u_prev = one / (one + au)
    inv[0] = u_prev
    w[0] = one - u_prev
    for i in range(1, n - 1):
        al = alpha * one
        au = alpha * one
        f = one / (one + au + al * u_prev)
        u_prev = (one + al * u_prev) * f
        inv[i] = f
        w[i] = one - u_prev
    al = alpha * one
    inv[n - 1] = one / (one + al * u_prev)


@nb.njit(**_JIT)
def _thomas_flat(c: np.ndarray, alpha, one, inv: np.ndarray, w: np.ndarray) -> None:  # noqa: ANN001
    """:func:`_thomas` on lines whose faces are all 1, with the shared factors of :func:`_flat_factors` (no divisions)."""
    n, m = c.shape
    if n < 2:
        return
    for j in range(m):
        c[0, j] = c[0, j] * inv[0]
    al = alpha * one
    for i in range(1, n):
        f = inv[i]
        for j in range(m):
            c[i, j] = (c[i, j] + al * c[i - 1, j]) * f
    for i in range(n - 2, -1, -1):
        f = w[i]
        for j in range(m):
            c[i, j] = c[i, j] + f * c[i + 1, j]


@nb.njit(**_JIT)
def _thomas_lines(c, gl, alpha, one, inv, w, gen, gb, hc, ub):  # noqa: ANN001
    """:func:`_thomas` of ``c [n, m]`` along axis 0 with the face factors of the conductance lines ``gl [n, m]``.

    Most lines see conductance 1 everywhere (away from the BBB and the brain separator): they
    are solved with shared factors and no divisions (:func:`_thomas_flat`). The rest are
    gathered (``gen``, ``gb``, ``hc``, ``ub``: scratch of ``[m]``, ``[n, m]``, ``[n, m]``, ``[n, m]``),
    solved by :func:`_thomas` and put back. A face is 1 exactly when both its voxels are 1
    (conductances lie in 0..1), so every line gets the numbers :func:`_thomas` gives it.
    """
    n, m = c.shape
    if n < 2:
        return
    m_gen = 0
    for j in range(m):
        for i in range(n):
            if gl[i, j] != one:
                gen[m_gen] = j
                m_gen += 1
                break
    for q in range(m_gen):
        j = gen[q]
        for i in range(n):
            gb[i, q] = c[i, j]
        for i in range(n - 1):
            a = gl[i, j]
            b = gl[i + 1, j]
            s = a + b
            hc[i, q] = (a * b + a * b) / s if s > 0 else s
    _flat_factors(n, alpha, one, inv, w)
    _thomas_flat(c, alpha, one, inv, w)
    if m_gen > 0:
        _thomas(gb[:, :m_gen], hc[: n - 1, :m_gen], alpha, one, ub[:, :m_gen])
        for q in range(m_gen):
            j = gen[q]
            for i in range(n):
                c[i, j] = gb[i, q]


@nb.njit(parallel=True, **_JIT)
def react_sweep_z(c, src, upt, has_src, has_upt, dt, decay, alpha, g, has_g, one):  # noqa: ANN001
    """Local implicit reaction then the z sweep, in place; parallel over y."""
    n_fields, nz, ny, nx = c.shape
    n_g = g.shape[0]
    for y in nb.prange(ny):
        buf = np.empty((nz, nx), dtype=c.dtype)  # contiguous, so the recurrences vectorise
        w1 = np.empty(nz, dtype=c.dtype)
        inv1 = np.empty(nz, dtype=c.dtype)
        gen = np.empty(nx, dtype=np.int64)
        gb = np.empty((nz, nx), dtype=c.dtype)
        hc = np.ones((nz, nx), dtype=c.dtype)
        ub = np.empty((nz, nx), dtype=c.dtype)
        for k in range(n_fields):
            base = one + dt * decay[k]
            for i in range(nz):
                row = c[k, i, y]
                for j in range(nx):
                    buf[i, j] = row[j]
                if has_src:
                    srow = src[k, i, y]
                    for j in range(nx):
                        buf[i, j] = buf[i, j] + dt * srow[j]
                if has_upt:
                    urow = upt[k, i, y]
                    for j in range(nx):
                        buf[i, j] = buf[i, j] / (base + dt * urow[j])
                else:
                    scale = one / base
                    for j in range(nx):
                        buf[i, j] = buf[i, j] * scale
            if has_g:
                _thomas_lines(buf, g[k if n_g > 1 else 0, :, y, :], alpha[k], one, inv1, w1, gen, gb, hc, ub)
            else:
                _uniform_factors(nz, alpha[k], one, w1, inv1)
                _thomas_uniform(buf, alpha[k], w1, inv1)
            for i in range(nz):
                row = c[k, i, y]
                for j in range(nx):
                    row[j] = buf[i, j]


@nb.njit(parallel=True, **_JIT)
def sweep_yx(c, alpha, g, has_g, one):  # noqa: ANN001
    """The y sweep then the x sweep of each ``(field, z)`` plane, in place; parallel over z.

    The x sweep works on a transposed copy of the plane (in cache) so that its inner
    loop runs over contiguous memory and vectorises.
    """
    n_fields, nz, ny, nx = c.shape
    n_g = g.shape[0]
    for z in nb.prange(nz):
        gen = np.empty(nx, dtype=np.int64)
        gb = np.empty((ny, nx), dtype=c.dtype)
        hc = np.ones((ny, nx), dtype=c.dtype)
        ub = np.empty((ny, nx), dtype=c.dtype)
        wt = np.empty((nx, ny), dtype=c.dtype)
        ht = np.ones((max(nx - 1, 1), ny), dtype=c.dtype)
        gt = np.empty((nx, ny), dtype=c.dtype)
        t = np.empty((nx, ny), dtype=c.dtype)
        wy1 = np.empty(ny, dtype=c.dtype)
        invy1 = np.empty(ny, dtype=c.dtype)
        wx1 = np.empty(nx, dtype=c.dtype)
        invx1 = np.empty(nx, dtype=c.dtype)
        for k in range(n_fields):
            if has_g and (k == 0 or n_g > 1):
                kg = k if n_g > 1 else 0
                gp = g[kg, z]
                for j in range(ny):
                    for i in range(nx):
                        gt[i, j] = gp[j, i]
                _harmonic_rows(gt[: nx - 1], gt[1:], ht[: nx - 1])
            plane = c[k, z]
            if has_g:
                _thomas_lines(plane, g[k if n_g > 1 else 0, z], alpha[k], one, invy1, wy1, gen, gb, hc, ub)
            else:
                _uniform_factors(ny, alpha[k], one, wy1, invy1)
                _thomas_uniform(plane, alpha[k], wy1, invy1)
            if nx > 1:
                for j in range(ny):
                    for i in range(nx):
                        t[i, j] = plane[j, i]
                if has_g:
                    _thomas(t, ht, alpha[k], one, wt)
                else:
                    _uniform_factors(nx, alpha[k], one, wx1, invx1)
                    _thomas_uniform(t, alpha[k], wx1, invx1)
                for j in range(ny):
                    for i in range(nx):
                        plane[j, i] = t[i, j]


def lod_step(c, src, upt, dt, decay, alpha, g):  # noqa: ANN001, ANN201
    """One LOD step in place on C-contiguous host arrays of one float dtype (``g`` may be None)."""
    dtype = c.dtype.type
    one = dtype(1.0)
    dummy = np.zeros((1, 1, 1, 1), dtype=c.dtype)
    has_src = src is not None
    has_upt = upt is not None
    has_g = g is not None
    # Small grids: one thread. A parallel launch costs more than the work, and far more
    # when other processes compete for the cores (threads wait at each region's barrier).
    threads = nb.get_num_threads()
    if c.size < SERIAL_BELOW:
        nb.set_num_threads(1)
    try:
        react_sweep_z(
            c,
            src if has_src else dummy,
            upt if has_upt else dummy,
            has_src,
            has_upt,
            dtype(dt),
            decay,
            alpha,
            g if has_g else dummy,
            has_g,
            one,
        )
        sweep_yx(c, alpha, g if has_g else dummy, has_g, one)
    finally:
        nb.set_num_threads(threads)
    return c
