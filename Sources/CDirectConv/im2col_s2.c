#include "CDirectConv.h"
#include "isa.h"
#include <string.h>

/* im2col and col2im for stride-2 convolutions (3x3 pad 1, 1x1 pad 0) on CNHW activations.
 *
 * Each input row is first copied into a short zero-padded row buffer (in L1), so that the
 * stride-2 gather `col[ow] = row[j + 2 ow]` and the scatter-add `row[j + 2 ow] += col[ow]` have
 * no bounds tests and vectorise (the compiler turns the stride-2 accesses into shuffles); the
 * Swift loops they replace were scalar per pixel. Compiled for AVX-512, AVX2 and the baseline,
 * chosen with `mcl_dconv_isa`. */

#define IM2COL_S2(NAME, TARGET)                                                                      \
TARGET static void NAME(const float *x, int c0, int c1, int k, int n, int h, int w, int n0, int cn,  \
                        int ho, int wo, float *col, float *buf) {                                    \
    const int p = (k - 1) / 2;                                                                       \
    const long rowLen = (long)cn * ho * wo;                                                          \
    const int blen = 2 * wo + k + 1;                                                                 \
    for (int c = 0; c < blen; c++) buf[c] = 0;                                                       \
    for (int ci = c0; ci < c1; ci++) {                                                               \
        for (int b = 0; b < cn; b++) {                                                               \
            const float *img = x + ((long)ci * n + n0 + b) * h * w;                                  \
            for (int oh = 0; oh < ho; oh++) {                                                        \
                for (int i = 0; i < k; i++) {                                                        \
                    const int ih = 2 * oh - p + i;                                                   \
                    float *dst0 = col + (long)(ci * k + i) * k * rowLen + (long)b * ho * wo + (long)oh * wo; \
                    if (ih < 0 || ih >= h) {                                                         \
                        for (int j = 0; j < k; j++) memset(dst0 + j * rowLen, 0, wo * sizeof(float)); \
                        continue;                                                                    \
                    }                                                                                \
                    const int len = w < blen - p ? w : blen - p;                                     \
                    memcpy(buf + p, img + (long)ih * w, len * sizeof(float));                        \
                    for (int j = 0; j < k; j++) {                                                    \
                        float *dst = dst0 + j * rowLen;                                              \
                        const float *s = buf + j;                                                    \
                        for (int ow = 0; ow < wo; ow++) dst[ow] = s[2 * ow];                         \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

#define COL2IM_S2(NAME, TARGET)                                                                      \
TARGET static void NAME(const float *col, int c0, int c1, int k, int n, int h, int w, int n0, int cn, \
                        int ho, int wo, float *dx, float *buf) {                                     \
    const int p = (k - 1) / 2;                                                                       \
    const long rowLen = (long)cn * ho * wo;                                                          \
    const int blen = 2 * wo + k + 1;                                                                 \
    for (int ci = c0; ci < c1; ci++) {                                                               \
        for (int b = 0; b < cn; b++) {                                                               \
            float *img = dx + ((long)ci * n + n0 + b) * h * w;                                       \
            for (int oh = 0; oh < ho; oh++) {                                                        \
                for (int i = 0; i < k; i++) {                                                        \
                    const int ih = 2 * oh - p + i;                                                   \
                    if (ih < 0 || ih >= h) continue;                                                 \
                    const float *src0 = col + (long)(ci * k + i) * k * rowLen + (long)b * ho * wo + (long)oh * wo; \
                    for (int c = 0; c < blen; c++) buf[c] = 0;                                       \
                    for (int j = 0; j < k; j++) {                                                    \
                        const float *s = src0 + j * rowLen;                                          \
                        float *d = buf + j;                                                          \
                        for (int ow = 0; ow < wo; ow++) d[2 * ow] += s[ow];                          \
                    }                                                                                \
                    float *row = img + (long)ih * w;                                                 \
                    const int len = w < blen - p ? w : blen - p;                                     \
                    for (int c = 0; c < len; c++) row[c] += buf[p + c];                              \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
}

IM2COL_S2(im2col_s2_512, __attribute__((target("avx512f"))))
IM2COL_S2(im2col_s2_avx2, __attribute__((target("avx2,fma"))))
IM2COL_S2(im2col_s2_base, )
COL2IM_S2(col2im_s2_512, __attribute__((target("avx512f"))))
COL2IM_S2(col2im_s2_avx2, __attribute__((target("avx2,fma"))))
COL2IM_S2(col2im_s2_base, )

int mcl_im2col_s2_buffer(int k, int wo) { return 2 * wo + k + 1; }

void mcl_im2col_s2(const float *x, int c0, int c1, int k, int n, int h, int w, int n0, int cn, int ho, int wo,
                   float *col, float *buf) {
    BY_ISA(im2col_s2, x, c0, c1, k, n, h, w, n0, cn, ho, wo, col, buf);
}

void mcl_col2im_s2(const float *col, int c0, int c1, int k, int n, int h, int w, int n0, int cn, int ho, int wo,
                   float *dx, float *buf) {
    BY_ISA(col2im_s2, col, c0, c1, k, n, h, w, n0, cn, ho, wo, dx, buf);
}
