#include "CDirectConv.h"
#include "vec8.h"
#include <string.h>

/* Direct 3x3 stride-2 pad-1 convolution of 32x32 or 16x16 inputs (16x16 or 8x8 outputs), AVX2 + FMA.
 *
 * im2col + GEMM runs these layers at 25-45% of the sgemm peak on the AVX2 machine (the gather
 * of a 9x larger matrix, and GEMMs with K = Cout = 32 for dX), against 60-75% for the direct
 * stride-1 kernels of `direct_conv.c`. Splitting the input into its 4 phases (even/odd rows x
 * even/odd columns) makes every tap a stride-1 read again:
 *
 *   y[oh][ow] = sum_{i,j} W[i][j] x[2oh-1+i][2ow-1+j] = sum_{i,j} W[i][j] P_{r(i),c(j)}[oh+d(i)][ow+d(j)]
 *
 * with P_{pr,pc}[1+a][1+q] = x[2a+pr][2q+pc] (row 0 and column 0 zero: (wo+1)^2 planes), r(i) = 0
 * for i = 1 else 1, d(i) = 0 for i = 0 else 1. So 16 output pixels (one row of 16, or two rows
 * of 8) are 2 vector loads per tap from a phase plane, as in the stride-1 kernel.
 *
 * dX is computed per phase of dX: x[2a+pr][2q+pc] is reached by the taps i = 1 (oh = a) for
 * pr = 0, i = 0 (oh = a+1) and i = 2 (oh = a) for pr = 1 (the same for columns), so each phase
 * is a stride-1 correlation of dY, padded with a zero row and column at the end, with 1, 2, 2 or
 * 4 taps (9 in all); the 4 phase planes are then interleaved into dX.
 *
 * dW[co][ci][i][j] = sum_{n,oh,ow} dY[co][oh][ow] P_{r(i),c(j)}[oh+d(i)][ow+d(j)]: the AVX2
 * weight-gradient scheme of `direct_conv.c` (3 taps x CB channels of accumulators, blocks of
 * images in L2) on the phase planes. */


/* Geometry for outputs of WO x WO (16 or 8): phase planes of P = WO + 1 columns; the kernels
 * walk the output in chunks of 16 floats (one row of 16 or two rows of 8), the chunk's second
 * vector 8 floats (WO = 16) or one plane row (WO = 8) after its first in the input. */
#define S2_PL(WO) (((WO) + 1) * ((WO) + 1))
#define S2_V1(WO) ((WO) == 16 ? 8 : (WO) + 1)
#define S2_CHUNK_IN(WO) ((WO) == 16 ? (WO) + 1 : 2 * ((WO) + 1))

/* Phase planes of images [b0, b1) of x ([C][N][2 wo][2 wo]) into s ([b - b0][C][4][wo+1][wo+1]). */
static void phase_images(const float *x, int channels, int n, int wo, int b0, int b1, float *s) {
    const int p = wo + 1, plane = p * p, w = 2 * wo;
    for (int b = b0; b < b1; b++) {
        for (int c = 0; c < channels; c++) {
            const float *src = x + ((long)c * n + b) * w * w;
            float *dst = s + ((long)(b - b0) * channels + c) * 4 * plane;
            for (int ph = 0; ph < 4; ph++) {
                float *pl = dst + ph * plane;
                memset(pl, 0, p * sizeof(float));
                for (int a = 0; a < wo; a++) pl[(a + 1) * p] = 0;
            }
            for (int a = 0; a < wo; a++) {
                const float *r0 = src + (2 * a) * w, *r1 = r0 + w;
                float *p0 = dst + (a + 1) * p + 1, *p1 = p0 + plane, *p2 = p1 + plane, *p3 = p2 + plane;
                for (int q = 0; q < wo; q++) {
                    p0[q] = r0[2 * q]; p1[q] = r0[2 * q + 1];
                    p2[q] = r1[2 * q]; p3[q] = r1[2 * q + 1];
                }
            }
        }
    }
}

/* One image: output chunks of 16 floats for channels [cfirst, clast) of `out` (channel stride
 * outChannel, WO x WO per channel), = (or += with accumulate) sum over kin input channels (planes
 * CS floats apart, rows of WO + 1) and T taps at offsets OFFS of weights wt [kout][kin][T]. CB
 * channels x 2 vectors of accumulators; per tap 2 loads and CB broadcasts for 2 CB FMAs. */
#define S2_KERNEL8(NAME, WO, CB, T, CS, ...)                                                         \
__attribute__((target("avx2,fma"))) static void NAME(const float *in, int kin, const float *wt,      \
        int cfirst, int clast, float *out, long outChannel, int accumulate) {                        \
    static const int offs[T] = { __VA_ARGS__ };                                                      \
    for (int r = 0; r < (WO) * (WO) / 16; r++) {                                                     \
        for (int co0 = cfirst; co0 < clast; co0 += CB) {                                             \
            const int cb = clast - co0 < CB ? clast - co0 : CB;                                      \
            float *orow = out + (long)co0 * outChannel + r * 16;                                     \
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
                const float *base = in + (long)ci * (CS) + r * S2_CHUNK_IN(WO);                      \
                const float *kci = k0 + (long)ci * T;                                                \
                UNROLL                                                                               \
                for (int t = 0; t < T; t++) {                                                        \
                    const float *row = base + offs[t];                                               \
                    const v8 x0 = LOAD8(row), x1 = LOAD8(row + S2_V1(WO));                           \
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
#define S2_FAMILY(NAME, WO, T, CS, ...)                                                              \
S2_KERNEL8(NAME##_6, WO, 6, T, CS, __VA_ARGS__)                                                      \
S2_KERNEL8(NAME##_4, WO, 4, T, CS, __VA_ARGS__)                                                      \
S2_KERNEL8(NAME##_2, WO, 2, T, CS, __VA_ARGS__)                                                      \
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
#define PH(WO, i, j) ((2 * ((i) != 1) + ((j) != 1)) * S2_PL(WO) + ((i) > 0) * ((WO) + 1) + ((j) > 0))
#define FWD_FAMILY(NAME, WO) S2_FAMILY(NAME, WO, 9, 4 * S2_PL(WO), PH(WO, 0, 0), PH(WO, 0, 1), PH(WO, 0, 2), \
    PH(WO, 1, 0), PH(WO, 1, 1), PH(WO, 1, 2), PH(WO, 2, 0), PH(WO, 2, 1), PH(WO, 2, 2))
FWD_FAMILY(s2_fwd16, 16)
FWD_FAMILY(s2_fwd8, 8)

/* dX phases over dY padded at the end ((wo+1)^2 planes): taps in the order of `s2_dx_taps`. */
#define DX_FAMILIES(NAME, WO)                                                                        \
S2_FAMILY(NAME##0, WO, 1, S2_PL(WO), 0)                                                              \
S2_FAMILY(NAME##1, WO, 2, S2_PL(WO), 1, 0)                                                           \
S2_FAMILY(NAME##2, WO, 2, S2_PL(WO), (WO) + 1, 0)                                                    \
S2_FAMILY(NAME##3, WO, 4, S2_PL(WO), (WO) + 2, (WO) + 1, 1, 0)
DX_FAMILIES(s2_dx16_, 16)
DX_FAMILIES(s2_dx8_, 8)
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

int mcl_dconv_s2_forward_scratch(int cin, int wo) { return cin * 4 * (wo + 1) * (wo + 1); }

void mcl_dconv_s2_forward(const float *x, int cin, int n, int wo, const float *wt, int cout, float *y,
                          int accumulate, int n0, int n1, float *scratch) {
    const long img = (long)wo * wo;
    for (int b = n0; b < n1; b++) {
        phase_images(x, cin, n, wo, b, b + 1, scratch);
        if (wo == 16) s2_fwd16(scratch, cin, wt, cout, y + b * img, n * img, accumulate);
        else s2_fwd8(scratch, cin, wt, cout, y + b * img, n * img, accumulate);
    }
}

int mcl_dconv_s2_data_scratch(int cin, int cout, int wo) { return cout * (wo + 1) * (wo + 1) + 4 * cin * wo * wo; }

__attribute__((target("avx2,fma")))
void mcl_dconv_s2_data_grad(const float *dy, int cout, int n, int wo, const float *wph, int cin, float *dx,
                            int accumulate, int n0, int n1, float *scratch) {
    const int p = wo + 1, plane = p * p, w = 2 * wo;
    const long img = (long)wo * wo;
    float *dyp = scratch, *ph = scratch + (long)cout * plane;
    const long cc = (long)cin * cout;
    for (int b = n0; b < n1; b++) {
        for (int co = 0; co < cout; co++) {
            const float *src = dy + ((long)co * n + b) * img;
            float *dst = dyp + (long)co * plane;
            for (int a = 0; a < wo; a++) {
                memcpy(dst + a * p, src + a * wo, wo * sizeof(float));
                dst[a * p + wo] = 0;
            }
            memset(dst + wo * p, 0, p * sizeof(float));
        }
        if (wo == 16) {
            s2_dx16_0(dyp, cout, wph, cin, ph, img, 0);
            s2_dx16_1(dyp, cout, wph + cc, cin, ph + cin * img, img, 0);
            s2_dx16_2(dyp, cout, wph + 3 * cc, cin, ph + 2 * cin * img, img, 0);
            s2_dx16_3(dyp, cout, wph + 5 * cc, cin, ph + 3 * cin * img, img, 0);
        } else {
            s2_dx8_0(dyp, cout, wph, cin, ph, img, 0);
            s2_dx8_1(dyp, cout, wph + cc, cin, ph + cin * img, img, 0);
            s2_dx8_2(dyp, cout, wph + 3 * cc, cin, ph + 2 * cin * img, img, 0);
            s2_dx8_3(dyp, cout, wph + 5 * cc, cin, ph + 3 * cin * img, img, 0);
        }
        /* Interleave: dx[ci][b][2a + pr][2q + pc] = ph[2 pr + pc][ci][a][q]. */
        for (int ci = 0; ci < cin; ci++) {
            float *im = dx + ((long)ci * n + b) * w * w;
            for (int a = 0; a < wo; a++) {
                for (int pr = 0; pr < 2; pr++) {
                    const float *e = ph + ((long)(2 * pr) * cin + ci) * img + a * wo;
                    const float *o = ph + ((long)(2 * pr + 1) * cin + ci) * img + a * wo;
                    float *row = im + (2 * a + pr) * w;
                    if (accumulate) {
                        for (int q = 0; q < wo; q++) { row[2 * q] += e[q]; row[2 * q + 1] += o[q]; }
                    } else {
                        for (int q = 0; q < wo; q++) { row[2 * q] = e[q]; row[2 * q + 1] = o[q]; }
                    }
                }
            }
        }
    }
}

/* Images per block of the weight gradient: about 256 KB of dY and phase planes. */
int mcl_dconv_s2_block_images(int cin, int cout, int wo) {
    long perImage = ((long)cout * wo * wo + (long)cin * 4 * (wo + 1) * (wo + 1)) * 4;
    int blk = (int)(262144 / perImage);
    return blk < 1 ? 1 : blk;
}

/* dW for CB output channels and one kernel row i of one input channel: 3 x CB accumulators (the
 * taps j) over the 16-float chunks of a block of images; per vector 3 loads of phase planes and CB
 * of dY for 3 CB FMAs. The 8 lanes are added into the first 8 of the 16 lanes of accm. */
#define S2_WGRAD8(NAME, WO, CB)                                                                      \
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
                const float *xb = ps + ((long)b * cin + ci) * 4 * S2_PL(WO);                         \
                const float *g = dy + (long)b * (WO) * (WO);                                         \
                for (int r = 0; r < (WO) * (WO) / 16; r++) {                                         \
                    UNROLL                                                                           \
                    for (int v = 0; v < 2; v++) {                                                    \
                        const float *row = xb + r * S2_CHUNK_IN(WO) + v * S2_V1(WO);                 \
                        const v8 x0 = LOAD8(row + PH(WO, i, 0)), x1 = LOAD8(row + PH(WO, i, 1));     \
                        const v8 x2 = LOAD8(row + PH(WO, i, 2));                                     \
                        WG8_FMA3(CB, acc, g + r * 16 + 8 * v, dyChannel, x0, x1, x2);                \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            WG8_STORE(CB, acc, accm, co0, cin, ci, i);                                               \
        }                                                                                            \
    }                                                                                                \
}
S2_WGRAD8(s2_wg16_3, 16, 3)
S2_WGRAD8(s2_wg16_2, 16, 2)
S2_WGRAD8(s2_wg16_1, 16, 1)
S2_WGRAD8(s2_wg8_3, 8, 3)
S2_WGRAD8(s2_wg8_2, 8, 2)
S2_WGRAD8(s2_wg8_1, 8, 1)

int mcl_dconv_s2_weight_scratch(int cin, int cout, int wo) {
    return mcl_dconv_s2_block_images(cin, cout, wo) * cin * 4 * (wo + 1) * (wo + 1);
}

void mcl_dconv_s2_weight_grad(const float *x, int cin, int n, int wo, const float *dy, int cout, float *accm,
                              int n0, int n1, float *scratch) {
    const int blk = mcl_dconv_s2_block_images(cin, cout, wo);
    const long img = (long)wo * wo, dyChannel = (long)n * img;
    for (int b0 = n0; b0 < n1; b0 += blk) {
        const int b1 = b0 + blk < n1 ? b0 + blk : n1;
        phase_images(x, cin, n, wo, b0, b1, scratch);
        for (int co0 = 0; co0 < cout; co0 += 3) {
            const float *g = dy + (long)co0 * dyChannel + (long)b0 * img;
            const int left = cout - co0, nb = b1 - b0;
            if (wo == 16) {
                if (left >= 3) s2_wg16_3(scratch, cin, nb, g, dyChannel, co0, accm);
                else if (left == 2) s2_wg16_2(scratch, cin, nb, g, dyChannel, co0, accm);
                else s2_wg16_1(scratch, cin, nb, g, dyChannel, co0, accm);
            } else {
                if (left >= 3) s2_wg8_3(scratch, cin, nb, g, dyChannel, co0, accm);
                else if (left == 2) s2_wg8_2(scratch, cin, nb, g, dyChannel, co0, accm);
                else s2_wg8_1(scratch, cin, nb, g, dyChannel, co0, accm);
            }
        }
    }
}
