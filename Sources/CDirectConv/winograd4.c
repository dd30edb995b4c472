#include "CDirectConv.h"
#include <string.h>

/* The input and output transforms of Winograd F(4x4, 3x3) (`MCLNet.Winograd4`, where the
 * matrices B^T and A^T are written out) on CNHW activations, for tile rows [r0, r1) of the
 * n * h/4 tile rows of 4 output rows each.
 *
 * In C, compiled for AVX-512, AVX2 and the baseline, because the Swift package is compiled for
 * the baseline x86-64: the same loops in Swift ran on 4-lane SSE registers, and the transforms
 * took twice the time of the 36 GEMMs (64 channels, 32x32). Each transform is two passes: over
 * whole rows of w (contiguous, vectorised), and over each tile's columns (the compiler's
 * interleaved loads and stores). */

#define UNROLL _Pragma("clang loop unroll(full)")

#define WINO4_INPUT(NAME, TARGET)                                                                    \
TARGET static void NAME(const float *x, int channels, int n, int h, int w, int r0, int r1,          \
                        float *v, int tb, float *pad) {                                              \
    const int nth = h / 4, ntw = w / 4, wp = w + 2;                                                  \
    const long plane = (long)channels * tb;                                                          \
    float *t[6];                                                                                     \
    for (int i = 0; i < 6; i++) { t[i] = pad + i * wp; t[i][0] = 0; t[i][wp - 1] = 0; }             \
    float *zero = pad + 6 * wp;                                                                      \
    memset(zero, 0, w * sizeof(float));                                                              \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            const float *img = x + ((long)c * n + ni) * h * w;                                       \
            const float *d[6];                                                                       \
            for (int k = 0; k < 6; k++) {                                                            \
                const int i = 4 * th - 1 + k;                                                        \
                d[k] = i >= 0 && i < h ? img + (long)i * w : zero;                                   \
            }                                                                                        \
            const float *restrict d0 = d[0], *restrict d1 = d[1], *restrict d2 = d[2];               \
            const float *restrict d3 = d[3], *restrict d4 = d[4], *restrict d5 = d[5];               \
            float *restrict t0 = t[0] + 1, *restrict t1 = t[1] + 1, *restrict t2 = t[2] + 1;         \
            float *restrict t3 = t[3] + 1, *restrict t4 = t[4] + 1, *restrict t5 = t[5] + 1;         \
            for (int j = 0; j < w; j++) {                                                            \
                const float a0 = d0[j], a1 = d1[j], a2 = d2[j], a3 = d3[j], a4 = d4[j], a5 = d5[j];  \
                t0[j] = 4 * a0 - 5 * a2 + a4;                                                        \
                t1[j] = a3 + a4 - 4 * (a1 + a2);                                                     \
                t2[j] = 4 * (a1 - a2) + a4 - a3;                                                     \
                t3[j] = 2 * (a3 - a1) + a4 - a2;                                                     \
                t4[j] = 2 * (a1 - a3) + a4 - a2;                                                     \
                t5[j] = 4 * a1 - 5 * a3 + a5;                                                        \
            }                                                                                        \
            const long base = (long)c * tb + (long)(r - r0) * ntw;                                   \
            for (int i = 0; i < 6; i++) {                                                            \
                const float *restrict tr = t[i];                                                     \
                float *restrict o0 = v + 6 * i * plane + base;                                       \
                float *restrict o1 = o0 + plane, *restrict o2 = o1 + plane, *restrict o3 = o2 + plane; \
                float *restrict o4 = o3 + plane, *restrict o5 = o4 + plane;                          \
                for (int tw = 0; tw < ntw; tw++) {                                                   \
                    const float *p = tr + 4 * tw;                                                    \
                    const float a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3], a4 = p[4], a5 = p[5];    \
                    o0[tw] = 4 * a0 - 5 * a2 + a4;                                                   \
                    o1[tw] = a3 + a4 - 4 * (a1 + a2);                                                \
                    o2[tw] = 4 * (a1 - a2) + a4 - a3;                                                \
                    o3[tw] = 2 * (a3 - a1) + a4 - a2;                                                \
                    o4[tw] = 2 * (a1 - a3) + a4 - a2;                                                \
                    o5[tw] = 4 * a1 - 5 * a3 + a5;                                                   \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

#define WINO4_OUTPUT(NAME, TARGET)                                                                   \
TARGET static void NAME(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb,  \
                        float *y, int accumulate, float *tmp) {                                      \
    const int nth = h / 4, ntw = w / 4;                                                              \
    const long plane = (long)channels * tb;                                                          \
    float *restrict t0 = tmp, *restrict t1 = tmp + w, *restrict t2 = tmp + 2 * w;                    \
    float *restrict t3 = tmp + 3 * w, *restrict t4 = tmp + 4 * w, *restrict t5 = tmp + 5 * w;        \
    float *t[6] = {t0, t1, t2, t3, t4, t5};                                                          \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            float *restrict out0 = y + (((long)c * n + ni) * h + 4 * th) * w;                        \
            float *restrict out1 = out0 + w, *restrict out2 = out1 + w, *restrict out3 = out2 + w;   \
            const float *mb = m + (long)c * tb + (long)(r - r0) * ntw;                               \
            for (int i = 0; i < 6; i++) {                                                            \
                const float *restrict i0 = mb + 6 * i * plane;                                       \
                const float *restrict i1 = i0 + plane, *restrict i2 = i1 + plane;                    \
                const float *restrict i3 = i2 + plane, *restrict i4 = i3 + plane, *restrict i5 = i4 + plane; \
                float *restrict tr = t[i];                                                           \
                for (int tw = 0; tw < ntw; tw++) {                                                   \
                    const float a0 = i0[tw], a1 = i1[tw], a2 = i2[tw], a3 = i3[tw], a4 = i4[tw], a5 = i5[tw]; \
                    const float s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;          \
                    tr[4 * tw] = a0 + s12 + s34; tr[4 * tw + 1] = d12 + 2 * d34;                     \
                    tr[4 * tw + 2] = s12 + 4 * s34; tr[4 * tw + 3] = d12 + 8 * d34 + a5;             \
                }                                                                                    \
            }                                                                                        \
            if (accumulate) {                                                                        \
                for (int j = 0; j < w; j++) {                                                        \
                    const float s12 = t1[j] + t2[j], d12 = t1[j] - t2[j];                            \
                    const float s34 = t3[j] + t4[j], d34 = t3[j] - t4[j];                            \
                    out0[j] += t0[j] + s12 + s34; out1[j] += d12 + 2 * d34;                          \
                    out2[j] += s12 + 4 * s34; out3[j] += d12 + 8 * d34 + t5[j];                      \
                }                                                                                    \
            } else {                                                                                 \
                for (int j = 0; j < w; j++) {                                                        \
                    const float s12 = t1[j] + t2[j], d12 = t1[j] - t2[j];                            \
                    const float s34 = t3[j] + t4[j], d34 = t3[j] - t4[j];                            \
                    out0[j] = t0[j] + s12 + s34; out1[j] = d12 + 2 * d34;                            \
                    out2[j] = s12 + 4 * s34; out3[j] = d12 + 8 * d34 + t5[j];                        \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

WINO4_INPUT(wino4_input_512, __attribute__((target("avx512f"))))
WINO4_INPUT(wino4_input_avx2, __attribute__((target("avx2,fma"))))
WINO4_INPUT(wino4_input_base, )
WINO4_OUTPUT(wino4_output_512, __attribute__((target("avx512f"))))
WINO4_OUTPUT(wino4_output_avx2, __attribute__((target("avx2,fma"))))
WINO4_OUTPUT(wino4_output_base, )

void mcl_wino4_input(const float *x, int channels, int n, int h, int w, int r0, int r1, float *v, int tb, float *pad) {
    switch (mcl_dconv_isa()) {
    case 2: wino4_input_512(x, channels, n, h, w, r0, r1, v, tb, pad); break;
    case 1: wino4_input_avx2(x, channels, n, h, w, r0, r1, v, tb, pad); break;
    default: wino4_input_base(x, channels, n, h, w, r0, r1, v, tb, pad);
    }
}

void mcl_wino4_output(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb, float *y,
                      int accumulate, float *tmp) {
    switch (mcl_dconv_isa()) {
    case 2: wino4_output_512(m, channels, n, h, w, r0, r1, tb, y, accumulate, tmp); break;
    case 1: wino4_output_avx2(m, channels, n, h, w, r0, r1, tb, y, accumulate, tmp); break;
    default: wino4_output_base(m, channels, n, h, w, r0, r1, tb, y, accumulate, tmp);
    }
}
