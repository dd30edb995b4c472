#include "CDirectConv.h"
#include "isa.h"
#include <string.h>
#include <stdlib.h>
#include <immintrin.h>

long mcl_wino_plane(int channels, int tb) { return (long)channels * tb + 16; }

/* The transforms of Winograd F(2x2, 3x3) (`MCLNet.Winograd`: input, output, and the gradient
 * transform of dW) and F(4x4, 3x3) (`MCLNet.Winograd4`: input and output), where the matrices
 * B^T, A^T are written out, on CNHW activations, for tile rows [r0, r1) of the n * h/T tile
 * rows of T output rows each (T = 2 or 4).
 *
 * In C, compiled for AVX-512, AVX2 and the baseline, because the Swift package is compiled for
 * the baseline x86-64: the same loops in Swift ran on 4-lane SSE registers, and F(4x4)'s
 * transforms took twice the time of its 36 GEMMs (64 channels, 32x32). Each transform is two
 * passes: over whole rows of w (contiguous, vectorised), and over each tile's columns (the
 * compiler's interleaved loads and stores), writing T + 2 of the (T + 2)^2 planes at a time
 * (all of them from one loop put that many store streams at multiples of the plane size, a
 * multiple of 4 KB for the usual shapes, into one set of the L1 cache). */

#define UNROLL _Pragma("clang loop unroll(full)")
/* Row passes (w floats): vectorised 8 wide without interleaving, so that rows of 8 and 16 pixels
 * take the vector loop too (clang's default, 8 x 3, needed w >= 24 and ran the 16x16 and 8x8 maps
 * scalar: perf showed the scalar row loop as the top of the F(2x2) input transform on AVX2). */
#define ROWS _Pragma("clang loop vectorize_width(8) interleave_count(1)")


/* ---- Column passes of the two-pass transforms (AVX2, the baseline, and AVX-512 rows wider than
 * 32 pixels): 8 tiles at a time, then 4 (the 8x8 and 16x16 maps), the tile windows deinterleaved
 * from whole-row vector loads with shuffles, then a scalar tail. Written as plain loops, clang
 * left them scalar (the stride-2 / stride-4 tile windows; it emitted runtime alias checks and
 * scalar code): on an AVX2 machine they were the largest non-GEMM cost of the width-64 step
 * (F(2x2) input 6%, F(4x4) input 5.6%, the gradient transform 3.3% of perf samples;
 * docs/performance.md, session 10). The row buffers hold w + 2 floats (inputs) or w (gradient):
 * the vector loads stay inside them. */
typedef float f8 __attribute__((vector_size(32)));
#define LD8(p) ({ f8 _v; memcpy(&_v, (p), 32); _v; })
#define ST8(p, v) do { f8 _v = (v); memcpy((p), &_v, 32); } while (0)
typedef float f4 __attribute__((vector_size(16)));
typedef float v16 __attribute__((vector_size(64)));
#define LD4(p) ({ f4 _v; memcpy(&_v, (p), 16); _v; })
#define ST4(p, v) do { f4 _v = (v); memcpy((p), &_v, 16); } while (0)
#define EVENS(a, b) __builtin_shufflevector((a), (b), 0, 2, 4, 6, 8, 10, 12, 14)
#define ODDS(a, b) __builtin_shufflevector((a), (b), 1, 3, 5, 7, 9, 11, 13, 15)

/* F(2x2) input: tile tw's window tr[2tw .. 2tw+3] -> B^T columns into o[0..3][tw]. */
static inline __attribute__((always_inline)) void cols2_in(const float *tr, float *const o[4], int ntw) {
    int tw = 0;
    for (; tw + 8 <= ntw; tw += 8) {
        const float *p = tr + 2 * tw;
        const f8 l0 = LD8(p), l1 = LD8(p + 8), s0 = LD8(p + 2), s1 = LD8(p + 10);
        const f8 a = EVENS(l0, l1), b = ODDS(l0, l1), cc = EVENS(s0, s1), dd = ODDS(s0, s1);
        ST8(o[0] + tw, a - cc); ST8(o[1] + tw, b + cc); ST8(o[2] + tw, cc - b); ST8(o[3] + tw, b - dd);
    }
    for (; tw + 4 <= ntw; tw += 4) {  /* 8x8 maps: 4 tiles */
        const float *p = tr + 2 * tw;
        const f4 l0 = LD4(p), l1 = LD4(p + 4), s0 = LD4(p + 2), s1 = LD4(p + 6);
        const f4 a = __builtin_shufflevector(l0, l1, 0, 2, 4, 6), b = __builtin_shufflevector(l0, l1, 1, 3, 5, 7);
        const f4 cc = __builtin_shufflevector(s0, s1, 0, 2, 4, 6), dd = __builtin_shufflevector(s0, s1, 1, 3, 5, 7);
        ST4(o[0] + tw, a - cc); ST4(o[1] + tw, b + cc); ST4(o[2] + tw, cc - b); ST4(o[3] + tw, b - dd);
    }
    for (; tw < ntw; tw++) {
        const float a = tr[2 * tw], b = tr[2 * tw + 1], cc = tr[2 * tw + 2], dd = tr[2 * tw + 3];
        o[0][tw] = a - cc; o[1][tw] = b + cc; o[2][tw] = cc - b; o[3][tw] = b - dd;
    }
}
/* F(2x2) gradient (adjoint of the output transform): (x0, x1) = tr[2tw], tr[2tw+1]. */
static inline __attribute__((always_inline)) void cols2_grad(const float *tr, float *const o[4], int ntw) {
    int tw = 0;
    for (; tw + 8 <= ntw; tw += 8) {
        const f8 l0 = LD8(tr + 2 * tw), l1 = LD8(tr + 2 * tw + 8);
        const f8 x0 = EVENS(l0, l1), x1 = ODDS(l0, l1);
        ST8(o[0] + tw, x0); ST8(o[1] + tw, x0 + x1); ST8(o[2] + tw, x0 - x1); ST8(o[3] + tw, -x1);
    }
    for (; tw + 4 <= ntw; tw += 4) {
        const f4 l0 = LD4(tr + 2 * tw), l1 = LD4(tr + 2 * tw + 4);
        const f4 x0 = __builtin_shufflevector(l0, l1, 0, 2, 4, 6), x1 = __builtin_shufflevector(l0, l1, 1, 3, 5, 7);
        ST4(o[0] + tw, x0); ST4(o[1] + tw, x0 + x1); ST4(o[2] + tw, x0 - x1); ST4(o[3] + tw, -x1);
    }
    for (; tw < ntw; tw++) {
        const float x0 = tr[2 * tw], x1 = tr[2 * tw + 1];
        o[0][tw] = x0; o[1][tw] = x0 + x1; o[2][tw] = x0 - x1; o[3][tw] = -x1;
    }
}
/* F(4x4) input: window tr[4tw .. 4tw+5] -> o[0..5][tw]. BT4_STORE writes B^T's six rows of the
 * windows a0..a5 (vectors of tiles) with the store macro ST. */
#define BT4_STORE(ST) do {                                                                           \
    ST(o[0] + tw, 4 * a0 - 5 * a2 + a4); ST(o[1] + tw, a3 + a4 - 4 * (a1 + a2));                     \
    ST(o[2] + tw, 4 * (a1 - a2) + a4 - a3); ST(o[3] + tw, 2 * (a3 - a1) + a4 - a2);                  \
    ST(o[4] + tw, 2 * (a1 - a3) + a4 - a2); ST(o[5] + tw, 4 * a1 - 5 * a3 + a5);                     \
} while (0)
/* The stride-4 windows of 8 (or 4) tiles: a_k[l] = p[4l + k], k = 0..3. */
static inline __attribute__((always_inline)) void deinterleave4x8(const float *p, f8 a[4]) {
    const f8 l0 = LD8(p), l1 = LD8(p + 8), l2 = LD8(p + 16), l3 = LD8(p + 24);
    const f8 lo02 = __builtin_shufflevector(l0, l1, 0, 4, 8, 12, 2, 6, 10, 14);
    const f8 hi02 = __builtin_shufflevector(l2, l3, 0, 4, 8, 12, 2, 6, 10, 14);
    const f8 lo13 = __builtin_shufflevector(l0, l1, 1, 5, 9, 13, 3, 7, 11, 15);
    const f8 hi13 = __builtin_shufflevector(l2, l3, 1, 5, 9, 13, 3, 7, 11, 15);
    a[0] = __builtin_shufflevector(lo02, hi02, 0, 1, 2, 3, 8, 9, 10, 11);
    a[2] = __builtin_shufflevector(lo02, hi02, 4, 5, 6, 7, 12, 13, 14, 15);
    a[1] = __builtin_shufflevector(lo13, hi13, 0, 1, 2, 3, 8, 9, 10, 11);
    a[3] = __builtin_shufflevector(lo13, hi13, 4, 5, 6, 7, 12, 13, 14, 15);
}
static inline __attribute__((always_inline)) void deinterleave4x4(const float *p, f4 a[4]) {
    const f4 l0 = LD4(p), l1 = LD4(p + 4), l2 = LD4(p + 8), l3 = LD4(p + 12);
    const f4 lo01 = __builtin_shufflevector(l0, l1, 0, 4, 1, 5), hi01 = __builtin_shufflevector(l0, l1, 2, 6, 3, 7);
    const f4 lo23 = __builtin_shufflevector(l2, l3, 0, 4, 1, 5), hi23 = __builtin_shufflevector(l2, l3, 2, 6, 3, 7);
    a[0] = __builtin_shufflevector(lo01, lo23, 0, 1, 4, 5); a[1] = __builtin_shufflevector(lo01, lo23, 2, 3, 6, 7);
    a[2] = __builtin_shufflevector(hi01, hi23, 0, 1, 4, 5); a[3] = __builtin_shufflevector(hi01, hi23, 2, 3, 6, 7);
}
static inline __attribute__((always_inline)) void cols4_in(const float *tr, float *const o[6], int ntw) {
    int tw = 0;
    for (; tw + 8 <= ntw; tw += 8) {
        const float *p = tr + 4 * tw;
        f8 a[4];
        deinterleave4x8(p, a);
        const f8 a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        /* a4, a5 of tile k are a0, a1 of tile k + 1 (p[32], p[33] for the last) */
        const f8 n0 = {p[32]}, n1 = {p[33]};
        const f8 a4 = __builtin_shufflevector(a0, n0, 1, 2, 3, 4, 5, 6, 7, 8);
        const f8 a5 = __builtin_shufflevector(a1, n1, 1, 2, 3, 4, 5, 6, 7, 8);
        BT4_STORE(ST8);
    }
    for (; tw + 4 <= ntw; tw += 4) {  /* 16x16 maps: 4 tiles */
        const float *p = tr + 4 * tw;
        f4 a[4];
        deinterleave4x4(p, a);
        const f4 a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        const f4 n0 = {p[16]}, n1 = {p[17]};
        const f4 a4 = __builtin_shufflevector(a0, n0, 1, 2, 3, 4), a5 = __builtin_shufflevector(a1, n1, 1, 2, 3, 4);
        BT4_STORE(ST4);
    }
    for (; tw < ntw; tw++) {
        const float *p = tr + 4 * tw;
        const float a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3], a4 = p[4], a5 = p[5];
        o[0][tw] = 4 * a0 - 5 * a2 + a4;
        o[1][tw] = a3 + a4 - 4 * (a1 + a2);
        o[2][tw] = 4 * (a1 - a2) + a4 - a3;
        o[3][tw] = 2 * (a3 - a1) + a4 - a2;
        o[4][tw] = 2 * (a1 - a3) + a4 - a2;
        o[5][tw] = 4 * a1 - 5 * a3 + a5;
    }
}
/* F(4x4) gradient (adjoint of the output transform A^T): the tile's 4 values x0..x3 = tr[4tw ..
 * 4tw+3] -> A x = (x0, x0+x1+x2+x3, x0-x1+x2-x3, x0+2x1+4x2+8x3, x0-2x1+4x2-8x3, x3) in o[0..5][tw]. */
#define A4_STORE(ST) do {                                                                            \
    const __typeof__(x0) s02 = x0 + x2, s13 = x1 + x3, q02 = x0 + 4 * x2, q13 = 2 * x1 + 8 * x3;     \
    ST(o[0] + tw, x0); ST(o[1] + tw, s02 + s13); ST(o[2] + tw, s02 - s13);                           \
    ST(o[3] + tw, q02 + q13); ST(o[4] + tw, q02 - q13); ST(o[5] + tw, x3);                           \
} while (0)
static inline __attribute__((always_inline)) void cols4_grad(const float *tr, float *const o[6], int ntw) {
    int tw = 0;
    for (; tw + 8 <= ntw; tw += 8) {
        f8 a[4];
        deinterleave4x8(tr + 4 * tw, a);
        const f8 x0 = a[0], x1 = a[1], x2 = a[2], x3 = a[3];
        A4_STORE(ST8);
    }
    for (; tw + 4 <= ntw; tw += 4) {
        f4 a[4];
        deinterleave4x4(tr + 4 * tw, a);
        const f4 x0 = a[0], x1 = a[1], x2 = a[2], x3 = a[3];
        A4_STORE(ST4);
    }
    for (; tw < ntw; tw++) {
        const float x0 = tr[4 * tw], x1 = tr[4 * tw + 1], x2 = tr[4 * tw + 2], x3 = tr[4 * tw + 3];
#define STS(p, v) (*(p) = (v))
        A4_STORE(STS);
#undef STS
    }
}

#define WINO2_INPUT(NAME, TARGET)                                                                        \
TARGET static void NAME(const float *x, int channels, int n, int h, int w, int r0, int r1,          \
                        float *v, int tb, float *pad) {                                              \
    const int nth = h / 2, ntw = w / 2, wp = w + 2;                                              \
    const long plane = mcl_wino_plane(channels, tb);                                                          \
    float *t[4];                                                                                     \
    for (int i = 0; i < 4; i++) { t[i] = pad + i * wp; memset(t[i], 0, wp * sizeof(float)); }        \
    float *zero = pad + 4 * wp;                                                                      \
    memset(zero, 0, w * sizeof(float));                                                              \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            const float *img = x + ((long)c * n + ni) * h * w;                                       \
            const float *d[4];                                                                       \
            for (int k = 0; k < 4; k++) {                                                            \
                const int i = 2 * th - 1 + k;                                                        \
                d[k] = i >= 0 && i < h ? img + (long)i * w : zero;                                   \
            }                                                                                        \
            const float *restrict d0 = d[0], *restrict d1 = d[1], *restrict d2 = d[2], *restrict d3 = d[3]; \
            float *restrict t0 = t[0] + 1, *restrict t1 = t[1] + 1, *restrict t2 = t[2] + 1, *restrict t3 = t[3] + 1; \
            ROWS                                                                                     \
            for (int j = 0; j < w; j++) {                                                            \
                t0[j] = d0[j] - d2[j]; t1[j] = d1[j] + d2[j];                                        \
                t2[j] = d2[j] - d1[j]; t3[j] = d1[j] - d3[j];                                        \
            }                                                                                        \
            const long base = (long)c * tb + (long)(r - r0) * ntw;                                   \
            for (int i = 0; i < 4; i++) {                                                            \
                float *o[4];                                                                         \
                for (int e = 0; e < 4; e++) o[e] = v + (4 * i + e) * plane + base;                   \
                cols2_in(t[i], o, ntw);                                                                  \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

#define WINO2_OUTPUT(NAME, TARGET)                                                                   \
TARGET static void NAME(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb,  \
                        float *y, int accumulate, float *tmp) {                                      \
    const int nth = h / 2, ntw = w / 2;                                                              \
    const long plane = mcl_wino_plane(channels, tb);                                                          \
    float *restrict t0 = tmp, *restrict t1 = tmp + w, *restrict t2 = tmp + 2 * w, *restrict t3 = tmp + 3 * w; \
    float *t[4] = {t0, t1, t2, t3};                                                                  \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            float *restrict out0 = y + (((long)c * n + ni) * h + 2 * th) * w;                        \
            float *restrict out1 = out0 + w;                                                         \
            const float *mb = m + (long)c * tb + (long)(r - r0) * ntw;                               \
            for (int i = 0; i < 4; i++) {                                                            \
                const float *restrict i0 = mb + 4 * i * plane;                                       \
                const float *restrict i1 = i0 + plane, *restrict i2 = i1 + plane, *restrict i3 = i2 + plane; \
                float *restrict tr = t[i];                                                           \
                int tw = 0;                                                                          \
                for (; tw + 8 <= ntw; tw += 8) {                                                     \
                    const f8 a = LD8(i0 + tw), b = LD8(i1 + tw), cc = LD8(i2 + tw), dd = LD8(i3 + tw); \
                    const f8 q0 = a + b + cc, q1 = b - cc - dd;                                      \
                    ST8(tr + 2 * tw, __builtin_shufflevector(q0, q1, 0, 8, 1, 9, 2, 10, 3, 11));     \
                    ST8(tr + 2 * tw + 8, __builtin_shufflevector(q0, q1, 4, 12, 5, 13, 6, 14, 7, 15)); \
                }                                                                                    \
                for (; tw + 4 <= ntw; tw += 4) {                                                     \
                    const f4 a = LD4(i0 + tw), b = LD4(i1 + tw), cc = LD4(i2 + tw), dd = LD4(i3 + tw); \
                    const f4 q0 = a + b + cc, q1 = b - cc - dd;                                      \
                    ST4(tr + 2 * tw, __builtin_shufflevector(q0, q1, 0, 4, 1, 5));                   \
                    ST4(tr + 2 * tw + 4, __builtin_shufflevector(q0, q1, 2, 6, 3, 7));               \
                }                                                                                    \
                for (; tw < ntw; tw++) {                                                             \
                    const float a = i0[tw], b = i1[tw], cc = i2[tw], dd = i3[tw];                    \
                    tr[2 * tw] = a + b + cc; tr[2 * tw + 1] = b - cc - dd;                           \
                }                                                                                    \
            }                                                                                        \
            if (accumulate) {                                                                        \
                ROWS                                                                                 \
                for (int j = 0; j < w; j++) {                                                        \
                    out0[j] += t0[j] + t1[j] + t2[j]; out1[j] += t1[j] - t2[j] - t3[j];              \
                }                                                                                    \
            } else {                                                                                 \
                ROWS                                                                                 \
                for (int j = 0; j < w; j++) {                                                        \
                    out0[j] = t0[j] + t1[j] + t2[j]; out1[j] = t1[j] - t2[j] - t3[j];                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

/* M[e][c][l] = (A dY_l A^T)[e]: the adjoint of the output transform, for dW. */
#define WINO2_GRAD(NAME, TARGET)                                                                         \
TARGET static void NAME(const float *dy, int channels, int n, int h, int w, int r0, int r1,         \
                        float *m, int tb, float *tmp) {                                              \
    const int nth = h / 2, ntw = w / 2;                                                              \
    const long plane = mcl_wino_plane(channels, tb);                                                          \
    float *restrict t0 = tmp, *restrict t1 = tmp + w, *restrict t2 = tmp + 2 * w, *restrict t3 = tmp + 3 * w; \
    float *t[4] = {t0, t1, t2, t3};                                                                  \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            const float *restrict in0 = dy + (((long)c * n + ni) * h + 2 * th) * w;                  \
            const float *restrict in1 = in0 + w;                                                     \
            ROWS                                                                                     \
            for (int j = 0; j < w; j++) {                                                            \
                const float p = in0[j], s = in1[j];                                                  \
                t0[j] = p; t1[j] = p + s; t2[j] = p - s; t3[j] = -s;                                 \
            }                                                                                        \
            const long base = (long)c * tb + (long)(r - r0) * ntw;                                   \
            for (int i = 0; i < 4; i++) {                                                            \
                float *o[4];                                                                         \
                for (int e = 0; e < 4; e++) o[e] = m + (4 * i + e) * plane + base;                   \
                cols2_grad(t[i], o, ntw);                                                                  \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

/* The frame F(4x4)'s output and gradient transforms share: tiles per column and row, the plane
 * stride, and six rows t0..t5 (t[i]) of w floats in `tmp` for the tile row's intermediate rows. */
#define WINO4_ROWS_OF(tmp)                                                                           \
    const int nth = h / 4, ntw = w / 4;                                                              \
    const long plane = mcl_wino_plane(channels, tb);                                                 \
    float *restrict t0 = (tmp), *restrict t1 = (tmp) + w, *restrict t2 = (tmp) + 2 * w;              \
    float *restrict t3 = (tmp) + 3 * w, *restrict t4 = (tmp) + 4 * w, *restrict t5 = (tmp) + 5 * w;  \
    float *t[6] = {t0, t1, t2, t3, t4, t5};

/* M[e][c][l] = (A dY_l A^T)[e] for F(4x4) (A = the transpose of Winograd4's A^T): dW's gradient
 * transform. The tile's 4 rows of dY are inside the map (h is a multiple of 4). */
#define WINO4_GRAD(NAME, TARGET)                                                                         \
TARGET static void NAME(const float *dy, int channels, int n, int h, int w, int r0, int r1,         \
                        float *m, int tb, float *tmp) {                                              \
    WINO4_ROWS_OF(tmp)                                                                               \
    for (int c = 0; c < channels; c++) {                                                             \
        for (int r = r0; r < r1; r++) {                                                              \
            const int ni = r / nth, th = r % nth;                                                    \
            const float *restrict in0 = dy + (((long)c * n + ni) * h + 4 * th) * w;                  \
            const float *restrict in1 = in0 + w, *restrict in2 = in1 + w, *restrict in3 = in2 + w;   \
            ROWS                                                                                     \
            for (int j = 0; j < w; j++) {                                                            \
                const float x0 = in0[j], x1 = in1[j], x2 = in2[j], x3 = in3[j];                      \
                const float s02 = x0 + x2, s13 = x1 + x3, q02 = x0 + 4 * x2, q13 = 2 * x1 + 8 * x3;  \
                t0[j] = x0; t1[j] = s02 + s13; t2[j] = s02 - s13;                                    \
                t3[j] = q02 + q13; t4[j] = q02 - q13; t5[j] = x3;                                    \
            }                                                                                        \
            const long base = (long)c * tb + (long)(r - r0) * ntw;                                   \
            for (int i = 0; i < 6; i++) {                                                            \
                float *o[6];                                                                         \
                for (int e = 0; e < 6; e++) o[e] = m + (6 * i + e) * plane + base;                   \
                cols4_grad(t[i], o, ntw);                                                            \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

#define WINO4_INPUT(NAME, TARGET)                                                                        \
TARGET static void NAME(const float *x, int channels, int n, int h, int w, int r0, int r1,          \
                        float *v, int tb, float *pad) {                                              \
    const int nth = h / 4, ntw = w / 4, wp = w + 2;                                              \
    const long plane = mcl_wino_plane(channels, tb);                                                          \
    float *t[6];                                                                                     \
    for (int i = 0; i < 6; i++) { t[i] = pad + i * wp; memset(t[i], 0, wp * sizeof(float)); }        \
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
            ROWS                                                                                     \
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
                float *o[6];                                                                         \
                for (int e = 0; e < 6; e++) o[e] = v + (6 * i + e) * plane + base;                   \
                cols4_in(t[i], o, ntw);                                                                  \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

#define WINO4_OUTPUT(NAME, TARGET)                                                                   \
TARGET static void NAME(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb,  \
                        float *y, int accumulate, float *tmp) {                                      \
    WINO4_ROWS_OF(tmp)                                                                               \
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
                int tw = 0;                                                                          \
                for (; tw + 8 <= ntw; tw += 8) {                                                     \
                    const f8 a0 = LD8(i0 + tw), a1 = LD8(i1 + tw), a2 = LD8(i2 + tw);                \
                    const f8 a3 = LD8(i3 + tw), a4 = LD8(i4 + tw), a5 = LD8(i5 + tw);                \
                    const f8 s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;             \
                    const f8 q0 = a0 + s12 + s34, q1 = d12 + 2 * d34, q2 = s12 + 4 * s34, q3 = d12 + 8 * d34 + a5; \
                    const f8 l01 = __builtin_shufflevector(q0, q1, 0, 8, 1, 9, 2, 10, 3, 11);       \
                    const f8 h01 = __builtin_shufflevector(q0, q1, 4, 12, 5, 13, 6, 14, 7, 15);     \
                    const f8 l23 = __builtin_shufflevector(q2, q3, 0, 8, 1, 9, 2, 10, 3, 11);       \
                    const f8 h23 = __builtin_shufflevector(q2, q3, 4, 12, 5, 13, 6, 14, 7, 15);     \
                    ST8(tr + 4 * tw, __builtin_shufflevector(l01, l23, 0, 1, 8, 9, 2, 3, 10, 11));   \
                    ST8(tr + 4 * tw + 8, __builtin_shufflevector(l01, l23, 4, 5, 12, 13, 6, 7, 14, 15)); \
                    ST8(tr + 4 * tw + 16, __builtin_shufflevector(h01, h23, 0, 1, 8, 9, 2, 3, 10, 11)); \
                    ST8(tr + 4 * tw + 24, __builtin_shufflevector(h01, h23, 4, 5, 12, 13, 6, 7, 14, 15)); \
                }                                                                                    \
                for (; tw + 4 <= ntw; tw += 4) {                                                     \
                    const f4 a0 = LD4(i0 + tw), a1 = LD4(i1 + tw), a2 = LD4(i2 + tw);                \
                    const f4 a3 = LD4(i3 + tw), a4 = LD4(i4 + tw), a5 = LD4(i5 + tw);                \
                    const f4 s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;             \
                    const f4 q0 = a0 + s12 + s34, q1 = d12 + 2 * d34, q2 = s12 + 4 * s34, q3 = d12 + 8 * d34 + a5; \
                    const f4 l01 = __builtin_shufflevector(q0, q1, 0, 4, 1, 5);                      \
                    const f4 h01 = __builtin_shufflevector(q0, q1, 2, 6, 3, 7);                      \
                    const f4 l23 = __builtin_shufflevector(q2, q3, 0, 4, 1, 5);                      \
                    const f4 h23 = __builtin_shufflevector(q2, q3, 2, 6, 3, 7);                      \
                    ST4(tr + 4 * tw, __builtin_shufflevector(l01, l23, 0, 1, 4, 5));                 \
                    ST4(tr + 4 * tw + 4, __builtin_shufflevector(l01, l23, 2, 3, 6, 7));             \
                    ST4(tr + 4 * tw + 8, __builtin_shufflevector(h01, h23, 0, 1, 4, 5));             \
                    ST4(tr + 4 * tw + 12, __builtin_shufflevector(h01, h23, 2, 3, 6, 7));            \
                }                                                                                    \
                for (; tw < ntw; tw++) {                                                             \
                    const float a0 = i0[tw], a1 = i1[tw], a2 = i2[tw], a3 = i3[tw], a4 = i4[tw], a5 = i5[tw]; \
                    const float s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;          \
                    tr[4 * tw] = a0 + s12 + s34; tr[4 * tw + 1] = d12 + 2 * d34;                     \
                    tr[4 * tw + 2] = s12 + 4 * s34; tr[4 * tw + 3] = d12 + 8 * d34 + a5;             \
                }                                                                                    \
            }                                                                                        \
            if (accumulate) {                                                                        \
                ROWS                                                                                 \
                for (int j = 0; j < w; j++) {                                                        \
                    const float s12 = t1[j] + t2[j], d12 = t1[j] - t2[j];                            \
                    const float s34 = t3[j] + t4[j], d34 = t3[j] - t4[j];                            \
                    out0[j] += t0[j] + s12 + s34; out1[j] += d12 + 2 * d34;                          \
                    out2[j] += s12 + 4 * s34; out3[j] += d12 + 8 * d34 + t5[j];                      \
                }                                                                                    \
            } else {                                                                                 \
                ROWS                                                                                 \
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

/* ---- AVX-512 transforms for rows of at most 32 pixels (every CIFAR layer), in registers.
 * Each input row is one or two vectors (masked loads, zero beyond w); the row pass combines
 * whole rows, and each tile window of the (zero-padded) result is gathered with a zero-masking
 * two-source permute, so no row goes through memory. The two-pass versions above store each
 * combined row and load it back unaligned a few instructions later: those loads cannot be
 * forwarded from the stores and wait until the stores before them (the transformed planes,
 * missing the cache) have been written, which perf showed as half of those functions' time. */

/* Lanes tw < ntw: index S tw + k - 1 into the 32 values (lo, hi) of a row, where index -1 and
 * indices >= w are the zero padding (masked off). */
__attribute__((target("avx512f"))) static inline void window_index(int S, int k, int w, int ntw, __m512i *idx, __mmask16 *mask) {
    int ix[16]; unsigned m = 0;
    for (int l = 0; l < 16; l++) {
        const int j = S * l + k - 1;
        ix[l] = j >= 0 && j < 32 ? j : 0;
        if (l < ntw && j >= 0 && j < w) m |= 1u << l;
    }
    *idx = _mm512_loadu_si512(ix);
    *mask = (__mmask16)m;
}

/* The first ntw lanes of v to o: an unmasked 512-, 256-, 128- or 64-bit store or a scalar one for the
 * usual 16, 8, 4, 2 or 1 tiles per row (masked 512-bit stores of 8 lanes were the hottest
 * instructions of the input transform on Zen 4), a masked store otherwise. */
__attribute__((target("avx512f"))) static inline void store_tiles(float *o, __m512 v, int ntw, __mmask16 mt) {
    switch (ntw) {
    case 16: _mm512_storeu_ps(o, v); break;
    case 8: _mm256_storeu_ps(o, _mm512_castps512_ps256(v)); break;
    case 4: _mm_storeu_ps(o, _mm512_castps512_ps128(v)); break;
    case 2: _mm_storel_pi((__m64 *)o, _mm512_castps512_ps128(v)); break;
    case 1: _mm_store_ss(o, _mm512_castps512_ps128(v)); break;
    default: _mm512_mask_storeu_ps(o, mt, v);
    }
}

#define ROW_LOADS(img, i, h, w, mlo, mhi, lo, hi) do {                                              \
    if ((i) >= 0 && (i) < (h)) {                                                                     \
        lo = _mm512_maskz_loadu_ps(mlo, (img) + (long)(i) * (w));                                    \
        hi = (w) > 16 ? _mm512_maskz_loadu_ps(mhi, (img) + (long)(i) * (w) + 16) : _mm512_setzero_ps(); \
    } else { lo = _mm512_setzero_ps(); hi = _mm512_setzero_ps(); }                                   \
} while (0)

__attribute__((target("avx512f"))) static void wino2_input_reg(const float *x, int channels, int n, int h, int w,
                                                              int r0, int r1, float *v, int tb) {
    const int nth = h / 2, ntw = w / 2;
    const long plane = mcl_wino_plane(channels, tb);
    const __mmask16 mlo = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    const __mmask16 mhi = w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
    const __mmask16 mt = ntw >= 16 ? 0xFFFF : (__mmask16)((1u << ntw) - 1);
    __m512i ix[4]; __mmask16 mk[4];
    for (int k = 0; k < 4; k++) window_index(2, k, w, ntw, &ix[k], &mk[k]);
    for (int c = 0; c < channels; c++) {
        for (int r = r0; r < r1; r++) {
            const int ni = r / nth, th = r % nth;
            const float *img = x + ((long)c * n + ni) * h * w;
            __m512 lo[4], hi[4];
            for (int k = 0; k < 4; k++) ROW_LOADS(img, 2 * th - 1 + k, h, w, mlo, mhi, lo[k], hi[k]);
            /* B^T over the rows */
            __m512 tl[4], th_[4];
            tl[0] = _mm512_sub_ps(lo[0], lo[2]); th_[0] = _mm512_sub_ps(hi[0], hi[2]);
            tl[1] = _mm512_add_ps(lo[1], lo[2]); th_[1] = _mm512_add_ps(hi[1], hi[2]);
            tl[2] = _mm512_sub_ps(lo[2], lo[1]); th_[2] = _mm512_sub_ps(hi[2], hi[1]);
            tl[3] = _mm512_sub_ps(lo[1], lo[3]); th_[3] = _mm512_sub_ps(hi[1], hi[3]);
            const long base = (long)c * tb + (long)(r - r0) * ntw;
            for (int i = 0; i < 4; i++) {
                const __m512 a = _mm512_maskz_permutex2var_ps(mk[0], tl[i], ix[0], th_[i]);
                const __m512 b = _mm512_maskz_permutex2var_ps(mk[1], tl[i], ix[1], th_[i]);
                const __m512 cc = _mm512_maskz_permutex2var_ps(mk[2], tl[i], ix[2], th_[i]);
                const __m512 dd = _mm512_maskz_permutex2var_ps(mk[3], tl[i], ix[3], th_[i]);
                float *o = v + 4 * i * plane + base;
                store_tiles(o, _mm512_sub_ps(a, cc), ntw, mt);
                store_tiles(o + plane, _mm512_add_ps(b, cc), ntw, mt);
                store_tiles(o + 2 * plane, _mm512_sub_ps(cc, b), ntw, mt);
                store_tiles(o + 3 * plane, _mm512_sub_ps(b, dd), ntw, mt);
            }
        }
    }
}

__attribute__((target("avx512f"))) static void wino2_grad_reg(const float *dy, int channels, int n, int h, int w,
                                                             int r0, int r1, float *m, int tb) {
    const int nth = h / 2, ntw = w / 2;
    const long plane = mcl_wino_plane(channels, tb);
    const __mmask16 mlo = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    const __mmask16 mhi = w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
    const __mmask16 mt = ntw >= 16 ? 0xFFFF : (__mmask16)((1u << ntw) - 1);
    __m512i ix[2]; __mmask16 mk[2];
    for (int k = 0; k < 2; k++) window_index(2, k + 1, w, ntw, &ix[k], &mk[k]);  /* 2 tw, 2 tw + 1 */
    for (int c = 0; c < channels; c++) {
        for (int r = r0; r < r1; r++) {
            const int ni = r / nth, th = r % nth;
            const float *img = dy + ((long)c * n + ni) * h * w;
            __m512 pl, ph, sl, sh;
            ROW_LOADS(img, 2 * th, h, w, mlo, mhi, pl, ph);
            ROW_LOADS(img, 2 * th + 1, h, w, mlo, mhi, sl, sh);
            /* rows of A dY: p, p + s, p - s, -s */
            const __m512 z = _mm512_setzero_ps();
            const __m512 tl[4] = {pl, _mm512_add_ps(pl, sl), _mm512_sub_ps(pl, sl), _mm512_sub_ps(z, sl)};
            const __m512 tH[4] = {ph, _mm512_add_ps(ph, sh), _mm512_sub_ps(ph, sh), _mm512_sub_ps(z, sh)};
            const long base = (long)c * tb + (long)(r - r0) * ntw;
            for (int i = 0; i < 4; i++) {
                const __m512 x0 = _mm512_maskz_permutex2var_ps(mk[0], tl[i], ix[0], tH[i]);
                const __m512 x1 = _mm512_maskz_permutex2var_ps(mk[1], tl[i], ix[1], tH[i]);
                float *o = m + 4 * i * plane + base;
                store_tiles(o, x0, ntw, mt);
                store_tiles(o + plane, _mm512_add_ps(x0, x1), ntw, mt);
                store_tiles(o + 2 * plane, _mm512_sub_ps(x0, x1), ntw, mt);
                store_tiles(o + 3 * plane, _mm512_sub_ps(z, x1), ntw, mt);
            }
        }
    }
}

/* F(4x4)'s kernels below take G = 32 / w tile rows at a time on maps of 8 and 16 pixels (4 and 2 tile
 * rows, 8 tiles: what one tile row of a 32-pixel map has), G = 1 otherwise: the 32 values (lo, hi)
 * of a "row" hold row k of each of the G tile rows side by side, so the row pass runs on whole
 * vectors and each plane gets 8 tiles per store. One tile row of an 8x8 map used 2 of 16 lanes and
 * 36 two-float stores for 2 tiles. The G tile rows' tiles are consecutive in the planes (tile
 * (r - r0) ntw + tw), so grouping changes no value and no position. */
static inline int wino4_group(int w) { return w == 8 || w == 16 ? 32 / w : 1; }

/* Lanes l < G ntw (tile tw = l % ntw of tile row g = l / ntw): index g w + 4 tw + k - 1 into the 32
 * values of the grouped row; the window's -1 and w columns are the zero padding (masked off). */
__attribute__((target("avx512f"))) static inline void group_window_index(int k, int w, int ntw, int G, __m512i *idx, __mmask16 *mask) {
    int ix[16]; unsigned m = 0;
    for (int l = 0; l < 16; l++) {
        const int g = l / ntw, j = 4 * (l % ntw) + k - 1;
        ix[l] = l < G * ntw && j >= 0 && j < w ? g * w + j : 0;
        if (l < G * ntw && j >= 0 && j < w) m |= 1u << l;
    }
    *idx = _mm512_loadu_si512(ix);
    *mask = (__mmask16)m;
}

/* Two 8-float halves as one vector (AVX512F's 64-bit-lane insert: the 32-bit one needs AVX512DQ). */
#define HIGH256(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
#define JOIN256(a, b) _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)), _mm256_castps_pd(b), 1))

/* The G tile rows r .. r + cnt - 1 of the channel plane `chan` (n maps of h x w): each one's map
 * and first row (4 th); rows of tile rows beyond cnt read as zeros (img = 0). */
typedef struct { const float *img[4]; int row[4]; } tile_rows;
__attribute__((always_inline)) static inline tile_rows group_rows(const float *chan, int nth, int h, int w, int G, int r, int cnt) {
    tile_rows t;
    int ni = r / nth, th = r % nth;
    for (int g = 0; g < G; g++) {
        t.img[g] = g < cnt ? chan + (long)ni * h * w : 0;
        t.row[g] = 4 * th;
        if (++th == nth) { th = 0; ni++; }
    }
    return t;
}

/* Map row t.row[g] + i of each tile row of `t`, zeros outside the map, as the 32 values (lo, hi). */
__attribute__((target("avx512f"), always_inline)) static inline void group_row_loads(const tile_rows *t, int h, int w, int G, int i,
                                                                     __m512 *lo, __m512 *hi) {
#define ROW_PTR(g) (t->img[g] && t->row[g] + i >= 0 && t->row[g] + i < h ? t->img[g] + (long)(t->row[g] + i) * w : (const float *)0)
    if (G == 1) {  /* up to 32 pixels: the first w of (lo, hi) */
        const float *p = ROW_PTR(0);
        const __mmask16 mlo = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
        const __mmask16 mhi = w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
        *lo = p ? _mm512_maskz_loadu_ps(mlo, p) : _mm512_setzero_ps();
        *hi = p && w > 16 ? _mm512_maskz_loadu_ps(mhi, p + 16) : _mm512_setzero_ps();
    } else if (G == 2) {  /* 16 pixels: one vector per tile row */
        const float *p0 = ROW_PTR(0), *p1 = ROW_PTR(1);
        *lo = p0 ? _mm512_loadu_ps(p0) : _mm512_setzero_ps();
        *hi = p1 ? _mm512_loadu_ps(p1) : _mm512_setzero_ps();
    } else {              /* 8 pixels: two tile rows per vector */
        __m256 q[4];
        for (int g = 0; g < 4; g++) { const float *p = ROW_PTR(g); q[g] = p ? _mm256_loadu_ps(p) : _mm256_setzero_ps(); }
        *lo = JOIN256(q[0], q[1]);
        *hi = JOIN256(q[2], q[3]);
    }
#undef ROW_PTR
}

/* 8 tiles (every tile row group of the 8-, 16- and 32-pixel maps) with one 256-bit store, fewer
 * (a last group, other widths) masked. */
#define STORE_GROUP(o, v) do { if (tiles == 8) _mm256_storeu_ps((o), _mm512_castps512_ps256(v));     \
                               else _mm512_mask_storeu_ps((o), mt, (v)); } while (0)

__attribute__((target("avx512f"), always_inline)) static inline void wino4_input_rows(const float *x, int channels, int n, int h, int w,
                                                                                   int r0, int r1, float *v, int tb, const int G) {
    const int nth = h / 4, ntw = w / 4;
    const long plane = mcl_wino_plane(channels, tb);
    const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), five = _mm512_set1_ps(5);
    __m512i ix[6]; __mmask16 mk[6];
    for (int k = 0; k < 6; k++) group_window_index(k, w, ntw, G, &ix[k], &mk[k]);
    for (int c = 0; c < channels; c++) {
        const float *chan = x + (long)c * n * h * w;
        for (int r = r0; r < r1; r += G) {
            const int cnt = r1 - r < G ? r1 - r : G, tiles = cnt * ntw;
            const __mmask16 mt = (__mmask16)((1u << tiles) - 1);
            const tile_rows rows = group_rows(chan, nth, h, w, G, r, cnt);
            __m512 L[6], H[6];
            for (int k = 0; k < 6; k++) group_row_loads(&rows, h, w, G, k - 1, &L[k], &H[k]);
            __m512 T[2][6];
            for (int half = 0; half < 2; half++) {
                const __m512 *a = half ? H : L;
                const __m512 s12 = _mm512_add_ps(a[1], a[2]), d12 = _mm512_sub_ps(a[1], a[2]);
                const __m512 d31 = _mm512_sub_ps(a[3], a[1]), a4m2 = _mm512_sub_ps(a[4], a[2]);
                T[half][0] = _mm512_add_ps(_mm512_fmsub_ps(four, a[0], _mm512_mul_ps(five, a[2])), a[4]);
                T[half][1] = _mm512_fnmadd_ps(four, s12, _mm512_add_ps(a[3], a[4]));
                T[half][2] = _mm512_fmadd_ps(four, d12, _mm512_sub_ps(a[4], a[3]));
                T[half][3] = _mm512_fmadd_ps(two, d31, a4m2);
                T[half][4] = _mm512_fnmadd_ps(two, d31, a4m2);
                T[half][5] = _mm512_add_ps(_mm512_fmsub_ps(four, a[1], _mm512_mul_ps(five, a[3])), a[5]);
            }
            const long base = (long)c * tb + (long)(r - r0) * ntw;
            for (int i = 0; i < 6; i++) {
                __m512 a[6];
                for (int k = 0; k < 6; k++) a[k] = _mm512_maskz_permutex2var_ps(mk[k], T[0][i], ix[k], T[1][i]);
                const __m512 s12 = _mm512_add_ps(a[1], a[2]), d12 = _mm512_sub_ps(a[1], a[2]);
                const __m512 d31 = _mm512_sub_ps(a[3], a[1]), a4m2 = _mm512_sub_ps(a[4], a[2]);
                float *o = v + 6 * i * plane + base;
                STORE_GROUP(o, _mm512_add_ps(_mm512_fmsub_ps(four, a[0], _mm512_mul_ps(five, a[2])), a[4]));
                STORE_GROUP(o + plane, _mm512_fnmadd_ps(four, s12, _mm512_add_ps(a[3], a[4])));
                STORE_GROUP(o + 2 * plane, _mm512_fmadd_ps(four, d12, _mm512_sub_ps(a[4], a[3])));
                STORE_GROUP(o + 3 * plane, _mm512_fmadd_ps(two, d31, a4m2));
                STORE_GROUP(o + 4 * plane, _mm512_fnmadd_ps(two, d31, a4m2));
                STORE_GROUP(o + 5 * plane, _mm512_add_ps(_mm512_fmsub_ps(four, a[1], _mm512_mul_ps(five, a[3])), a[5]));
            }
        }
    }
}

/* Y = A^T M A of the G tile rows at a time: per row i of the tile, the 6 planes' 8 (or fewer) tiles
 * give q_p = (A^T m_i)_p; the 4 output rows o combine q over i; the 4 vectors of output row o (one
 * per column p, lanes = tiles) interleave into the 32 values of the grouped row (value 4 t + p),
 * which go to the G tile rows' maps. The operations and their order are those of WINO4_OUTPUT. */
__attribute__((target("avx512f"), always_inline)) static inline void wino4_output_rows(const float *m, int channels, int n, int h, int w,
                                                                                    int r0, int r1, int tb, float *y, int accumulate, const int G) {
    const int nth = h / 4, ntw = w / 4;
    const long plane = mcl_wino_plane(channels, tb);
    const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
    /* value v = 4 t + p of the grouped row <- lane t of column p: lo = tiles 0-3 and hi = 4-7 of
     * (column 0 | column 1) and (column 2 | column 3) */
    int il[16], ih[16];
    for (int v = 0; v < 16; v++) {
        const int t = v / 4, p = v % 4;
        il[v] = (p / 2) * 16 + (p % 2) * 8 + t;
        ih[v] = il[v] + 4;
    }
    const __m512i ilo = _mm512_loadu_si512(il), ihi = _mm512_loadu_si512(ih);
    const __mmask16 mrow = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    const __mmask16 mrow_hi = w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
    for (int c = 0; c < channels; c++) {
        float *chan = y + (long)c * n * h * w;
        for (int r = r0; r < r1; r += G) {
            const int cnt = r1 - r < G ? r1 - r : G, tiles = cnt * ntw;
            const __mmask16 mt = (__mmask16)((1u << tiles) - 1);
            const float *mb = m + (long)c * tb + (long)(r - r0) * ntw;
            __m512 q[6][4];
            for (int i = 0; i < 6; i++) {
                __m512 a[6];
                for (int e = 0; e < 6; e++) {
                    const float *src = mb + (6 * i + e) * plane;
                    a[e] = tiles == 8 ? _mm512_castps256_ps512(_mm256_loadu_ps(src)) : _mm512_maskz_loadu_ps(mt, src);
                }
                const __m512 s12 = _mm512_add_ps(a[1], a[2]), d12 = _mm512_sub_ps(a[1], a[2]);
                const __m512 s34 = _mm512_add_ps(a[3], a[4]), d34 = _mm512_sub_ps(a[3], a[4]);
                q[i][0] = _mm512_add_ps(_mm512_add_ps(a[0], s12), s34);
                q[i][1] = _mm512_fmadd_ps(two, d34, d12);
                q[i][2] = _mm512_fmadd_ps(four, s34, s12);
                q[i][3] = _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), a[5]);
            }
            const tile_rows rows = group_rows(chan, nth, h, w, G, r, cnt);
            __m512 out[4][4];  /* out[o][p]: output row o, column p, lanes = tiles */
            for (int p = 0; p < 4; p++) {
                const __m512 s12 = _mm512_add_ps(q[1][p], q[2][p]), d12 = _mm512_sub_ps(q[1][p], q[2][p]);
                const __m512 s34 = _mm512_add_ps(q[3][p], q[4][p]), d34 = _mm512_sub_ps(q[3][p], q[4][p]);
                out[0][p] = _mm512_add_ps(_mm512_add_ps(q[0][p], s12), s34);
                out[1][p] = _mm512_fmadd_ps(two, d34, d12);
                out[2][p] = _mm512_fmadd_ps(four, s34, s12);
                out[3][p] = _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), q[5][p]);
            }
            for (int o = 0; o < 4; o++) {
                const __m512 *col = out[o];
                const __m512 p01 = JOIN256(_mm512_castps512_ps256(col[0]), _mm512_castps512_ps256(col[1]));
                const __m512 p23 = JOIN256(_mm512_castps512_ps256(col[2]), _mm512_castps512_ps256(col[3]));
                const __m512 lo = _mm512_permutex2var_ps(p01, ilo, p23), hi = _mm512_permutex2var_ps(p01, ihi, p23);
                /* the grouped row's values g w .. g w + w - 1 to row 4 th + o of tile row g's map */
#define PUT(dst, v, mask) do { float *d_ = (dst);                                                     \
                    _mm512_mask_storeu_ps(d_, (mask), accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps((mask), d_), (v)) : (v)); } while (0)
#define PUT8(dst, v) do { float *d_ = (dst); const __m256 v_ = (v);                                    \
                    _mm256_storeu_ps(d_, accumulate ? _mm256_add_ps(_mm256_loadu_ps(d_), v_) : v_); } while (0)
#define OUT_ROW(g) ((float *)rows.img[g] + (long)(rows.row[g] + o) * w)
                if (G == 4) {
                    PUT8(OUT_ROW(0), _mm512_castps512_ps256(lo));
                    if (cnt > 1) PUT8(OUT_ROW(1), HIGH256(lo));
                    if (cnt > 2) PUT8(OUT_ROW(2), _mm512_castps512_ps256(hi));
                    if (cnt > 3) PUT8(OUT_ROW(3), HIGH256(hi));
                } else if (G == 2) {
                    PUT(OUT_ROW(0), lo, 0xFFFF);
                    if (cnt > 1) PUT(OUT_ROW(1), hi, 0xFFFF);
                } else {
                    PUT(OUT_ROW(0), lo, mrow);
                    if (w > 16) PUT(OUT_ROW(0) + 16, hi, mrow_hi);
                }
#undef OUT_ROW
#undef PUT8
#undef PUT
            }
        }
    }
}

/* M = A dY A^T of the G tile rows at a time (dW's gradient transform): the 4 rows of each tile row
 * combine into 6 (A over the rows), then each tile's 4 values of a combined row into 6 planes. The
 * operations are those of WINO4_GRAD. */
__attribute__((target("avx512f"), always_inline)) static inline void wino4_grad_rows(const float *dy, int channels, int n, int h, int w,
                                                                                  int r0, int r1, float *m, int tb, const int G) {
    const int nth = h / 4, ntw = w / 4;
    const long plane = mcl_wino_plane(channels, tb);
    const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
    __m512i ix[4]; __mmask16 mk[4];
    for (int k = 0; k < 4; k++) group_window_index(k + 1, w, ntw, G, &ix[k], &mk[k]);  /* 4 tw + k */
    for (int c = 0; c < channels; c++) {
        const float *chan = dy + (long)c * n * h * w;
        for (int r = r0; r < r1; r += G) {
            const int cnt = r1 - r < G ? r1 - r : G, tiles = cnt * ntw;
            const __mmask16 mt = (__mmask16)((1u << tiles) - 1);
            const tile_rows rows = group_rows(chan, nth, h, w, G, r, cnt);
            __m512 L[4], H[4];
            for (int k = 0; k < 4; k++) group_row_loads(&rows, h, w, G, k, &L[k], &H[k]);
            __m512 T[2][6];
            for (int half = 0; half < 2; half++) {
                const __m512 *x = half ? H : L;
                const __m512 s02 = _mm512_add_ps(x[0], x[2]), s13 = _mm512_add_ps(x[1], x[3]);
                const __m512 q02 = _mm512_fmadd_ps(four, x[2], x[0]), q13 = _mm512_fmadd_ps(two, x[1], _mm512_mul_ps(eight, x[3]));
                T[half][0] = x[0]; T[half][1] = _mm512_add_ps(s02, s13); T[half][2] = _mm512_sub_ps(s02, s13);
                T[half][3] = _mm512_add_ps(q02, q13); T[half][4] = _mm512_sub_ps(q02, q13); T[half][5] = x[3];
            }
            const long base = (long)c * tb + (long)(r - r0) * ntw;
            for (int i = 0; i < 6; i++) {
                __m512 x[4];
                for (int k = 0; k < 4; k++) x[k] = _mm512_maskz_permutex2var_ps(mk[k], T[0][i], ix[k], T[1][i]);
                const __m512 s02 = _mm512_add_ps(x[0], x[2]), s13 = _mm512_add_ps(x[1], x[3]);
                const __m512 q02 = _mm512_fmadd_ps(four, x[2], x[0]), q13 = _mm512_fmadd_ps(two, x[1], _mm512_mul_ps(eight, x[3]));
                float *o = m + 6 * i * plane + base;
                STORE_GROUP(o, x[0]);
                STORE_GROUP(o + plane, _mm512_add_ps(s02, s13));
                STORE_GROUP(o + 2 * plane, _mm512_sub_ps(s02, s13));
                STORE_GROUP(o + 3 * plane, _mm512_add_ps(q02, q13));
                STORE_GROUP(o + 4 * plane, _mm512_sub_ps(q02, q13));
                STORE_GROUP(o + 5 * plane, x[3]);
            }
        }
    }
}

__attribute__((target("avx512f"))) static void wino4_output_reg(const float *m, int channels, int n, int h, int w,
                                                               int r0, int r1, int tb, float *y, int accumulate) {
    switch (wino4_group(w)) {
    case 4: wino4_output_rows(m, channels, n, h, w, r0, r1, tb, y, accumulate, 4); break;
    case 2: wino4_output_rows(m, channels, n, h, w, r0, r1, tb, y, accumulate, 2); break;
    default: wino4_output_rows(m, channels, n, h, w, r0, r1, tb, y, accumulate, 1);
    }
}

__attribute__((target("avx512f"))) static void wino4_grad_reg(const float *dy, int channels, int n, int h, int w,
                                                             int r0, int r1, float *m, int tb) {
    switch (wino4_group(w)) {
    case 4: wino4_grad_rows(dy, channels, n, h, w, r0, r1, m, tb, 4); break;
    case 2: wino4_grad_rows(dy, channels, n, h, w, r0, r1, m, tb, 2); break;
    default: wino4_grad_rows(dy, channels, n, h, w, r0, r1, m, tb, 1);
    }
}

/* One copy per group size, so that G is a constant in the loads. */
__attribute__((target("avx512f"))) static void wino4_input_reg(const float *x, int channels, int n, int h, int w,
                                                              int r0, int r1, float *v, int tb) {
    switch (wino4_group(w)) {
    case 4: wino4_input_rows(x, channels, n, h, w, r0, r1, v, tb, 4); break;
    case 2: wino4_input_rows(x, channels, n, h, w, r0, r1, v, tb, 2); break;
    default: wino4_input_rows(x, channels, n, h, w, r0, r1, v, tb, 1);
    }
}

WINO2_INPUT(wino2_input_512, __attribute__((target("avx512f"))))
WINO2_INPUT(wino2_input_avx2, __attribute__((target("avx2,fma"))))
WINO2_INPUT(wino2_input_base, )
WINO2_OUTPUT(wino2_output_512, __attribute__((target("avx512f"))))
WINO2_OUTPUT(wino2_output_avx2, __attribute__((target("avx2,fma"))))
WINO2_OUTPUT(wino2_output_base, )
WINO2_GRAD(wino2_grad_512, __attribute__((target("avx512f"))))
WINO2_GRAD(wino2_grad_avx2, __attribute__((target("avx2,fma"))))
WINO2_GRAD(wino2_grad_base, )
WINO4_INPUT(wino4_input_512, __attribute__((target("avx512f"))))
WINO4_INPUT(wino4_input_avx2, __attribute__((target("avx2,fma"))))
WINO4_INPUT(wino4_input_base, )
WINO4_OUTPUT(wino4_output_512, __attribute__((target("avx512f"))))
WINO4_OUTPUT(wino4_output_avx2, __attribute__((target("avx2,fma"))))
WINO4_OUTPUT(wino4_output_base, )
WINO4_GRAD(wino4_grad_512, __attribute__((target("avx512f"))))
WINO4_GRAD(wino4_grad_avx2, __attribute__((target("avx2,fma"))))
WINO4_GRAD(wino4_grad_base, )

/* ---- F(4x4) on 4x4 maps (one tile per image: 512 channels at width 64, 128 at width 16), 16
 * images at a time: an image's 16 pixels are contiguous, so 16 images are 16 vectors that one
 * 16 x 16 transpose turns into one vector per pixel with a lane per image (tile); the transform
 * is then whole-vector arithmetic and each of the 36 planes gets one 64-byte store of 16
 * consecutive tiles (the row kernels spent a 16-lane pass and 36 scalar stores on each tile). */

/* 16 x 16 transpose of r in place: four butterfly rounds swapping off-diagonal blocks of 8, 4, 2
 * and 1 lanes between rows i and i + d. */
#define TRANSPOSE_ROUND(r, d, MA, MB) do {                                                            \
    for (int i_ = 0; i_ < 16; i_++) if (!(i_ & (d))) {                                               \
        const v16 a_ = (r)[i_], b_ = (r)[i_ + (d)];                                                  \
        (r)[i_] = __builtin_shufflevector(a_, b_, MA); (r)[i_ + (d)] = __builtin_shufflevector(a_, b_, MB); \
    }                                                                                                \
} while (0)
#define T8A 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define T8B 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define T4A 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define T4B 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define T2A 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define T2B 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define T1A 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define T1B 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define TRANSPOSE16(r) do {                                                                          \
    TRANSPOSE_ROUND(r, 8, T8A, T8B); TRANSPOSE_ROUND(r, 4, T4A, T4B);                                \
    TRANSPOSE_ROUND(r, 2, T2A, T2B); TRANSPOSE_ROUND(r, 1, T1A, T1B);                                \
} while (0)

/* B^T over a column (a1..a4 inside a zero border: a0 = a5 = 0), as in WINO4_INPUT. */
#define BT4_ZERO_BORDER(a1, a2, a3, a4, o) do {                                                      \
    (o)[0] = (a4) - 5 * (a2); (o)[1] = (a3) + (a4) - 4 * ((a1) + (a2));                              \
    (o)[2] = 4 * ((a1) - (a2)) + (a4) - (a3); (o)[3] = 2 * ((a3) - (a1)) + (a4) - (a2);              \
    (o)[4] = 2 * ((a1) - (a3)) + (a4) - (a2); (o)[5] = 4 * (a1) - 5 * (a3);                          \
} while (0)
/* A (the gradient transform's rows) over a column x0..x3, as in WINO4_GRAD. */
#define A4_COLUMN(x0, x1, x2, x3, o) do {                                                            \
    const v16 s02_ = (x0) + (x2), s13_ = (x1) + (x3), q02_ = (x0) + 4 * (x2), q13_ = 2 * (x1) + 8 * (x3); \
    (o)[0] = (x0); (o)[1] = s02_ + s13_; (o)[2] = s02_ - s13_; (o)[3] = q02_ + q13_; (o)[4] = q02_ - q13_; (o)[5] = (x3); \
} while (0)
/* A^T over a column a0..a5 (4 values), as in WINO4_OUTPUT. */
#define AT4_COLUMN(a, o) do {                                                                        \
    const v16 s12_ = (a)[1] + (a)[2], d12_ = (a)[1] - (a)[2], s34_ = (a)[3] + (a)[4], d34_ = (a)[3] - (a)[4]; \
    (o)[0] = (a)[0] + s12_ + s34_; (o)[1] = d12_ + 2 * d34_; (o)[2] = s12_ + 4 * s34_; (o)[3] = d12_ + 8 * d34_ + (a)[5]; \
} while (0)

/* The 36 planes of tile rows (images) [r, r + 16) of a (x or dY) through COL over the rows, then
 * the columns of the 4x4 images (spatially flipped with `flip`): V = B^T d B (BT4_ZERO_BORDER,
 * the input transform) or M = A dY A^T (A4_COLUMN, dW's gradient transform). */
#define WINO4_SINGLE_TO_PLANES(NAME, TARGET, COL)                                                    \
TARGET static void NAME(const float *a, int n, int c, int r, int r0, int k, float *v, int tb, long plane, int flip) { \
    v16 p[16];                                                                                       \
    const float *src = a + ((long)c * n + r) * 16;                                                   \
    for (int i = 0; i < 16; i++) {                                                                   \
        if (i < k) __builtin_memcpy(&p[i], src + 16 * i, 64); else p[i] = (v16){0};                  \
    }                                                                                                \
    TRANSPOSE16(p);  /* p[4 i + j] = pixel (i, j) of the 16 images */                                \
    if (flip) for (int i = 0; i < 8; i++) { const v16 t_ = p[i]; p[i] = p[15 - i]; p[15 - i] = t_; } /* (3-i, 3-j) */ \
    v16 t[6][4];  /* t[kk][j]: row kk of the row pass, column j */                                   \
    for (int j = 0; j < 4; j++) {                                                                    \
        v16 o[6]; COL(p[j], p[4 + j], p[8 + j], p[12 + j], o);                                       \
        for (int kk = 0; kk < 6; kk++) t[kk][j] = o[kk];                                             \
    }                                                                                                \
    float *dst = v + (long)c * tb + (r - r0);                                                        \
    for (int kk = 0; kk < 6; kk++) {                                                                 \
        v16 o[6]; COL(t[kk][0], t[kk][1], t[kk][2], t[kk][3], o);                                    \
        for (int l = 0; l < 6; l++) {                                                                \
            if (k == 16) __builtin_memcpy(dst + (6 * kk + l) * plane, &o[l], 64);                    \
            else memcpy(dst + (6 * kk + l) * plane, &o[l], k * sizeof(float));                       \
        }                                                                                            \
    }                                                                                                \
}

#define WINO4_SINGLE(SUFFIX, TARGET)                                                                 \
WINO4_SINGLE_TO_PLANES(in4x4_##SUFFIX, TARGET, BT4_ZERO_BORDER)                                      \
WINO4_SINGLE_TO_PLANES(grad4x4_##SUFFIX, TARGET, A4_COLUMN)                                          \
/* Y (=, or += with accumulate) = A^T M A of tile rows [r, r + 16). */                               \
TARGET static void out4x4_##SUFFIX(const float *m, int n, int c, int r, int r0, int k, int tb, long plane, float *y, int accumulate, int flip) { \
    const float *src = m + (long)c * tb + (r - r0);                                                  \
    v16 q[4][6];  /* q[i][l] = (A^T M)[i][l] */                                                      \
    for (int l = 0; l < 6; l++) {                                                                    \
        v16 a[6], o[4];                                                                              \
        /* a tail group (k < 16) reads past its tiles, within the plane (rows are followed by the \
           next channel's, the last by the plane's 16 floats of padding); those lanes are dropped */ \
        for (int kk = 0; kk < 6; kk++) __builtin_memcpy(&a[kk], src + (6 * kk + l) * plane, 64);     \
        AT4_COLUMN(a, o);                                                                            \
        for (int i = 0; i < 4; i++) q[i][l] = o[i];                                                  \
    }                                                                                                \
    v16 p[16];                                                                                       \
    for (int i = 0; i < 4; i++) {                                                                    \
        v16 o[4]; AT4_COLUMN(q[i], o);                                                               \
        for (int j = 0; j < 4; j++) p[4 * i + j] = o[j];                                             \
    }                                                                                                \
    if (flip) for (int i = 0; i < 8; i++) { const v16 t_ = p[i]; p[i] = p[15 - i]; p[15 - i] = t_; }  \
    TRANSPOSE16(p);  /* p[i] = the 16 pixels of image r + i */                                       \
    float *dst = y + ((long)c * n + r) * 16;                                                         \
    for (int i = 0; i < k; i++) {                                                                    \
        if (accumulate) { v16 old; __builtin_memcpy(&old, dst + 16 * i, 64); p[i] += old; }          \
        __builtin_memcpy(dst + 16 * i, &p[i], 64);                                                   \
    }                                                                                                \
}

WINO4_SINGLE(512, __attribute__((target("avx512f"))))
WINO4_SINGLE(avx2, __attribute__((target("avx2,fma"))))
WINO4_SINGLE(base, )

/* Whether the 4x4-map kernels take 4x4 maps: all tile rows, 16 images at a time and a last group
 * of fewer, so every image goes through the same arithmetic whatever the blocks (the scores of
 * `evaluate` are the same bits on 1 or 2 ranks). `MCL_WINOGRAD_4X4_KERNELS=0` turns them off
 * (for comparisons). */
static int single_tile_kernels(int h, int w) {
    static int enabled = -1;
    if (enabled < 0) { const char *e = getenv("MCL_WINOGRAD_4X4_KERNELS"); enabled = !(e && e[0] == '0'); }
    return enabled && h == 4 && w == 4;
}

void mcl_wino4_single_input(const float *x, int channels, int n, int r0, int r1, float *v, int tb, int flip) {
    const long plane = mcl_wino_plane(channels, tb);
    for (int c = 0; c < channels; c++)
        for (int r = r0; r < r1; r += 16) BY_ISA(in4x4, x, n, c, r, r0, r1 - r < 16 ? r1 - r : 16, v, tb, plane, flip);
}

void mcl_wino4_single_output(const float *m, int channels, int n, int r0, int r1, int tb, float *y, int accumulate, int flip) {
    const long plane = mcl_wino_plane(channels, tb);
    for (int c = 0; c < channels; c++)
        for (int r = r0; r < r1; r += 16) BY_ISA(out4x4, m, n, c, r, r0, r1 - r < 16 ? r1 - r : 16, tb, plane, y, accumulate, flip);
}

void mcl_wino4_input(const float *x, int channels, int n, int h, int w, int r0, int r1, float *v, int tb, float *pad) {
    if (single_tile_kernels(h, w)) mcl_wino4_single_input(x, channels, n, r0, r1, v, tb, 0);
    else if (mcl_dconv_isa() == 2 && w <= 32) wino4_input_reg(x, channels, n, h, w, r0, r1, v, tb);
    else BY_ISA(wino4_input, x, channels, n, h, w, r0, r1, v, tb, pad);
}

void mcl_wino4_output(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb, float *y,
                      int accumulate, float *tmp) {
    if (single_tile_kernels(h, w)) mcl_wino4_single_output(m, channels, n, r0, r1, tb, y, accumulate, 0);
    else if (mcl_dconv_isa() == 2 && w <= 32) wino4_output_reg(m, channels, n, h, w, r0, r1, tb, y, accumulate);
    else BY_ISA(wino4_output, m, channels, n, h, w, r0, r1, tb, y, accumulate, tmp);
}

void mcl_wino4_grad(const float *dy, int channels, int n, int h, int w, int r0, int r1, float *m, int tb, float *tmp) {
    if (single_tile_kernels(h, w)) {
        const long plane = mcl_wino_plane(channels, tb);
        for (int c = 0; c < channels; c++)
            for (int r = r0; r < r1; r += 16) BY_ISA(grad4x4, dy, n, c, r, r0, r1 - r < 16 ? r1 - r : 16, m, tb, plane, 0);
    } else if (mcl_dconv_isa() == 2 && w <= 32) wino4_grad_reg(dy, channels, n, h, w, r0, r1, m, tb);
    else BY_ISA(wino4_grad, dy, channels, n, h, w, r0, r1, m, tb, tmp);
}

void mcl_wino2_input(const float *x, int channels, int n, int h, int w, int r0, int r1, float *v, int tb, float *pad) {
    if (mcl_dconv_isa() == 2 && w <= 32) wino2_input_reg(x, channels, n, h, w, r0, r1, v, tb);
    else BY_ISA(wino2_input, x, channels, n, h, w, r0, r1, v, tb, pad);
}

void mcl_wino2_output(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb, float *y,
                      int accumulate, float *tmp) {
    BY_ISA(wino2_output, m, channels, n, h, w, r0, r1, tb, y, accumulate, tmp);
}

void mcl_wino2_grad(const float *dy, int channels, int n, int h, int w, int r0, int r1, float *m, int tb, float *tmp) {
    if (mcl_dconv_isa() == 2 && w <= 32) wino2_grad_reg(dy, channels, n, h, w, r0, r1, m, tb);
    else BY_ISA(wino2_grad, dy, channels, n, h, w, r0, r1, m, tb, tmp);
}

/* ---- Weights: U = G g G^T (forward), or of the flipped, transposed kernel (dX); and dW's
 * dg = G^T dU G. Vectorised over 16 neighbouring kernels: each of the (T + 2)^2 planes gets
 * whole 64-byte lines. The scalar Swift loops they replace wrote one float to each of 16 or 36
 * planes in turn, planes a multiple of 4 KB apart (1 MB at 512 x 512), so every store missed
 * the L1: 12 ms of a 25 ms forward pass of the 512-channel 4x4 layer. */

/* G x for a column x = (x0, x1, x2) of a kernel: F(2x2) gives 4 values, F(4x4) 6. */
#define G2(x0, x1, x2, o) do { (o)[0] = (x0); (o)[1] = 0.5f * ((x0) + (x1) + (x2));                 \
    (o)[2] = 0.5f * ((x0) - (x1) + (x2)); (o)[3] = (x2); } while (0)
#define G4(x0, x1, x2, o) do { const float s_ = (x0) + (x2), e_ = (x0) * (1.0f / 24) + (x2) * (1.0f / 6); \
    (o)[0] = (x0) * 0.25f; (o)[1] = -(s_ + (x1)) * (1.0f / 6); (o)[2] = ((x1) - s_) * (1.0f / 6);      \
    (o)[3] = e_ + (x1) * (1.0f / 12); (o)[4] = e_ - (x1) * (1.0f / 12); (o)[5] = (x2); } while (0)

/* Bytes of U beyond which the weight transform streams its stores past the cache. */
#define MCL_WINO_STREAM_BYTES (8l << 20)
#define WINO_WEIGHTS(NAME, TARGET, P, GX)                                                            \
TARGET static void NAME(const float *w, int cout, int cin, int flip, float *u, int r0, int r1) {    \
    const int rows = flip ? cin : cout, cols = flip ? cout : cin;                                    \
    const long plane = mcl_wino_plane(rows, cols);                                                   \
    /* U beyond the cache (512 x 512 kernels: 17-38 MB) is written with non-temporal stores, which */ \
    /* skip reading each line before writing it (512-channel 4x4 forward 11.1 -> 10.1 ms) */          \
    const int stream = P * P * plane * (long)sizeof(float) > MCL_WINO_STREAM_BYTES && ((unsigned long)u & 63) == 0 \
        && cols % 16 == 0;                                                                           \
    for (int r = r0; r < r1; r++) {                                                                  \
        for (int c0 = 0; c0 < cols; c0 += 16) {                                                     \
            const int cn = cols - c0 < 16 ? cols - c0 : 16;                                          \
            float g[9][16], out[P * P][16];                                                          \
            if (cn < 16) memset(g, 0, sizeof g);                                                     \
            if (flip) for (int c = 0; c < cn; c++) {                                                 \
                const float *src = w + ((long)(c0 + c) * cin + r) * 9;                               \
                UNROLL for (int k = 0; k < 9; k++) g[k][c] = src[8 - k];                             \
            } else for (int c = 0; c < cn; c++) {                                                    \
                const float *src = w + ((long)r * cin + c0 + c) * 9;                                 \
                UNROLL for (int k = 0; k < 9; k++) g[k][c] = src[k];                                 \
            }                                                                                        \
            for (int c = 0; c < 16; c++) {                                                           \
                float a[3][P];  /* a = G g: column l of g -> column l of a */                        \
                UNROLL                                                                               \
                for (int l = 0; l < 3; l++) GX(g[l][c], g[3 + l][c], g[6 + l][c], a[l]);             \
                UNROLL                                                                               \
                for (int i = 0; i < P; i++) {                                                        \
                    float o[P];                                                                      \
                    GX(a[0][i], a[1][i], a[2][i], o);                                                \
                    UNROLL                                                                           \
                    for (int j = 0; j < P; j++) out[P * i + j][c] = o[j];                            \
                }                                                                                    \
            }                                                                                        \
            /* whole 16-kernel rows as constant-size copies (inlined; a memcpy call each was 1-2% */  \
            /* of the width-64 step) */                                                              \
            if (cn == 16 && stream) for (int e = 0; e < P * P; e++) {                                \
                v16 v_; float *d_ = u + e * plane + (long)r * cols + c0;                               \
                __builtin_memcpy(&v_, out[e], 64); __builtin_nontemporal_store(v_, (v16 *)d_);        \
            }                                                                                        \
            else if (cn == 16) for (int e = 0; e < P * P; e++) __builtin_memcpy(u + e * plane + (long)r * cols + c0, out[e], 16 * sizeof(float)); \
            else for (int e = 0; e < P * P; e++) memcpy(u + e * plane + (long)r * cols + c0, out[e], cn * sizeof(float)); \
        }                                                                                            \
    }                                                                                                \
    if (stream) __builtin_ia32_sfence();  /* the GEMMs of other threads read U next */              \
}

/* dw[idx][9] += G^T (sum over workers of dU) G for idx in [i0, i1), dU = du[e][idx] planes of
 * `plane` floats (P x P of them: 16 for F(2x2), 36 for F(4x4)), worker k's at du + k * stride,
 * summed in worker order. GT(x, o): o = G^T x for a column x of P values. */
#define GT2(x, o) do { (o)[0] = (x)[0] + 0.5f * ((x)[1] + (x)[2]); (o)[1] = 0.5f * ((x)[1] - (x)[2]);  \
    (o)[2] = 0.5f * ((x)[1] + (x)[2]) + (x)[3]; } while (0)
#define GT4(x, o) do { const float s12_ = (x)[1] + (x)[2], s34_ = (x)[3] + (x)[4];                   \
    (o)[0] = (x)[0] * 0.25f - s12_ * (1.0f / 6) + s34_ * (1.0f / 24);                                 \
    (o)[1] = ((x)[2] - (x)[1]) * (1.0f / 6) + ((x)[3] - (x)[4]) * (1.0f / 12);                       \
    (o)[2] = (s34_ - s12_) * (1.0f / 6) + (x)[5]; } while (0)
#define WINO_WEIGHT_GRAD(NAME, TARGET, P, GT)                                                        \
TARGET static void NAME(const float *du, long stride, int workers, long plane, long i0, long i1, float *dw) { \
    for (long c0 = i0; c0 < i1; c0 += 16) {                                                          \
        const int cn = i1 - c0 < 16 ? (int)(i1 - c0) : 16;                                           \
        float d[P * P][16], res[9][16];                                                              \
        /* whole 16-kernel rows as vectors, each plane prefetched 4 rows ahead (one thread, the     */ \
        /* 512-channel layer's 37.7 MB F(4x4) dU: 10.5 ms with masked per-float loads, 6.1 as       */ \
        /* vectors, 4.2 with the prefetches: 36 streams a MB apart are more than the hardware's)    */ \
        if (cn == 16) for (int e = 0; e < P * P; e++) {                                              \
            const float *s = du + e * plane + c0;                                                    \
            __builtin_prefetch(s + 64);                                                              \
            v16 a; __builtin_memcpy(&a, s, 64);                                                      \
            for (int k = 1; k < workers; k++) { v16 b; __builtin_memcpy(&b, s + k * stride, 64); a += b; } \
            __builtin_memcpy(d[e], &a, 64);                                                          \
        } else for (int e = 0; e < P * P; e++) {                                                     \
            const float *s = du + e * plane + c0;                                                    \
            for (int c = 0; c < 16; c++) d[e][c] = c < cn ? s[c] : 0;                                \
            for (int k = 1; k < workers; k++) {                                                      \
                const float *sk = s + k * stride;                                                    \
                for (int c = 0; c < 16; c++) d[e][c] += c < cn ? sk[c] : 0;                          \
            }                                                                                        \
        }                                                                                            \
        for (int c = 0; c < 16; c++) {                                                               \
            /* Q = G^T D (3 rows of P), then row i of dg = G^T applied to Q's row i (3 values). */   \
            float q[3][P];                                                                           \
            UNROLL                                                                                   \
            for (int j = 0; j < P; j++) {                                                            \
                float col[P], o[3];                                                                  \
                UNROLL                                                                               \
                for (int i = 0; i < P; i++) col[i] = d[P * i + j][c];                                \
                GT(col, o);                                                                          \
                q[0][j] = o[0]; q[1][j] = o[1]; q[2][j] = o[2];                                      \
            }                                                                                        \
            UNROLL                                                                                   \
            for (int i = 0; i < 3; i++) {                                                            \
                float o[3];                                                                          \
                GT(q[i], o);                                                                         \
                res[3 * i][c] = o[0]; res[3 * i + 1][c] = o[1]; res[3 * i + 2][c] = o[2];            \
            }                                                                                        \
        }                                                                                            \
        for (int c = 0; c < cn; c++)                                                                 \
            for (int k = 0; k < 9; k++) dw[(c0 + c) * 9 + k] += res[k][c];                           \
    }                                                                                                \
}

WINO_WEIGHTS(wino2_weights_512, __attribute__((target("avx512f"))), 4, G2)
WINO_WEIGHTS(wino2_weights_avx2, __attribute__((target("avx2,fma"))), 4, G2)
WINO_WEIGHTS(wino2_weights_base, , 4, G2)
WINO_WEIGHTS(wino4_weights_512, __attribute__((target("avx512f"))), 6, G4)
WINO_WEIGHTS(wino4_weights_avx2, __attribute__((target("avx2,fma"))), 6, G4)
WINO_WEIGHTS(wino4_weights_base, , 6, G4)
WINO_WEIGHT_GRAD(wino2_wgrad_512, __attribute__((target("avx512f"))), 4, GT2)
WINO_WEIGHT_GRAD(wino2_wgrad_avx2, __attribute__((target("avx2,fma"))), 4, GT2)
WINO_WEIGHT_GRAD(wino2_wgrad_base, , 4, GT2)
WINO_WEIGHT_GRAD(wino4_wgrad_512, __attribute__((target("avx512f"))), 6, GT4)
WINO_WEIGHT_GRAD(wino4_wgrad_avx2, __attribute__((target("avx2,fma"))), 6, GT4)
WINO_WEIGHT_GRAD(wino4_wgrad_base, , 6, GT4)

void mcl_wino_weights(const float *w, int cout, int cin, int flip, int tile, float *u, int r0, int r1) {
    if (tile == 4) BY_ISA(wino4_weights, w, cout, cin, flip, u, r0, r1);
    else BY_ISA(wino2_weights, w, cout, cin, flip, u, r0, r1);
}

void mcl_wino_weight_grad(const float *du, long stride, int workers, long plane, long i0, long i1, int tile,
                          float *dw) {
    if (tile == 4) BY_ISA(wino4_wgrad, du, stride, workers, plane, i0, i1, dw);
    else BY_ISA(wino2_wgrad, du, stride, workers, plane, i0, i1, dw);
}
