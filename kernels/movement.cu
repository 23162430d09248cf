// Agent movement on the padded occupancy grid: proposals, conflict resolution by an atomic
// claim grid, and applying the winners. One thread per agent; every random number comes from
// Philox keyed by (seed, step, agent id, purpose), so the outcome does not depend on the order
// of agents or of threads. Mirrors carabm/engine/movement.py (the NumPy reference) operation
// for operation: the same float32 arithmetic, the same random words, the same winner per voxel.
//
// Indices into the padded grid (one voxel of border on every side) need no bounds checks: a
// neighbour of an inside voxel is inside the padded grid. Labels: 0 tissue, 1 blood, 2 BBB,
// 3 CNS, 4 outside (the border). Conflicts: every request does atomicMax(claim[target],
// priority) with priority = (32 random bits << 32) | (low 32 bits of id + 1), unique and never
// 0 while ids < 2**32 - 1; a request wins when the claim still holds its priority after all
// requests. Two launches per operation: a proposal kernel, then apply_moves (or
// resolve_claims for division), whose winners release their claims by atomicCAS(claim,
// priority, 0): a losing request then reads the winner's priority or 0, never its own.
#include "philox.cuh"

#define LABEL_TISSUE 0
#define LABEL_BLOOD 1
#define LABEL_BBB 2
#define N_LABELS 5
#define MAX_NEIGHBOURS 26
#define MOVE_BLOCK 256  // threads per block of every kernel here (movement_kernels.py launches this many)

__device__ __forceinline__ unsigned long long make_priority(unsigned int word, long long id) {
    return ((unsigned long long)word << 32) | ((unsigned long long)(id + 1) & 0xFFFFFFFFull);
}

// Does the request for voxel t >= 0 with priority prio hold its claim? If so the claim is
// released (set to 0) in the same atomic step, so one launch both finds the winners and frees
// the claim grid. (Callers test t >= 0 first: priority[i] is not written for agents without
// a request, and is not read for them.)
__device__ __forceinline__ bool take_claim(long long t, unsigned long long prio, unsigned long long* claim) {
    return atomicCAS(claim + t, prio, 0ull) == prio;
}

// Agent i requests voxel t (neighbour dir) with priority prio: recorded, and claimed by atomicMax.
__device__ __forceinline__ void request(int i, long long t, int dir, unsigned long long prio, long long* target,
                                        unsigned long long* priority, int* direction, unsigned long long* claim) {
    direction[i] = dir;
    priority[i] = prio;
    target[i] = t;
    atomicMax(claim + t, prio);
}

// Flat index into the unpadded [nz, ny, nx] grid of a padded index, or -1 outside the lattice.
__device__ __forceinline__ long long unpad(long long p, int nz, int ny, int nx) {
    const long long sz = (long long)(ny + 2) * (nx + 2), sy = nx + 2;
    const long long z = p / sz - 1, rest = p % sz;
    const long long y = rest / sy - 1, x = rest % sy - 1;
    if (z < 0 || z >= nz || y < 0 || y >= ny || x < 0 || x >= nx) return -1;
    return (z * ny + y) * nx + x;
}

// Index of the valid neighbour picked uniformly by u (movement.py _choose_among), or -1.
__device__ __forceinline__ int choose_among(const bool* valid, int m, float u) {
    int count = 0;
    for (int j = 0; j < m; ++j) count += valid[j];
    if (count == 0) return -1;
    long long rank = (long long)((double)u * (double)count);  // NumPy: float32 * int64 -> float64
    if (rank > count - 1) rank = count - 1;
    int seen = 0;
    for (int j = 0; j < m; ++j) {
        seen += valid[j];
        if (seen > rank) return j;
    }
    return -1;
}

// Random walk / chemotaxis proposals. For each agent: does it try to move this step (hop
// probability hop_rate[kind] * speed_scale, capped at 1), towards which neighbour (uniform,
// or weighted exp(chi * (c_neighbour - c_here)) for kinds with a chemotaxis field), is the
// target free, inside, allowed for its kind (move_allowed[(kind * 5 + from) * 5 + to]) and,
// for a BBB voxel, let through with probability (1 - integrity)^hill. A request claims its
// target. target[i] = padded target or -1; direction[i] = neighbour index.
extern "C" __global__ void move_propose(
    const long long* ids, const unsigned char* kind, const long long* source, const int* occupancy,
    const unsigned char* labels, const float* hop_rate, const float* speed_scale, int has_speed_scale,
    const unsigned char* move_allowed, const long long* offsets, int m, const int* chemotaxis_field,
    const float* chemotaxis_chi, const float* fields, int has_fields, const float* integrity, int has_integrity,
    float bbb_hill, int nz, int ny, int nx, unsigned int seed_lo, unsigned int seed_hi, unsigned int step,
    unsigned int purpose_move, unsigned int purpose_bbb, long long* target, unsigned long long* priority,
    int* direction, unsigned long long* claim, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    target[i] = -1;
    const long long id = ids[i];
    const int k = kind[i];
    unsigned int w[4];
    philox_words(id, PhiloxKey{seed_lo, seed_hi, step, purpose_move}, w);
    float p = hop_rate[k];
    if (has_speed_scale) p = p * speed_scale[i];
    p = fminf(p, 1.0f);
    if (!(philox_unit(w[0]) < p)) return;
    const long long src = source[i];
    int dir = (int)(((w[1] >> 16) * (unsigned int)m) >> 16);
    const int field = has_fields ? chemotaxis_field[k] : -1;
    if (field >= 0) {
        const long long V = (long long)nz * ny * nx;
        const float* c = fields + field * V;
        const float here = c[unpad(src, nz, ny, nx)];
        const float chi = chemotaxis_chi[k];
        float cumulative[MAX_NEIGHBOURS];
        float total = 0.0f;
        for (int j = 0; j < m; ++j) {
            const long long v = unpad(src + offsets[j], nz, ny, nx);
            const float there = v < 0 ? here : c[v];  // outside: no pull
            float x = chi * (there - here);
            x = fminf(fmaxf(x, -30.0f), 30.0f);
            total = total + expf(x);
            cumulative[j] = total;
        }
        const float u = philox_unit(w[1]) * total;
        int count = 0;
        for (int j = 0; j < m; ++j) count += cumulative[j] <= u;
        dir = count < m - 1 ? count : m - 1;
    }
    const long long t = src + offsets[dir];
    const int to = labels[t];
    if (occupancy[t] >= 0 || !move_allowed[(k * N_LABELS + labels[src]) * N_LABELS + to]) return;
    if (to == LABEL_BBB) {
        if (!has_integrity) return;
        float leak = 1.0f - integrity[unpad(t, nz, ny, nx)];
        leak = fminf(fmaxf(leak, 0.0f), 1.0f);
        unsigned int g[4];
        philox_words(id, PhiloxKey{seed_lo, seed_hi, step, purpose_bbb}, g);
        if (!(philox_unit(g[0]) < powf(leak, bbb_hill))) return;
    }
    request(i, t, dir, make_priority(w[2], id), target, priority, direction, claim);
}

// Vessel-wall crossing proposals: an agent in blood (tissue) crosses with probability
// p_out[kind] * out_scale[i] (p_in[kind] * in_scale[i]), capped at 1, into a uniformly chosen
// free neighbour of the other compartment, if its kind may live there.
extern "C" __global__ void wall_propose(
    const long long* ids, const unsigned char* kind, const long long* source, const int* occupancy,
    const unsigned char* labels, const float* p_out, const float* p_in, const float* out_scale, int has_out_scale,
    const float* in_scale, int has_in_scale, const unsigned char* wall_allowed, const long long* offsets, int m,
    unsigned int seed_lo, unsigned int seed_hi, unsigned int step, unsigned int purpose, long long* target,
    unsigned long long* priority, int* direction, unsigned long long* claim, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    target[i] = -1;
    const int k = kind[i];
    const long long src = source[i];
    const int here = labels[src];
    float p = 0.0f;
    if (here == LABEL_BLOOD) p = has_out_scale ? p_out[k] * out_scale[i] : p_out[k];
    else if (here == LABEL_TISSUE) p = has_in_scale ? p_in[k] * in_scale[i] : p_in[k];
    if (!(p > 0.0f)) return;
    const long long id = ids[i];
    unsigned int w[4];
    philox_words(id, PhiloxKey{seed_lo, seed_hi, step, purpose}, w);
    if (!(philox_unit(w[0]) < fminf(p, 1.0f))) return;
    const int other = here == LABEL_BLOOD ? LABEL_TISSUE : LABEL_BLOOD;
    bool valid[MAX_NEIGHBOURS];
    for (int j = 0; j < m; ++j) {
        const long long t = src + offsets[j];
        valid[j] = labels[t] == other && occupancy[t] < 0;
    }
    const int dir = choose_among(valid, m, philox_unit(w[1]));
    if (dir < 0 || !wall_allowed[k * 2 + (other == LABEL_BLOOD)]) return;
    const long long t = src + offsets[dir];
    request(i, t, dir, make_priority(w[2], id), target, priority, direction, claim);
}

// Division proposals of the selected agents: a uniformly chosen free neighbour whose label the
// kind may be placed in (place_allowed[(kind * 5 + from) * 5 + to]).
extern "C" __global__ void divide_propose(
    const long long* ids, const unsigned char* kind, const long long* source, const unsigned char* selected,
    const int* occupancy, const unsigned char* labels, const unsigned char* place_allowed, const long long* offsets,
    int m, unsigned int seed_lo, unsigned int seed_hi, unsigned int step, unsigned int purpose, long long* target,
    unsigned long long* priority, int* direction, unsigned long long* claim, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    target[i] = -1;
    if (!selected[i]) return;
    const long long id = ids[i];
    const int k = kind[i];
    const long long src = source[i];
    const int from = labels[src];
    unsigned int w[4];
    philox_words(id, PhiloxKey{seed_lo, seed_hi, step, purpose}, w);
    bool valid[MAX_NEIGHBOURS];
    for (int j = 0; j < m; ++j) {
        const long long t = src + offsets[j];
        valid[j] = occupancy[t] < 0 && place_allowed[(k * N_LABELS + from) * N_LABELS + labels[t]];
    }
    const int dir = choose_among(valid, m, philox_unit(w[1]));
    if (dir < 0) return;
    const long long t = src + offsets[dir];
    request(i, t, dir, make_priority(w[2], id), target, priority, direction, claim);
}

// Winners move: occupancy, cached padded index and position follow, and the claim is released
// (take_claim). moved[label of the target] counts the moves by destination compartment: a
// block histogram in shared memory first, then one global atomic per block and label (all
// winners adding into five global counters would serialise on those five addresses).
extern "C" __global__ void __launch_bounds__(MOVE_BLOCK) apply_moves(
    const long long* __restrict__ target, const int* __restrict__ direction, const unsigned long long* __restrict__ priority,
    const int* __restrict__ offsets3, const unsigned char* __restrict__ labels, int* __restrict__ occupancy,
    long long* __restrict__ padded_index, int* __restrict__ position, unsigned long long* claim, int* moved, int n) {
    __shared__ int block_moved[N_LABELS];
    if (threadIdx.x < N_LABELS) block_moved[threadIdx.x] = 0;
    __syncthreads();  // every thread reaches both barriers: no early return
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const long long t = target[i];
        if (t >= 0 && take_claim(t, priority[i], claim)) {
            occupancy[padded_index[i]] = -1;  // free at the start of the step: no other winner targets it
            occupancy[t] = i;
            padded_index[i] = t;
            const int d = direction[i];
            position[3 * i] += offsets3[3 * d];
            position[3 * i + 1] += offsets3[3 * d + 1];
            position[3 * i + 2] += offsets3[3 * d + 2];
            atomicAdd(block_moved + labels[t], 1);
        }
    }
    __syncthreads();
    if (threadIdx.x < N_LABELS && block_moved[threadIdx.x] != 0) atomicAdd(moved + threadIdx.x, block_moved[threadIdx.x]);
}

// Division: win[i] = 1 for the request holding its target's claim, which is released.
extern "C" __global__ void resolve_claims(const long long* __restrict__ target, const unsigned long long* __restrict__ priority,
                                          unsigned long long* claim, unsigned char* __restrict__ win, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long t = target[i];
    win[i] = t >= 0 && take_claim(t, priority[i], claim);
}
