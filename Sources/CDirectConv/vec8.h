#ifndef MCL_CDIRECTCONV_VEC8_H
#define MCL_CDIRECTCONV_VEC8_H
#include <string.h>

/* What the AVX2 direct kernels (`direct_conv.c`, `direct_conv_s2.c`) share: 8-float vectors,
 * unaligned loads and stores through memcpy (one vector move), full unrolling of the register-block
 * loops, and the weight gradient's accumulate and store steps. */
typedef float v8 __attribute__((vector_size(32)));
#define LOAD8(p) ({ v8 _v; memcpy(&_v, (p), 32); _v; })
#define STORE8(p, v) do { v8 _v = (v); memcpy((p), &_v, 32); } while (0)

/* Full unrolling of the register-block loops (channels, row vectors, taps), so that the
 * accumulators live in registers: without it clang kept acc[][] in memory at -O2 (a load, an
 * FMA and a store per accumulator update; objdump showed 3 FMAs in the dW kernel's loop body). */
#define UNROLL _Pragma("clang loop unroll(full)")

/* dW step: acc[c][j] += dy_c * x_j for the 3 taps j of a kernel row and CB output channels,
 * dy_c the 8 floats at g + c * dyChannel. */
#define WG8_FMA3(CB, acc, g, dyChannel, x0, x1, x2) do {                                             \
    UNROLL                                                                                           \
    for (int c = 0; c < (CB); c++) {                                                                 \
        const v8 d = LOAD8((g) + c * (dyChannel));                                                   \
        acc[c][0] += d * (x0); acc[c][1] += d * (x1); acc[c][2] += d * (x2);                         \
    }                                                                                                \
} while (0)

/* dW store: accm[co0 + c][ci][i][j][0:8] += acc[c][j] (16 lanes per weight; the upper 8 stay 0). */
#define WG8_STORE(CB, acc, accm, co0, cin, ci, i) do {                                               \
    UNROLL                                                                                           \
    for (int c = 0; c < (CB); c++)                                                                   \
        UNROLL                                                                                       \
        for (int j = 0; j < 3; j++) {                                                                \
            float *dst = (accm) + ((((long)((co0) + c) * (cin) + (ci)) * 3 + (i)) * 3 + j) * 16;     \
            STORE8(dst, LOAD8(dst) + acc[c][j]);                                                     \
        }                                                                                            \
} while (0)

#endif
