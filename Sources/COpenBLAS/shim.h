#ifndef MCL_COPENBLAS_SHIM_H
#define MCL_COPENBLAS_SHIM_H
#include <cblas.h>
#include <lapacke.h>
// OpenBLAS extensions (declared in cblas.h of OpenBLAS, repeated here for clarity).
// openblas_set_num_threads, openblas_get_num_threads, openblas_get_corename, openblas_get_config
#endif
