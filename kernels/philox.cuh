// Philox4x32-10 counter-based random numbers on the device (Salmon et al., SC 2011),
// keyed exactly as carabm/engine/rng.py: counter = (id low 32 bits, id high 32 bits, step,
// purpose), key = (seed low 32 bits, seed high 32 bits). The NumPy, numba and CUDA paths
// produce the same bits for the same key, so a random number never depends on the order
// of agents in memory or on the backend.
#pragma once

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

struct PhiloxKey {
    unsigned int seed_lo, seed_hi, step, purpose;
};

// Four random 32-bit words for agent ``id`` under ``key``.
__device__ __forceinline__ void philox_words(long long id, PhiloxKey key, unsigned int out[4]) {
    const unsigned long long uid = (unsigned long long)id;
    unsigned int c0 = (unsigned int)(uid & 0xFFFFFFFFull);
    unsigned int c1 = (unsigned int)(uid >> 32);
    unsigned int c2 = key.step;
    unsigned int c3 = key.purpose;
    unsigned int k0 = key.seed_lo, k1 = key.seed_hi;
    for (int round = 0; round < 10; ++round) {
        const unsigned long long p0 = (unsigned long long)c0 * PHILOX_M0;
        const unsigned long long p1 = (unsigned long long)c2 * PHILOX_M1;
        const unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        const unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// The 24 high bits as a float in [0, 1): exact in float32, as rng.py's ``to_unit``.
__device__ __forceinline__ float philox_unit(unsigned int word) {
    return (float)(word >> 8) * (1.0f / 16777216.0f);
}
