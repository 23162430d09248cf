// Blood-pool exchange (carabm/engine/blood_pool.py, BloodPool.exchange) on the GPU.
//
// The pool's implicit update needs, per field k, the sum of c over the blood voxels
// (index[0..n_index), flat voxel indices); then every blood voxel gets
// c <- (c + add[k]) / q[k], the same float32 operations as the NumPy path. The sum is
// accumulated in double (as blood.sum(dtype=float64)) in two deterministic stages, so a
// rerun gives the same bits: blood_partial_sums (grid (n_blocks, K), fixed-order tree per
// block) then blood_sum_partials (one block per field). No atomics.

#define BLOCK 256  // threads per block of the two reductions (blockDim.x must equal it)

typedef long long i64;

// In-block tree reduction of acc[0..BLOCK) into acc[0], in a fixed order.
__device__ void reduce_block(double* acc) {
    for (int half = BLOCK / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) acc[threadIdx.x] += acc[threadIdx.x + half];
        __syncthreads();
    }
}

// partials[k, b] = sum of c[k, index[j]] over the j this block b strides through.
extern "C" __global__ void blood_partial_sums(const float* c, const int* index, double* partials, int n_index,
                                              int voxels_per_field) {
    __shared__ double acc[BLOCK];
    const int k = blockIdx.y;
    const float* field = c + (i64)k * voxels_per_field;
    double sum = 0.0;
    for (i64 j = (i64)blockIdx.x * BLOCK + threadIdx.x; j < n_index; j += (i64)gridDim.x * BLOCK) {
        sum += (double)field[index[j]];
    }
    acc[threadIdx.x] = sum;
    __syncthreads();
    reduce_block(acc);
    if (threadIdx.x == 0) partials[(i64)k * gridDim.x + blockIdx.x] = acc[0];
}

// sums[k] = sum over b of partials[k, b]; grid (K), one block per field.
extern "C" __global__ void blood_sum_partials(const double* partials, double* sums, int n_partials) {
    __shared__ double acc[BLOCK];
    const int k = blockIdx.x;
    double sum = 0.0;
    for (int b = threadIdx.x; b < n_partials; b += BLOCK) sum += partials[(i64)k * n_partials + b];
    acc[threadIdx.x] = sum;
    __syncthreads();
    reduce_block(acc);
    if (threadIdx.x == 0) sums[k] = acc[0];
}

// c[k, index[j]] <- (c[k, index[j]] + add[k]) / q[k]; grid (ceil(n_index / blockDim.x), K).
extern "C" __global__ void blood_update(float* c, const int* index, const float* add, const float* q, int n_index,
                                        int voxels_per_field) {
    const i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_index) return;
    const int k = blockIdx.y;
    float* value = c + (i64)k * voxels_per_field + index[j];
    const float mixed = *value + add[k];
    *value = mixed / q[k];
}
