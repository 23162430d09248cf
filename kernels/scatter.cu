// Agent <-> lattice transfers: per-agent amounts summed into voxels (float32 atomic adds; float64
// for sums that must not lose small terms, such as summed agent weights),
// field values gathered at agent voxels, and neighbour contact counts. One thread per agent.

// row[voxels[i]] += amount for every agent with mask[i] set.
extern "C" __global__ void scatter_counts(float* row, const long long* voxels, const unsigned char* mask,
                                          float amount, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && mask[i]) atomicAdd(row + voxels[i], amount);
}

// row[voxels[i]] += weights[i] * scale (rounded to float32) for every agent with a nonzero weight.
extern "C" __global__ void scatter_weights(float* row, const long long* voxels, const double* weights,
                                           double scale, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const double w = weights[i];
    if (w != 0.0) atomicAdd(row + voxels[i], (float)(w * scale));
}

// row[voxels[i]] += weights[i] * scale in float64 for every agent with a nonzero weight (double
// atomicAdd: sm_60 and later). For sums whose terms are far below the total (agent weights of
// ~0.03 summed into hundreds), where float32 adds would drop bits the float64 NumPy sum keeps.
extern "C" __global__ void scatter_weights_f64(double* row, const long long* voxels, const double* weights,
                                               double scale, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const double w = weights[i];
    if (w != 0.0) atomicAdd(row + voxels[i], w * scale);
}

// out[f, i] = fields[f, voxels[i]] for all k fields ([k, n_voxels] in, [k, n] out).
extern "C" __global__ void gather_fields(const float* fields, const long long* voxels, float* out, int k,
                                         int n_voxels, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long v = voxels[i];
    for (int f = 0; f < k; ++f) out[(long long)f * n + i] = fields[(long long)f * n_voxels + v];
}

// Occupied neighbours of every agent (of kind want_kind when >= 0) over m padded offsets.
extern "C" __global__ void contact_counts(const long long* padded_index, const int* occupancy,
                                          const unsigned char* kind, const long long* offsets, int m,
                                          int want_kind, int* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long p = padded_index[i];
    int count = 0;
    for (int j = 0; j < m; ++j) {
        const int slot = occupancy[p + offsets[j]];
        count += slot >= 0 && (want_kind < 0 || kind[slot] == want_kind);
    }
    out[i] = count;
}
