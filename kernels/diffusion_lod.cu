// One backward-Euler LOD step of K float32 fields c[K, nz, ny, nx] (C order, x contiguous).
//
// Three launches, each covering all K fields: react_sweep_z (local implicit reaction fused
// into the z solve), sweep_y, sweep_x. Every 1D solve is the Thomas variant of
// carabm/engine/fields.py (_thomas_xp): u = 1 - w is carried instead of w, because the
// pivot needs 1 - w and that cancels badly in float32 when alpha is large. Every float
// operation is the one the NumPy path performs, in the same order; compiled with
// --fmad=false (carabm/engine/kernels.py COMPILE_OPTIONS) the results match it to the bit.
//
// Memory access: one thread per line. For z (stride ny*nx) and y (stride nx) consecutive
// threads own consecutive x, so each step of the recurrence is a coalesced row access.
// For x (stride 1) a warp stages a TILE x TILE tile (TILE lines x TILE x-values) in shared
// memory with coalesced loads, each thread runs its line's recurrence through the tile,
// and the tile goes back coalesced; the line is walked chunk by chunk (forward, then
// backward), with the recurrence's state carried in registers between chunks.
//
// Variable conductance: a face's factor is the harmonic mean 2 g_lo g_hi / (g_lo + g_hi)
// (0 when both are 0), computed on the fly from the voxel conductances g[n_g, nz, ny, nx]
// (n_g = 1: shared by all fields; n_g = K: one per field). The forward sweep stores u in
// the scratch array (same layout as c); with has_g == 0 the shared factors w, inv [K, n]
// (computed on the host in float64, as the NumPy path does) are used instead.

#define TILE 32     // sweep_x: lines per warp and x-values per chunk (blockDim.x)
#define WARPS_X 4   // sweep_x: warps per block (blockDim.y)

typedef long long i64;

// Harmonic mean of two voxel conductances, as fields.face_conductance: (2 lo) hi / (lo + hi).
__device__ __forceinline__ float harmonic_face(float lo, float hi) {
    const float total = lo + hi;
    return total > 0.0f ? (2.0f * lo * hi) / total : 0.0f;
}

// One forward row of the variable-conductance Thomas solve. In: rhs, the previous row's
// result v_prev and u (0 and 0 for row 0), the row's lower and upper face coefficients
// (alpha * face; 0 outside the line). Out: the row's u (in place) and its result.
__device__ __forceinline__ float forward_row(float rhs, float v_prev, float lower, float upper, float& u) {
    float u_row = u * lower;
    u_row = u_row + 1.0f;
    const float pivot = u_row + upper;
    u = u_row / pivot;
    const float carried = v_prev * lower;
    const float v = rhs + carried;
    return v / pivot;
}

// One forward row with uniform faces: (rhs + alpha v_prev) / pivot_i, with inv_i = 1 / pivot_i.
__device__ __forceinline__ float forward_row_uniform(float rhs, float v_prev, float alpha, float inv_i) {
    const float carried = v_prev * alpha;
    const float v = rhs + carried;
    return v * inv_i;
}

// The local implicit reaction of fields.py: (c + dt S) / (1 + dt decay + dt U).
__device__ __forceinline__ float react(float c, const float* src, const float* upt, i64 at, int has_src, int has_upt,
                                       float dt, float base) {
    if (has_src) {
        const float gain = src[at] * dt;
        c = c + gain;
    }
    if (has_upt) {
        float denominator = upt[at] * dt;
        denominator = denominator + base;
        return c / denominator;
    }
    return c / base;
}

// Solve one strided line of n values in place (z and y sweeps); with react != 0 each value
// first gets the local reaction (src and upt share the line's offsets).
//
// Software pipelining: each row's loads (c, and g two rows ahead; u and c on the way back)
// are issued before the previous row's stores, so the rows' memory latencies overlap instead
// of adding up. __restrict__ alone does not allow it: the compiler cannot prove that a row
// and the next (stride apart, stride a runtime value) are different addresses. Every value
// still goes through the same float operations in the same order (bit parity holds).
// Pointers that may alias (placeholders shared by unused inputs) are never dereferenced.
__device__ void solve_line(float* __restrict__ p, float* __restrict__ up, const float* __restrict__ gp, i64 stride, int n,
                           float alpha, const float* __restrict__ w, const float* __restrict__ inv, int has_g,
                           int react_first, const float* __restrict__ src, const float* __restrict__ upt, int has_src,
                           int has_upt, float dt, float base) {
    if (n < 2 || alpha == 0.0f) {  // no diffusion: as fields.py, which skips the solve
        if (react_first) {
            for (int i = 0; i < n; ++i) p[i * stride] = react(p[i * stride], src, upt, i * stride, has_src, has_upt, dt, base);
        }
        return;
    }
    float v = 0.0f;
    float rhs = p[0];
    if (react_first) rhs = react(rhs, src, upt, 0, has_src, has_upt, dt, base);
    if (has_g) {
        float u = 0.0f, upper = 0.0f, g_here = gp[0], g_next = gp[stride];  // n >= 2
        for (int i = 0; i < n; ++i) {
            float rhs_next = 0.0f, g_after = 0.0f;  // row i + 1's loads (g: row i + 2), before row i's stores
            if (i + 1 < n) {
                rhs_next = p[(i + 1) * stride];
                if (react_first) rhs_next = react(rhs_next, src, upt, (i + 1) * stride, has_src, has_upt, dt, base);
            }
            if (i + 2 < n) g_after = gp[(i + 2) * stride];
            const float lower = upper;
            if (i < n - 1) {
                upper = harmonic_face(g_here, g_next) * alpha;
                g_here = g_next;
                g_next = g_after;
            } else {
                upper = 0.0f;
            }
            v = forward_row(rhs, v, lower, upper, u);
            p[i * stride] = v;
            if (i < n - 1) up[i * stride] = u;  // the last row's u is never read
            rhs = rhs_next;
        }
        float p_here = p[(n - 2) * stride], u_here = up[(n - 2) * stride];
        for (int i = n - 2; i >= 0; --i) {
            float p_next = 0.0f, u_next = 0.0f;  // row i - 1's loads, before row i's store
            if (i > 0) {
                p_next = p[(i - 1) * stride];
                u_next = up[(i - 1) * stride];
            }
            float carried = 1.0f - u_here;
            carried = carried * v;
            v = p_here + carried;
            p[i * stride] = v;
            p_here = p_next;
            u_here = u_next;
        }
    } else {
        for (int i = 0; i < n; ++i) {
            float rhs_next = 0.0f;
            if (i + 1 < n) {
                rhs_next = p[(i + 1) * stride];
                if (react_first) rhs_next = react(rhs_next, src, upt, (i + 1) * stride, has_src, has_upt, dt, base);
            }
            v = forward_row_uniform(rhs, v, alpha, inv[i]);
            p[i * stride] = v;
            rhs = rhs_next;
        }
        float p_here = p[(n - 2) * stride];
        for (int i = n - 2; i >= 0; --i) {
            const float p_next = i > 0 ? p[(i - 1) * stride] : 0.0f;
            const float carried = v * w[i];
            v = p_here + carried;
            p[i * stride] = v;
            p_here = p_next;
        }
    }
}

// Reaction, then the z solve; one thread per (k, y, x) line. Unused inputs (g when
// has_g == 0, src, upt, w and inv when not needed) are 1-element placeholders.
extern "C" __global__ void react_sweep_z(float* __restrict__ c, float* __restrict__ u, const float* __restrict__ g,
                                         const float* __restrict__ src, const float* __restrict__ upt,
                                         const float* __restrict__ alpha, const float* __restrict__ base,
                                         const float* __restrict__ w, const float* __restrict__ inv,
                                         int n_fields, int nz, int ny, int nx, int n_g, int has_g, int has_src,
                                         int has_upt, float dt) {
    const i64 plane = (i64)ny * nx;
    const i64 line = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (line >= (i64)n_fields * plane) return;
    const int k = (int)(line / plane);
    const i64 in_plane = line - k * plane;
    const i64 at = (i64)k * nz * plane + in_plane;
    const i64 g_at = (i64)(n_g > 1 ? k : 0) * nz * plane + in_plane;
    solve_line(c + at, u + (has_g ? at : 0), g + (has_g ? g_at : 0), plane, nz, alpha[k], w + (has_g ? 0 : (i64)k * nz),
               inv + (has_g ? 0 : (i64)k * nz), has_g, 1, src + (has_src ? at : 0), upt + (has_upt ? at : 0), has_src,
               has_upt, dt, base[k]);
}

// The y solve; one thread per (k, z, x) line.
extern "C" __global__ void sweep_y(float* __restrict__ c, float* __restrict__ u, const float* __restrict__ g,
                                   const float* __restrict__ alpha, const float* __restrict__ w,
                                   const float* __restrict__ inv, int n_fields, int nz, int ny, int nx, int n_g, int has_g) {
    const i64 lines_per_field = (i64)nz * nx;
    const i64 line = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (line >= (i64)n_fields * lines_per_field) return;
    const int k = (int)(line / lines_per_field);
    const i64 rest = line - k * lines_per_field;
    const i64 z = rest / nx, x = rest - z * nx;
    const i64 in_field = z * ny * nx + x;
    const i64 at = (i64)k * nz * ny * nx + in_field;
    const i64 g_at = (i64)(n_g > 1 ? k : 0) * nz * ny * nx + in_field;
    solve_line(c + at, u + (has_g ? at : 0), g + (has_g ? g_at : 0), nx, ny, alpha[k], w + (has_g ? 0 : (i64)k * ny),
               inv + (has_g ? 0 : (i64)k * ny), has_g, 0, c, c, 0, 0, 0.0f, 1.0f);
}

// The x solve through shared-memory tiles; blockDim = (TILE, WARPS_X), one warp per TILE
// consecutive (k, z, y) lines. Every thread reaches every barrier (no early return).
extern "C" __global__ void __launch_bounds__(TILE * WARPS_X, 4) sweep_x(float* c, float* u, const float* g, const float* alpha, const float* w,
                                   const float* inv, int n_fields, int nz, int ny, int nx, int n_g, int has_g) {
    __shared__ float tile_v[WARPS_X][TILE][TILE + 1];   // +1: a thread walking its row hits no bank twice
    __shared__ float tile_gu[WARPS_X][TILE][TILE + 1];  // g on the way forward, then u
    const int lane = threadIdx.x, warp = threadIdx.y;
    const i64 lines_per_field = (i64)nz * ny;
    const i64 n_lines = (i64)n_fields * lines_per_field;
    const i64 first = ((i64)blockIdx.x * WARPS_X + warp) * TILE;  // this warp's first line
    const i64 mine = first + lane;                                // the line this thread solves
    const int k = mine < n_lines ? (int)(mine / lines_per_field) : 0;
    const float a = alpha[k];
    const bool solving = mine < n_lines && nx > 1 && a != 0.0f;
    const i64 my_g = (n_g > 1 ? mine : mine % lines_per_field) * nx;
    float (*sv)[TILE + 1] = tile_v[warp];
    float (*sgu)[TILE + 1] = tile_gu[warp];

    // forward: state carried from chunk to chunk
    float v = 0.0f, uu = 0.0f, upper = 0.0f, g_here = 0.0f;
    for (int x0 = 0; x0 < nx; x0 += TILE) {
        const int m = nx - x0 < TILE ? nx - x0 : TILE;
#pragma unroll 4
        for (int r = 0; r < TILE; ++r) {
            const i64 line = first + r;
            if (line < n_lines && lane < m) {
                sv[r][lane] = c[line * nx + x0 + lane];
                if (has_g) sgu[r][lane] = g[(n_g > 1 ? line : line % lines_per_field) * nx + x0 + lane];
            }
        }
        __syncthreads();
        if (solving) {
            for (int j = 0; j < m; ++j) {
                const int i = x0 + j;
                if (has_g) {
                    if (i == 0) g_here = sgu[lane][0];
                    const float lower = upper;
                    if (i < nx - 1) {
                        const float g_next = j + 1 < m ? sgu[lane][j + 1] : g[my_g + i + 1];
                        upper = harmonic_face(g_here, g_next) * a;
                        g_here = g_next;
                    } else {
                        upper = 0.0f;
                    }
                    v = forward_row(sv[lane][j], v, lower, upper, uu);
                    sgu[lane][j] = uu;  // g[j] is no longer needed: its value is in g_here or consumed
                } else {
                    v = forward_row_uniform(sv[lane][j], v, a, inv[(i64)k * nx + i]);
                }
                sv[lane][j] = v;
            }
        }
        __syncthreads();
#pragma unroll 4
        for (int r = 0; r < TILE; ++r) {
            const i64 line = first + r;
            if (line < n_lines && lane < m) {
                c[line * nx + x0 + lane] = sv[r][lane];
                if (has_g) u[line * nx + x0 + lane] = sgu[r][lane];
            }
        }
        __syncthreads();
    }

    // backward: chunks from the end of the line to its start
    for (int x0 = ((nx - 1) / TILE) * TILE; x0 >= 0; x0 -= TILE) {
        const int m = nx - x0 < TILE ? nx - x0 : TILE;
#pragma unroll 4
        for (int r = 0; r < TILE; ++r) {
            const i64 line = first + r;
            if (line < n_lines && lane < m) {
                sv[r][lane] = c[line * nx + x0 + lane];
                if (has_g) sgu[r][lane] = u[line * nx + x0 + lane];
            }
        }
        __syncthreads();
        if (solving) {
            for (int j = m - 1; j >= 0; --j) {
                const int i = x0 + j;
                if (i == nx - 1) continue;  // the last row is final after the forward sweep
                if (has_g) {
                    float carried = 1.0f - sgu[lane][j];
                    carried = carried * v;
                    v = sv[lane][j] + carried;
                } else {
                    const float carried = v * w[(i64)k * nx + i];
                    v = sv[lane][j] + carried;
                }
                sv[lane][j] = v;
            }
        }
        __syncthreads();
#pragma unroll 4
        for (int r = 0; r < TILE; ++r) {
            const i64 line = first + r;
            if (line < n_lines && lane < m) c[line * nx + x0 + lane] = sv[r][lane];
        }
        __syncthreads();
    }
}
