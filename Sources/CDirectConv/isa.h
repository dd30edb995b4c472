#ifndef MCL_CDIRECTCONV_ISA_H
#define MCL_CDIRECTCONV_ISA_H
#include "CDirectConv.h"

/* Calls P_512, P_avx2 or P_base with the same arguments, by `mcl_dconv_isa()`: the kernels of
 * this target are compiled once per instruction set from one macro body each. */
#define BY_ISA(P, ...) do {                                                                          \
    switch (mcl_dconv_isa()) {                                                                       \
    case 2: P##_512(__VA_ARGS__); break;                                                             \
    case 1: P##_avx2(__VA_ARGS__); break;                                                            \
    default: P##_base(__VA_ARGS__);                                                                  \
    }                                                                                                \
} while (0)

#endif
