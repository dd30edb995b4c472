#include "CDirectConv.h"
#include "vec8.h"
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

/* 16 floats; unaligned loads and stores go through memcpy (one vector move). */
typedef float v16 __attribute__((vector_size(64)));


#define LOAD(p) ({ v16 _v; memcpy(&_v, (p), 64); _v; })
#define STORE(p, v) do { v16 _v = (v); memcpy((p), &_v, 64); } while (0)

/* Whether the forward writes y with non-temporal stores: a fresh (not accumulated) output of more
 * than 8 MB, 64-byte aligned (its rows, 16 or 32 floats, are then aligned too), streams past the
 * caches instead of reading every line first. */
static int stream_env = -1;
static inline int forward_streams(const float *y, int accumulate, int cout, int n, int h, int w) {
    if (stream_env < 0) { const char *e = getenv("MCL_DIRECT_CONV_STREAM"); stream_env = !(e && e[0] == '0'); }
    return stream_env && !accumulate && ((unsigned long)y & 63) == 0 && (long)cout * n * h * w * 4 > (8l << 20);
}

/* Images per block of the weight gradient: about 256 KB of dy rows and padded x. */
int mcl_dconv_block_images(int cin, int cout, int h, int w) {
    long perImage = ((long)cout * h * w + (long)cin * (h + 2) * (w + 2)) * 4;
    int blk = (int)(262144 / (perImage > 0 ? perImage : 1));
    return blk < 1 ? 1 : blk;
}

/* Pads images [b0, b1) of x ([C][N][H][W]) into s ([b - b0][C][H+2][W+2], zero border). */
static void pad_images(const float *x, int channels, int n, int h, int w, int b0, int b1, float *s) {
    const long hp = h + 2, wp = w + 2;
    for (int b = b0; b < b1; b++) {
        for (int c = 0; c < channels; c++) {
            const float *src = x + ((long)c * n + b) * h * w;
            float *dst = s + ((long)(b - b0) * channels + c) * hp * wp;
            memset(dst, 0, wp * sizeof(float));
            for (int i = 0; i < h; i++) {
                float *row = dst + (i + 1) * wp;
                row[0] = 0;
                memcpy(row + 1, src + (long)i * w, w * sizeof(float));
                row[w + 1] = 0;
            }
            memset(dst + (h + 1) * wp, 0, wp * sizeof(float));
        }
    }
}

/* Forward for VPR vectors per row (w = 16 VPR) and CB output channels per register block:
 * CB * VPR accumulators stay in registers while every (ci, i, j) tap is applied. */
#define FORWARD_KERNEL(NAME, TARGET, VPR, CB)                                                        \
__attribute__((target(TARGET))) static void NAME(const float *x, int cin, int n, int h,              \
        const float *wt, int cout, float *y, int accumulate, int n0, int n1, float *scratch) {       \
    const int w = 16 * VPR;                                                                          \
    const long wp = w + 2, plane = (long)(h + 2) * wp;                                               \
    const int stream = forward_streams(y, accumulate, cout, n, h, w);                                \
    for (int b = n0; b < n1; b++) {                                                                  \
        pad_images(x, cin, n, h, w, b, b + 1, scratch);                                              \
        for (int oh = 0; oh < h; oh++) {                                                             \
            for (int co0 = 0; co0 < cout; co0 += CB) {                                               \
                const int cb = cout - co0 < CB ? cout - co0 : CB;                                    \
                v16 acc[CB][VPR];                                                                    \
                UNROLL                                                                               \
                for (int c = 0; c < CB; c++)                                                         \
                    UNROLL                                                                           \
                    for (int v = 0; v < VPR; v++) {                                                  \
                        if (accumulate && c < cb)                                                    \
                            acc[c][v] = LOAD(y + (((long)(co0 + c) * n + b) * h + oh) * w + 16 * v); \
                        else                                                                         \
                            acc[c][v] = (v16){0};                                                    \
                    }                                                                                \
                for (int ci = 0; ci < cin; ci++) {                                                   \
                    const float *base = scratch + (long)ci * plane + (long)oh * wp;                  \
                    UNROLL                                                                           \
                    for (int i = 0; i < 3; i++) {                                                    \
                        const float *row = base + i * wp;                                            \
                        v16 xs[3][VPR];                                                              \
                        UNROLL                                                                       \
                        for (int j = 0; j < 3; j++)                                                  \
                            UNROLL                                                                   \
                            for (int v = 0; v < VPR; v++) xs[j][v] = LOAD(row + j + 16 * v);         \
                        UNROLL                                                                       \
                        for (int c = 0; c < CB; c++) {                                               \
                            const float *k = wt + (((long)(co0 + (c < cb ? c : 0)) * cin + ci) * 3 + i) * 3; \
                            UNROLL                                                                   \
                            for (int j = 0; j < 3; j++) {                                            \
                                const float kv = k[j];                                               \
                                UNROLL                                                               \
                                for (int v = 0; v < VPR; v++) acc[c][v] += xs[j][v] * kv;            \
                            }                                                                        \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
                for (int c = 0; c < cb; c++)                                                         \
                    UNROLL                                                                           \
                    for (int v = 0; v < VPR; v++) {                                                  \
                        float *dst_ = y + (((long)(co0 + c) * n + b) * h + oh) * w + 16 * v;         \
                        if (stream) _mm512_stream_ps(dst_, (__m512)acc[c][v]);                       \
                        else STORE(dst_, acc[c][v]);                                                 \
                    }                                                                                \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    if (stream) _mm_sfence();                                                                        \
}

/* Forward for 16-pixel rows, two output rows at a time (h even): CB output channels x 2 rows
 * of accumulators, and each broadcast weight feeds both rows, so there is one broadcast per two
 * FMAs (the one-row kernel above needs one per FMA at this width, which bounds it by the load
 * ports). The 4 input rows x 3 shifts of a channel are loaded once per channel. */
#define FORWARD_KERNEL_R2(NAME, TARGET, CB)                                                          \
__attribute__((target(TARGET))) static void NAME(const float *x, int cin, int n, int h,              \
        const float *wt, int cout, float *y, int accumulate, int n0, int n1, float *scratch) {       \
    const int w = 16;                                                                                \
    const long wp = w + 2, plane = (long)(h + 2) * wp;                                               \
    for (int b = n0; b < n1; b++) {                                                                  \
        pad_images(x, cin, n, h, w, b, b + 1, scratch);                                              \
        for (int oh = 0; oh < h; oh += 2) {                                                          \
            for (int co0 = 0; co0 < cout; co0 += CB) {                                               \
                const int cb = cout - co0 < CB ? cout - co0 : CB;                                    \
                v16 acc[CB][2];                                                                      \
                UNROLL                                                                               \
                for (int c = 0; c < CB; c++)                                                         \
                    UNROLL                                                                           \
                    for (int r = 0; r < 2; r++) {                                                    \
                        if (accumulate && c < cb)                                                    \
                            acc[c][r] = LOAD(y + (((long)(co0 + c) * n + b) * h + oh + r) * w);      \
                        else                                                                         \
                            acc[c][r] = (v16){0};                                                    \
                    }                                                                                \
                for (int ci = 0; ci < cin; ci++) {                                                   \
                    const float *base = scratch + (long)ci * plane + (long)oh * wp;                  \
                    v16 xs[4][3];                                                                    \
                    UNROLL                                                                           \
                    for (int i = 0; i < 4; i++)                                                      \
                        UNROLL                                                                       \
                        for (int j = 0; j < 3; j++) xs[i][j] = LOAD(base + i * wp + j);              \
                    UNROLL                                                                           \
                    for (int c = 0; c < CB; c++) {                                                   \
                        const float *k = wt + ((long)(co0 + (c < cb ? c : 0)) * cin + ci) * 9;       \
                        UNROLL                                                                       \
                        for (int i = 0; i < 3; i++)                                                  \
                            UNROLL                                                                   \
                            for (int j = 0; j < 3; j++) {                                            \
                                const float kv = k[3 * i + j];                                       \
                                acc[c][0] += xs[i][j] * kv;                                          \
                                acc[c][1] += xs[i + 1][j] * kv;                                      \
                            }                                                                        \
                    }                                                                                \
                }                                                                                    \
                for (int c = 0; c < cb; c++)                                                         \
                    UNROLL                                                                           \
                    for (int r = 0; r < 2; r++)                                                      \
                        STORE(y + (((long)(co0 + c) * n + b) * h + oh + r) * w, acc[c][r]);          \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

/* Weight gradient with rolling rows (AVX-512): for a pair of output channels, one input channel
 * and one 16-pixel column block v of the rows, all 9 taps' accumulators (2 x 9 vectors) stay in
 * registers while the output rows go by; the three padded input rows an output row needs are
 * kept in registers too (3 shifts each), so each new row costs 3 loads of x and 2 of dy for 18
 * FMAs. A kernel that reloads the block's dy and x rows from L2 for each of the 3 kernel rows
 * (as `WGRAD_BLOCK8` does on AVX2, whose 16 registers cannot hold 18 accumulators) was bounded
 * by L2 bandwidth at 36-52% of the peak on the width-16 layers (docs/performance.md, session 9). */
#define WGRAD_KERNEL_ROLL(NAME, TARGET, VPR)                                                         \
__attribute__((target(TARGET))) static void NAME(const float *x, int cin, int n, int h,              \
        const float *dy, int cout, float *accm, int n0, int n1, float *scratch) {                    \
    const int w = 16 * VPR;                                                                          \
    const long wp = w + 2, plane = (long)(h + 2) * wp;                                               \
    int blk = mcl_dconv_block_images(cin, cout, h, w);                                               \
    for (int b0 = n0; b0 < n1; b0 += blk) {                                                          \
        const int b1 = b0 + blk < n1 ? b0 + blk : n1;                                                \
        pad_images(x, cin, n, h, w, b0, b1, scratch);                                                \
        for (int co0 = 0; co0 < cout; co0 += 2) {                                                    \
            const int co1 = co0 + 1 < cout ? co0 + 1 : co0;                                          \
            for (int ci = 0; ci < cin; ci++) {                                                       \
                v16 acc[2][9];                                                                       \
                UNROLL                                                                               \
                for (int c = 0; c < 2; c++)                                                          \
                    UNROLL                                                                           \
                    for (int t = 0; t < 9; t++) acc[c][t] = (v16){0};                                \
                for (int v = 0; v < VPR; v++) {                                                      \
                    for (int b = b0; b < b1; b++) {                                                  \
                        const float *xb = scratch + ((long)(b - b0) * cin + ci) * plane + 16 * v;    \
                        const float *g0 = dy + ((long)co0 * n + b) * h * w + 16 * v;                 \
                        const float *g1 = dy + ((long)co1 * n + b) * h * w + 16 * v;                 \
                        v16 r0[3], r1[3];                                                            \
                        UNROLL                                                                       \
                        for (int j = 0; j < 3; j++) { r0[j] = LOAD(xb + j); r1[j] = LOAD(xb + wp + j); } \
                        for (int oh = 0; oh < h; oh++) {                                             \
                            v16 r2[3];                                                               \
                            const float *row = xb + (long)(oh + 2) * wp;                             \
                            UNROLL                                                                   \
                            for (int j = 0; j < 3; j++) r2[j] = LOAD(row + j);                       \
                            const v16 d0 = LOAD(g0 + (long)oh * w), d1 = LOAD(g1 + (long)oh * w);    \
                            UNROLL                                                                   \
                            for (int j = 0; j < 3; j++) {                                            \
                                acc[0][j] += d0 * r0[j]; acc[0][3 + j] += d0 * r1[j]; acc[0][6 + j] += d0 * r2[j]; \
                                acc[1][j] += d1 * r0[j]; acc[1][3 + j] += d1 * r1[j]; acc[1][6 + j] += d1 * r2[j]; \
                            }                                                                        \
                            UNROLL                                                                   \
                            for (int j = 0; j < 3; j++) { r0[j] = r1[j]; r1[j] = r2[j]; }            \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
                const int cn = co1 > co0 ? 2 : 1;                                                    \
                for (int c = 0; c < cn; c++)                                                         \
                    UNROLL                                                                           \
                    for (int t = 0; t < 9; t++) {                                                    \
                        float *dst = accm + (((long)(co0 + c) * cin + ci) * 9 + t) * 16;             \
                        STORE(dst, LOAD(dst) + acc[c][t]);                                           \
                    }                                                                                \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

/* AVX2 kernels on native 8-float vectors. The kernels above, instantiated for AVX2, use 16-float
 * vectors (two ymm registers each), and at 32-pixel rows their register blocks did not fit the 16
 * ymm registers (forward: 8 accumulators + 12 row vectors; dW: 12 accumulators + 12 row
 * vectors): the compiler spilled them to the stack, and the 3-channel stem ran at 27-36% of the
 * sgemm peak on an AVX2 machine (docs/performance.md, session 10). */

/* Forward, for a column block of V vectors of one output row x CB output channels of
 * accumulators (rows of w = any multiple of 8 V pixels, walked block by block); per tap (ci, i, j)
 * the V shifted input vectors are loaded once and feed CB broadcast weights (V + CB loads for
 * V * CB FMAs; CB * V + V + 1 registers). Output channels [cfirst, cout). */
#define FORWARD_KERNEL8(NAME, V, CB)                                                                 \
__attribute__((target("avx2,fma"))) static void NAME(const float *x, int cin, int n, int h, int w,   \
        const float *wt, int cout, int cfirst, float *y, int accumulate, int n0, int n1, float *scratch) { \
    const long wp = w + 2, plane = (long)(h + 2) * wp;                                               \
    for (int b = n0; b < n1; b++) {                                                                  \
        pad_images(x, cin, n, h, w, b, b + 1, scratch);                                              \
        for (int oh = 0; oh < h; oh++) {                                                             \
            for (int co0 = cfirst; co0 < cout; co0 += CB) {                                          \
            for (int ow = 0; ow < w; ow += 8 * V) {                                                  \
                const int cb = cout - co0 < CB ? cout - co0 : CB;                                    \
                float *yrow = y + (((long)co0 * n + b) * h + oh) * w + ow;                           \
                const long ych = (long)n * h * w;                                                    \
                v8 acc[CB][V];                                                                       \
                UNROLL                                                                               \
                for (int c = 0; c < CB; c++)                                                         \
                    UNROLL                                                                           \
                    for (int v = 0; v < V; v++) {                                                    \
                        if (accumulate && c < cb) acc[c][v] = LOAD8(yrow + c * ych + 8 * v);         \
                        else acc[c][v] = (v8){0};                                                    \
                    }                                                                                \
                const float *k0 = wt + (long)co0 * cin * 9;                                          \
                long kc[CB];                                                                         \
                UNROLL                                                                               \
                for (int c = 0; c < CB; c++) kc[c] = (long)(c < cb ? c : 0) * cin * 9;               \
                for (int ci = 0; ci < cin; ci++) {                                                   \
                    const float *base = scratch + (long)ci * plane + (long)oh * wp + ow;             \
                    const float *kci = k0 + (long)ci * 9;                                            \
                    UNROLL                                                                           \
                    for (int t = 0; t < 9; t++) {                                                    \
                        const float *row = base + (t / 3) * wp + t % 3;                              \
                        v8 xs[V];                                                                    \
                        UNROLL                                                                       \
                        for (int v = 0; v < V; v++) xs[v] = LOAD8(row + 8 * v);                      \
                        UNROLL                                                                       \
                        for (int c = 0; c < CB; c++) {                                               \
                            const float kv = kci[kc[c] + t];                                         \
                            UNROLL                                                                   \
                            for (int v = 0; v < V; v++) acc[c][v] += xs[v] * kv;                     \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
                for (int c = 0; c < cb; c++)                                                         \
                    UNROLL                                                                           \
                    for (int v = 0; v < V; v++) STORE8(yrow + c * ych + 8 * v, acc[c][v]);           \
            }                                                                                        \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

/* Weight gradient for CB output channels and one kernel row i of one input channel: 3 * CB
 * accumulators (the 3 taps j) over the rows of a block of images, per row 3 shifted input
 * vectors and CB dy vectors (3 + CB loads for 3 * CB FMAs; 3 * CB + 4 registers). The block's
 * padded images and dy rows (~256 KB) stay in L2 across the (ci, i) loops. The 8 lanes are
 * added into the first 8 of the 16 lanes of acc. */
#define WGRAD_BLOCK8(NAME, CB)                                                                       \
__attribute__((target("avx2,fma"))) static inline void NAME(const float *xs0, long plane, long wp, int w, \
        int cin, int h, int nb, const float *dy, long dyImage, long dyChannel, int co0, float *accm) { \
    for (int ci = 0; ci < cin; ci++) {                                                               \
        for (int i = 0; i < 3; i++) {                                                                \
            v8 acc[CB][3];                                                                           \
            UNROLL                                                                                   \
            for (int c = 0; c < CB; c++)                                                             \
                UNROLL                                                                               \
                for (int j = 0; j < 3; j++) acc[c][j] = (v8){0};                                     \
            for (int b = 0; b < nb; b++) {                                                           \
                const float *xb = xs0 + ((long)b * cin + ci) * plane + (long)i * wp;                 \
                const float *g = dy + (long)b * dyImage;                                             \
                for (int oh = 0; oh < h; oh++) {                                                     \
                    for (int v = 0; v < w; v += 8) {                                                 \
                        const float *row = xb + (long)oh * wp + v;                                   \
                        const v8 x0 = LOAD8(row), x1 = LOAD8(row + 1), x2 = LOAD8(row + 2);          \
                        WG8_FMA3(CB, acc, g + (long)oh * w + v, dyChannel, x0, x1, x2);              \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            WG8_STORE(CB, acc, accm, co0, cin, ci, i);                                               \
        }                                                                                            \
    }                                                                                                \
}

FORWARD_KERNEL8(fwd8_6, 2, 6)
FORWARD_KERNEL8(fwd8_4, 2, 4)
FORWARD_KERNEL8(fwd8_2, 2, 2)

/* Forward on AVX2: blocks of 6 output channels, then a tail of 4 or 2 (16 channels = 6 + 6 + 4,
 * 32 = 5 x 6 + 2), so no block computes more than 1 channel it does not need (with 6-channel blocks
 * alone, 16 and 32 channels computed 18 and 36). The tail pads the images again (a few %). */
static void fwd8(const float *x, int cin, int n, int h, int w, const float *wt, int cout, float *y,
                 int accumulate, int n0, int n1, float *scratch) {
    const int r = cout % 6, main = r == 0 || r == 5 ? cout : cout - r;
    if (main > 0) fwd8_6(x, cin, n, h, w, wt, cout < main ? cout : main, 0, y, accumulate, n0, n1, scratch);
    if (main < cout) {
        if (r >= 3) fwd8_4(x, cin, n, h, w, wt, cout, main, y, accumulate, n0, n1, scratch);
        else fwd8_2(x, cin, n, h, w, wt, cout, main, y, accumulate, n0, n1, scratch);
    }
}
WGRAD_BLOCK8(wgb8_3, 3)
WGRAD_BLOCK8(wgb8_2, 2)
WGRAD_BLOCK8(wgb8_1, 1)

/* Weight gradient on AVX2: blocks of images padded once, then 3 output channels at a time (a tail
 * of 2 or 1) through `WGRAD_BLOCK8`. */
__attribute__((target("avx2,fma"))) static void wg8(const float *x, int cin, int n, int h, int w,
        const float *dy, int cout, float *accm, int n0, int n1, float *scratch) {
    const long wp = w + 2, plane = (long)(h + 2) * wp;
    const int blk = mcl_dconv_block_images(cin, cout, h, w);
    for (int b0 = n0; b0 < n1; b0 += blk) {
        const int b1 = b0 + blk < n1 ? b0 + blk : n1;
        pad_images(x, cin, n, h, w, b0, b1, scratch);
        const long dyChannel = (long)n * h * w, dyImage = (long)h * w;
        for (int co0 = 0; co0 < cout; co0 += 3) {
            const float *g = dy + (long)co0 * dyChannel + (long)b0 * dyImage;
            const int left = cout - co0;
            if (left >= 3) wgb8_3(scratch, plane, wp, w, cin, h, b1 - b0, g, dyImage, dyChannel, co0, accm);
            else if (left == 2) wgb8_2(scratch, plane, wp, w, cin, h, b1 - b0, g, dyImage, dyChannel, co0, accm);
            else wgb8_1(scratch, plane, wp, w, cin, h, b1 - b0, g, dyImage, dyChannel, co0, accm);
        }
    }
}

FORWARD_KERNEL(fwd512_1, "avx512f", 1, 16)
FORWARD_KERNEL_R2(fwd512_1r2, "avx512f", 8)
FORWARD_KERNEL(fwd512_2, "avx512f", 2, 8)
WGRAD_KERNEL_ROLL(wgr512_1, "avx512f", 1)
WGRAD_KERNEL_ROLL(wgr512_2, "avx512f", 2)

static int isa = -1;

void mcl_dconv_force_isa(int level) {
    isa = -1;
    int found = mcl_dconv_isa();
    isa = level < found ? level : found;
}

/* MCL_DIRECT_CONV_ISA=avx2 forces the AVX2 kernels on an AVX-512 machine (to test them). */
int mcl_dconv_isa(void) {
    if (isa >= 0) return isa;
    __builtin_cpu_init();
    int found = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) found = 1;
    if (found && __builtin_cpu_supports("avx512f")) found = 2;
    const char *force = getenv("MCL_DIRECT_CONV_ISA");
    if (force && strcmp(force, "avx2") == 0 && found >= 1) found = 1;
    isa = found;
    return isa;
}

static int r2 = -1;

void mcl_dconv_forward(const float *x, int cin, int n, int h, int w, const float *wt, int cout,
                       float *y, int accumulate, int n0, int n1, float *scratch) {
    const int isa = mcl_dconv_isa();
    if (r2 < 0) { const char *e = getenv("MCL_DIRECT_CONV_R2"); r2 = !(e && strcmp(e, "0") == 0); }
    if (isa == 2) {
        if (w == 16 && h % 2 == 0 && r2)
            fwd512_1r2(x, cin, n, h, wt, cout, y, accumulate, n0, n1, scratch);
        else if (w == 16) fwd512_1(x, cin, n, h, wt, cout, y, accumulate, n0, n1, scratch);
        else fwd512_2(x, cin, n, h, wt, cout, y, accumulate, n0, n1, scratch);
    } else {
        fwd8(x, cin, n, h, w, wt, cout, y, accumulate, n0, n1, scratch);
    }
}

void mcl_dconv_weight_grad(const float *x, int cin, int n, int h, int w, const float *dy, int cout,
                           float *acc, int n0, int n1, float *scratch) {
    const int isa = mcl_dconv_isa();
    if (isa == 2) {
        if (w == 16) wgr512_1(x, cin, n, h, dy, cout, acc, n0, n1, scratch);
        else wgr512_2(x, cin, n, h, dy, cout, acc, n0, n1, scratch);
    } else {
        wg8(x, cin, n, h, w, dy, cout, acc, n0, n1, scratch);
    }
}

void mcl_dconv_reduce(const float *acc, int count, float *dw) {
    for (int k = 0; k < count; k++) {
        float s = 0;
        for (int l = 0; l < 16; l++) s += acc[(long)k * 16 + l];
        dw[k] += s;
    }
}
