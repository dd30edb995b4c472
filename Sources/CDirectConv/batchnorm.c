#include "CDirectConv.h"
#include "isa.h"

/* BatchNorm's per-channel passes over activations (`MCLNet.BatchNorm2d`), compiled for AVX-512,
 * AVX2 and the baseline like the convolution kernels: the Swift loops ran on 4-lane SSE (the
 * package is compiled for baseline x86-64) and BatchNorm was ~20% of the width-16 step in perf.
 * Sums are kept in 16 float lanes over blocks of 64 values and added to a double per block, as
 * the Swift code they replace did with 8 lanes. */

/* 16 float lanes as one value (a zmm register on AVX-512, two ymm on AVX2, four xmm otherwise):
 * the lane accumulators stay in registers. As arrays (`float f[16]`) the compiler kept them on
 * the stack, storing and reloading them for every 16 values (perf: the stores were the hottest
 * instructions of the backward sums). Loads and stores go through memcpy (unaligned). */
typedef float bn_v16 __attribute__((vector_size(64)));
typedef int bn_i16 __attribute__((vector_size(64)));
#define BN_LOAD(p) ({ bn_v16 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define BN_STORE(p, v) do { bn_v16 s_ = (v); __builtin_memcpy((p), &s_, sizeof s_); } while (0)

#define BN_BACKWARD_SUMS(NAME, TARGET)                                                               \
TARGET static void NAME(const float *x, float *dy, const float *relu, long m, float mu,            \
                        double *sd, double *sdx) {                                                   \
    double a1 = 0, a2 = 0;                                                                           \
    long i = 0;                                                                                      \
    const bn_v16 zero = {0}, vmu = zero + mu;                                                        \
    for (; i + 64 <= m; i += 64) {                                                                   \
        bn_v16 f = zero, g = zero;                                                                   \
        for (int t = 0; t < 64; t += 16) {                                                           \
            bn_v16 d = BN_LOAD(dy + i + t);                                                          \
            if (relu) {                                                                              \
                const bn_i16 keep = BN_LOAD(relu + i + t) > zero;                                    \
                d = (bn_v16)((bn_i16)d & keep);                                                      \
                BN_STORE(dy + i + t, d);                                                             \
            }                                                                                        \
            f += d; g += d * (BN_LOAD(x + i + t) - vmu);                                             \
        }                                                                                            \
        float s1 = 0, s2 = 0;                                                                        \
        for (int l = 0; l < 16; l++) { s1 += f[l]; s2 += g[l]; }                                     \
        a1 += s1; a2 += s2;                                                                          \
    }                                                                                                \
    for (; i < m; i++) {                                                                             \
        float d = dy[i];                                                                             \
        if (relu) { d = relu[i] > 0 ? d : 0; dy[i] = d; }                                            \
        a1 += d; a2 += (double)d * (double)(x[i] - mu);                                              \
    }                                                                                                \
    *sd = a1; *sdx = a2;                                                                             \
}

/* Shifted sums for the statistics: *s1 = sum (x - k), *s2 = sum (x - k)^2. */
#define BN_SHIFTED_SUMS(NAME, TARGET)                                                                \
TARGET static void NAME(const float *x, long m, float k, double *s1, double *s2) {                   \
    double a1 = 0, a2 = 0;                                                                           \
    long i = 0;                                                                                      \
    const bn_v16 zero = {0}, vk = zero + k;                                                          \
    for (; i + 64 <= m; i += 64) {                                                                   \
        bn_v16 f = zero, g = zero;                                                                   \
        for (int t = 0; t < 64; t += 16) { const bn_v16 d = BN_LOAD(x + i + t) - vk; f += d; g += d * d; } \
        float u1 = 0, u2 = 0;                                                                        \
        for (int l = 0; l < 16; l++) { u1 += f[l]; u2 += g[l]; }                                     \
        a1 += u1; a2 += u2;                                                                          \
    }                                                                                                \
    for (; i < m; i++) { const double d = (double)(x[i] - k); a1 += d; a2 += d * d; }                \
    *s1 = a1; *s2 = a2;                                                                              \
}

#define BN_BACKWARD_DX(NAME, TARGET)                                                                 \
TARGET static void NAME(const float *restrict x, const float *restrict dy, float *restrict dx, long m, \
                        float mu, float inv, float k, float mdb, float mdg) {                        \
    for (long i = 0; i < m; i++) dx[i] = k * (dy[i] - mdb - (x[i] - mu) * inv * mdg);                \
}

#define BN_APPLY(NAME, TARGET)                                                                       \
TARGET static void NAME(const float *restrict x, float *restrict y, const float *restrict res, long m, \
                        float a, float o, int relu) {                                                \
    if (res && relu) for (long i = 0; i < m; i++) { const float v = x[i] * a + o + res[i]; y[i] = v > 0 ? v : 0; } \
    else if (res) for (long i = 0; i < m; i++) y[i] = x[i] * a + o + res[i];                         \
    else if (relu) for (long i = 0; i < m; i++) { const float v = x[i] * a + o; y[i] = v > 0 ? v : 0; } \
    else for (long i = 0; i < m; i++) y[i] = x[i] * a + o;                                           \
}

BN_BACKWARD_SUMS(bn_sums_512, __attribute__((target("avx512f"))))
BN_BACKWARD_SUMS(bn_sums_avx2, __attribute__((target("avx2,fma"))))
BN_BACKWARD_SUMS(bn_sums_base, )
BN_SHIFTED_SUMS(bn_stats_512, __attribute__((target("avx512f"))))
BN_SHIFTED_SUMS(bn_stats_avx2, __attribute__((target("avx2,fma"))))
BN_SHIFTED_SUMS(bn_stats_base, )
BN_BACKWARD_DX(bn_dx_512, __attribute__((target("avx512f"))))
BN_BACKWARD_DX(bn_dx_avx2, __attribute__((target("avx2,fma"))))
BN_BACKWARD_DX(bn_dx_base, )
BN_APPLY(bn_apply_512, __attribute__((target("avx512f"))))
BN_APPLY(bn_apply_avx2, __attribute__((target("avx2,fma"))))
BN_APPLY(bn_apply_base, )

void mcl_bn_backward_sums(const float *x, float *dy, const float *relu, long m, float mu, double *sd, double *sdx) {
    BY_ISA(bn_sums, x, dy, relu, m, mu, sd, sdx);
}

void mcl_bn_backward_dx(const float *x, const float *dy, float *dx, long m, float mu, float inv, float k,
                        float mdb, float mdg) {
    BY_ISA(bn_dx, x, dy, dx, m, mu, inv, k, mdb, mdg);
}

void mcl_bn_apply(const float *x, float *y, const float *residual, long m, float a, float o, int relu) {
    BY_ISA(bn_apply, x, y, residual, m, a, o, relu);
}

void mcl_bn_shifted_sums(const float *x, long m, float k, double *s1, double *s2) {
    BY_ISA(bn_stats, x, m, k, s1, s2);
}
