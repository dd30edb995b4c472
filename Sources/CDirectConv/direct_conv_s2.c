#include "CDirectConv.h"
#include <string.h>

/* Direct 3x3 stride-2 pad-1 convolution of 32x32 inputs (16x16 outputs), AVX2 + FMA.
 *
 * im2col + GEMM runs these layers at 25-45% of the sgemm peak on the AVX2 machine (the gather
 * of a 9x larger matrix, and GEMMs with K = Cout = 32 for dX), against 60-75% for the direct
 * stride-1 kernels of `direct_conv.c`. Splitting the input into its 4 phases (even/odd rows x
 * even/odd columns) makes every tap a stride-1 read again:
 *
 *   y[oh][ow] = sum_{i,j} W[i][j] x[2oh-1+i][2ow-1+j] = sum_{i,j} W[i][j] P_{r(i),c(j)}[oh+d(i)][ow+d(j)]
 *
 * with P_{pr,pc}[1+a][1+q] = x[2a+pr][2q+pc] (row 0 and column 0 zero: 17x17 planes), r(i) = 0
 * for i = 1 else 1, d(i) = 0 for i = 0 else 1. So a 16-pixel output row is 2 vector loads per
 * tap from a phase plane, as in the stride-1 kernel.
 *
 * dX is computed per phase of dX: x[2a+pr][2q+pc] is reached by the taps i = 1 (oh = a) for
 * pr = 0, i = 0 (oh = a+1) and i = 2 (oh = a) for pr = 1 (the same for columns), so each phase
 * is a stride-1 correlation of dY, padded with a zero row and column at the end, with 1, 2, 2 or
 * 4 taps (9 in all); the 4 phase planes are then interleaved into dX.
 *
 * dW[co][ci][i][j] = sum_{n,oh,ow} dY[co][oh][ow] P_{r(i),c(j)}[oh+d(i)][ow+d(j)]: the AVX2
 * weight-gradient scheme of `direct_conv.c` (3 taps x CB channels of accumulators, blocks of
 * images in L2) on the phase planes. */

typedef float v8 __attribute__((vector_size(32)));
#define LOAD8(p) ({ v8 _v; memcpy(&_v, (p), 32); _v; })
#define STORE8(p, v) do { v8 _v = (v); memcpy((p), &_v, 32); } while (0)
#define UNROLL _Pragma("clang loop unroll(full)")

enum { S2_W = 16, S2_P = 17, S2_PLANE = 17 * 17 };

/* Phase planes of images [b0, b1) of x ([C][N][32][32]) into s ([b - b0][C][4][17][17]). */
static void phase_images(const float *x, int channels, int n, int b0, int b1, float *s) {
    for (int b = b0; b < b1; b++) {
        for (int c = 0; c < channels; c++) {
            const float *src = x + ((long)c * n + b) * 1024;
            float *dst = s + ((long)(b - b0) * channels + c) * 4 * S2_PLANE;
            for (int p = 0; p < 4; p++) {
                float *pl = dst + p * S2_PLANE;
                memset(pl, 0, S2_P * sizeof(float));
                for (int a = 0; a < 16; a++) pl[(a + 1) * S2_P] = 0;
            }
            for (int a = 0; a < 16; a++) {
                const float *r0 = src + (2 * a) * 32, *r1 = r0 + 32;
                float *p0 = dst + (a + 1) * S2_P + 1, *p1 = p0 + S2_PLANE, *p2 = p1 + S2_PLANE, *p3 = p2 + S2_PLANE;
                for (int q = 0; q < 16; q++) {
                    p0[q] = r0[2 * q]; p1[q] = r0[2 * q + 1];
                    p2[q] = r1[2 * q]; p3[q] = r1[2 * q + 1];
                }
            }
        }
    }
}

/* One image: output rows of 16 pixels for channels [cfirst, clast) of `out` (channel stride
 * outChannel, rows of 16), = (or += with accumulate) sum over kin input channels (planes CS floats
 * apart, rows of 17) and T taps at offsets OFFS of weights wt [kout][kin][T]. CB channels x 2
 * vectors of accumulators; per tap 2 loads and CB broadcasts for 2 CB FMAs. */
#define S2_KERNEL8(NAME, CB, T, CS, ...)                                                             \
__attribute__((target("avx2,fma"))) static void NAME(const float *in, int kin, const float *wt,      \
        int cfirst, int clast, float *out, long outChannel, int accumulate) {                        \
    static const int offs[T] = { __VA_ARGS__ };                                                      \
    for (int r = 0; r < 16; r++) {                                                                   \
        for (int co0 = cfirst; co0 < clast; co0 += CB) {                                             \
            const int cb = clast - co0 < CB ? clast - co0 : CB;                                      \
            float *orow = out + (long)co0 * outChannel + r * S2_W;                                   \
            v8 acc[CB][2];                                                                           \
            UNROLL                                                                                   \
            for (int c = 0; c < CB; c++)                                                             \
                UNROLL                                                                               \
                for (int v = 0; v < 2; v++) {                                                        \
                    if (accumulate && c < cb) acc[c][v] = LOAD8(orow + c * outChannel + 8 * v);      \
                    else acc[c][v] = (v8){0};                                                        \
                }                                                                                    \
            const float *k0 = wt + (long)co0 * kin * T;                                              \
            long kc[CB];                                                                             \
            UNROLL                                                                                   \
            for (int c = 0; c < CB; c++) kc[c] = (long)(c < cb ? c : 0) * kin * T;                   \
            for (int ci = 0; ci < kin; ci++) {                                                       \
                const float *base = in + (long)ci * (CS) + r * S2_P;                                 \
                const float *kci = k0 + (long)ci * T;                                                \
                UNROLL                                                                               \
                for (int t = 0; t < T; t++) {                                                        \
                    const float *row = base + offs[t];                                               \
                    const v8 x0 = LOAD8(row), x1 = LOAD8(row + 8);                                   \
                    UNROLL                                                                           \
                    for (int c = 0; c < CB; c++) {                                                   \
                        const float kv = kci[kc[c] + t];                                             \
                        acc[c][0] += x0 * kv; acc[c][1] += x1 * kv;                                  \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            for (int c = 0; c < cb; c++)                                                             \
                UNROLL                                                                               \
                for (int v = 0; v < 2; v++) STORE8(orow + c * outChannel + 8 * v, acc[c][v]);        \
        }                                                                                            \
    }                                                                                                \
}

/* NAME(...): blocks of 6 output channels, then a tail of 4 or 2 (as `fwd8` in direct_conv.c). */
#define S2_FAMILY(NAME, T, CS, ...)                                                                  \
S2_KERNEL8(NAME##_6, 6, T, CS, __VA_ARGS__)                                                          \
S2_KERNEL8(NAME##_4, 4, T, CS, __VA_ARGS__)                                                          \
S2_KERNEL8(NAME##_2, 2, T, CS, __VA_ARGS__)                                                          \
static void NAME(const float *in, int kin, const float *wt, int kout, float *out, long outChannel,   \
                 int accumulate) {                                                                   \
    const int r = kout % 6, main = r == 0 || r == 5 ? kout : kout - r;                               \
    if (main > 0) NAME##_6(in, kin, wt, 0, main, out, outChannel, accumulate);                       \
    if (main < kout) {                                                                               \
        if (r >= 3) NAME##_4(in, kin, wt, main, kout, out, outChannel, accumulate);                  \
        else NAME##_2(in, kin, wt, main, kout, out, outChannel, accumulate);                         \
    }                                                                                                \
}

/* Forward: tap (i, j) reads phase 2 r(i) + r(j) at row d(i), column d(j). */
#define PH(i, j) ((2 * ((i) != 1) + ((j) != 1)) * S2_PLANE + ((i) > 0) * S2_P + ((j) > 0))
S2_FAMILY(s2_fwd, 9, 4 * S2_PLANE, PH(0, 0), PH(0, 1), PH(0, 2), PH(1, 0), PH(1, 1), PH(1, 2), PH(2, 0), PH(2, 1), PH(2, 2))

/* dX phases over dY padded at the end (17x17 planes): taps in the order of `s2_dx_taps`. */
S2_FAMILY(s2_dx0, 1, S2_PLANE, 0)
S2_FAMILY(s2_dx1, 2, S2_PLANE, 1, 0)
S2_FAMILY(s2_dx2, 2, S2_PLANE, S2_P, 0)
S2_FAMILY(s2_dx3, 4, S2_PLANE, S2_P + 1, S2_P, 1, 0)

/* The kernel taps (i, j) of each dX phase 2 pr + pc, in the kernels' order: rows i = 1 (pr = 0)
 * or i = 0, 2 (pr = 1) with row offsets 0 / 1, 0; the same for columns. */
static const int s2_dx_count[4] = {1, 2, 2, 4};
static const int s2_dx_taps[4][4] = {{4}, {3, 5}, {1, 7}, {0, 2, 6, 8}};

int mcl_dconv_s2_dx_weights_count(int cin, int cout) { return 9 * cin * cout; }

void mcl_dconv_s2_dx_weights(const float *wt, int cout, int cin, float *wph) {
    long off = 0;
    for (int p = 0; p < 4; p++) {
        const int T = s2_dx_count[p];
        for (int ci = 0; ci < cin; ci++)
            for (int co = 0; co < cout; co++)
                for (int t = 0; t < T; t++)
                    wph[off + ((long)ci * cout + co) * T + t] = wt[((long)co * cin + ci) * 9 + s2_dx_taps[p][t]];
        off += (long)T * cin * cout;
    }
}

int mcl_dconv_s2_forward_scratch(int cin) { return cin * 4 * S2_PLANE; }

void mcl_dconv_s2_forward(const float *x, int cin, int n, const float *wt, int cout, float *y,
                          int accumulate, int n0, int n1, float *scratch) {
    for (int b = n0; b < n1; b++) {
        phase_images(x, cin, n, b, b + 1, scratch);
        s2_fwd(scratch, cin, wt, cout, y + (long)b * 256, (long)n * 256, accumulate);
    }
}

int mcl_dconv_s2_data_scratch(int cin, int cout) { return cout * S2_PLANE + 4 * cin * 256; }

__attribute__((target("avx2,fma")))
void mcl_dconv_s2_data_grad(const float *dy, int cout, int n, const float *wph, int cin, float *dx,
                            int accumulate, int n0, int n1, float *scratch) {
    float *dyp = scratch, *ph = scratch + (long)cout * S2_PLANE;
    const long cc = (long)cin * cout;
    for (int b = n0; b < n1; b++) {
        for (int co = 0; co < cout; co++) {
            const float *src = dy + ((long)co * n + b) * 256;
            float *dst = dyp + (long)co * S2_PLANE;
            for (int a = 0; a < 16; a++) {
                memcpy(dst + a * S2_P, src + a * 16, 16 * sizeof(float));
                dst[a * S2_P + 16] = 0;
            }
            memset(dst + 16 * S2_P, 0, S2_P * sizeof(float));
        }
        s2_dx0(dyp, cout, wph, cin, ph, 256, 0);
        s2_dx1(dyp, cout, wph + cc, cin, ph + (long)cin * 256, 256, 0);
        s2_dx2(dyp, cout, wph + 3 * cc, cin, ph + 2L * cin * 256, 256, 0);
        s2_dx3(dyp, cout, wph + 5 * cc, cin, ph + 3L * cin * 256, 256, 0);
        /* Interleave: dx[ci][b][2a + pr][2q + pc] = ph[2 pr + pc][ci][a][q]. */
        for (int ci = 0; ci < cin; ci++) {
            float *img = dx + ((long)ci * n + b) * 1024;
            for (int a = 0; a < 16; a++) {
                for (int pr = 0; pr < 2; pr++) {
                    const float *e = ph + ((long)(2 * pr) * cin + ci) * 256 + a * 16;
                    const float *o = ph + ((long)(2 * pr + 1) * cin + ci) * 256 + a * 16;
                    float *row = img + (2 * a + pr) * 32;
                    if (accumulate) {
                        for (int q = 0; q < 16; q++) { row[2 * q] += e[q]; row[2 * q + 1] += o[q]; }
                    } else {
                        for (int q = 0; q < 16; q++) { row[2 * q] = e[q]; row[2 * q + 1] = o[q]; }
                    }
                }
            }
        }
    }
}

/* Images per block of the weight gradient: about 256 KB of dY and phase planes. */
int mcl_dconv_s2_block_images(int cin, int cout) {
    long perImage = ((long)cout * 256 + (long)cin * 4 * S2_PLANE) * 4;
    int blk = (int)(262144 / perImage);
    return blk < 1 ? 1 : blk;
}

/* dW for CB output channels and one kernel row i of one input channel: 3 x CB accumulators (the
 * taps j) over the rows of a block of images; per row vector 3 loads of phase planes and CB of dY
 * for 3 CB FMAs. The 8 lanes are added into the first 8 of the 16 lanes of accm. */
#define S2_WGRAD8(NAME, CB)                                                                          \
__attribute__((target("avx2,fma"))) static void NAME(const float *ps, int cin, int nb,               \
        const float *dy, long dyChannel, int co0, float *accm) {                                     \
    for (int ci = 0; ci < cin; ci++) {                                                               \
        UNROLL                                                                                       \
        for (int i = 0; i < 3; i++) {                                                                \
            v8 acc[CB][3];                                                                           \
            UNROLL                                                                                   \
            for (int c = 0; c < CB; c++)                                                             \
                UNROLL                                                                               \
                for (int j = 0; j < 3; j++) acc[c][j] = (v8){0};                                     \
            for (int b = 0; b < nb; b++) {                                                           \
                const float *xb = ps + ((long)b * cin + ci) * 4 * S2_PLANE;                          \
                const float *g = dy + (long)b * 256;                                                 \
                for (int oh = 0; oh < 16; oh++) {                                                    \
                    UNROLL                                                                           \
                    for (int v = 0; v < 16; v += 8) {                                                \
                        const float *row = xb + oh * S2_P + v;                                       \
                        const v8 x0 = LOAD8(row + PH(i, 0)), x1 = LOAD8(row + PH(i, 1)), x2 = LOAD8(row + PH(i, 2)); \
                        UNROLL                                                                       \
                        for (int c = 0; c < CB; c++) {                                               \
                            const v8 d = LOAD8(g + c * dyChannel + oh * 16 + v);                     \
                            acc[c][0] += d * x0; acc[c][1] += d * x1; acc[c][2] += d * x2;           \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            UNROLL                                                                                   \
            for (int c = 0; c < CB; c++)                                                             \
                UNROLL                                                                               \
                for (int j = 0; j < 3; j++) {                                                        \
                    float *dst = accm + ((((long)(co0 + c) * cin + ci) * 3 + i) * 3 + j) * 16;       \
                    STORE8(dst, LOAD8(dst) + acc[c][j]);                                             \
                }                                                                                    \
        }                                                                                            \
    }                                                                                                \
}
S2_WGRAD8(s2_wg3, 3)
S2_WGRAD8(s2_wg2, 2)
S2_WGRAD8(s2_wg1, 1)

int mcl_dconv_s2_weight_scratch(int cin, int cout) { return mcl_dconv_s2_block_images(cin, cout) * cin * 4 * S2_PLANE; }

void mcl_dconv_s2_weight_grad(const float *x, int cin, int n, const float *dy, int cout, float *accm,
                              int n0, int n1, float *scratch) {
    const int blk = mcl_dconv_s2_block_images(cin, cout);
    const long dyChannel = (long)n * 256;
    for (int b0 = n0; b0 < n1; b0 += blk) {
        const int b1 = b0 + blk < n1 ? b0 + blk : n1;
        phase_images(x, cin, n, b0, b1, scratch);
        for (int co0 = 0; co0 < cout; co0 += 3) {
            const float *g = dy + (long)co0 * dyChannel + (long)b0 * 256;
            const int left = cout - co0;
            if (left >= 3) s2_wg3(scratch, cin, b1 - b0, g, dyChannel, co0, accm);
            else if (left == 2) s2_wg2(scratch, cin, b1 - b0, g, dyChannel, co0, accm);
            else s2_wg1(scratch, cin, b1 - b0, g, dyChannel, co0, accm);
        }
    }
}
