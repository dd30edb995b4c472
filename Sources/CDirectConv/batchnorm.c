#include "CDirectConv.h"
#include "isa.h"

/* BatchNorm's per-channel passes over activations (`MCLNet.BatchNorm2d`), compiled for AVX-512,
 * AVX2 and the baseline like the convolution kernels: the Swift loops ran on 4-lane SSE (the
 * package is compiled for baseline x86-64) and BatchNorm was ~20% of the width-16 step in perf.
 * Sums are kept in 16 float lanes over blocks of 64 values and added to a double per block, as
 * the Swift code they replace did with 8 lanes. */

#define BN_BACKWARD_SUMS(NAME, TARGET)                                                               \
TARGET static void NAME(const float *x, float *dy, const float *relu, long m, float mu,            \
                        double *sd, double *sdx) {                                                   \
    double a1 = 0, a2 = 0;                                                                           \
    long i = 0;                                                                                      \
    for (; i + 64 <= m; i += 64) {                                                                   \
        float f[16] = {0}, g[16] = {0};                                                              \
        for (int t = 0; t < 64; t += 16)                                                             \
            for (int l = 0; l < 16; l++) {                                                           \
                float d = dy[i + t + l];                                                             \
                if (relu) { d = relu[i + t + l] > 0 ? d : 0; dy[i + t + l] = d; }                    \
                f[l] += d; g[l] += d * (x[i + t + l] - mu);                                          \
            }                                                                                        \
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
    for (; i + 64 <= m; i += 64) {                                                                   \
        float f[16] = {0}, g[16] = {0};                                                              \
        for (int t = 0; t < 64; t += 16)                                                             \
            for (int l = 0; l < 16; l++) { const float d = x[i + t + l] - k; f[l] += d; g[l] += d * d; } \
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
