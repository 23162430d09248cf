// Random words for many agents at once: rng.random_bits on the device (one thread per id).
#include "philox.cuh"

// out is [4, n]: word j of id i at out[j * n + i].
extern "C" __global__ void philox_ids(const long long* ids, unsigned int* out, int n, unsigned int seed_lo,
                                      unsigned int seed_hi, unsigned int step, unsigned int purpose) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const PhiloxKey key = {seed_lo, seed_hi, step, purpose};
    unsigned int w[4];
    philox_words(ids[i], key, w);
    out[i] = w[0];
    out[n + i] = w[1];
    out[2 * n + i] = w[2];
    out[3 * n + i] = w[3];
}

// Busy-waits about ``nanoseconds`` on one thread (tests: the host must get through a step
// while this still runs, which proves the step never waited for the device).
extern "C" __global__ void spin(long long nanoseconds) {
#ifdef __CUDA_ARCH__
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while ((long long)(now - start) < nanoseconds);
#endif
}
