#ifndef MCL_CONEDNN_SHIM_H
#define MCL_CONEDNN_SHIM_H
// oneDNN (Debian: libdnnl-dev): its sgemm JIT-compiles AVX-512 / AVX2 kernels chosen from the
// CPU's feature flags. Debian's build threads with OpenMP (libgomp); mcl-dist runs each GEMM
// panel on one of its own Dispatch threads, so every call asks OpenMP for one thread.
#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>

// libgomp comes with libdnnl (its dependency); its symbol is looked up at run time because
// Debian keeps the libgomp.so link name in GCC's private folder, off the linker's path.
static inline void mcl_omp_one_thread(void) {
    static void (*set_threads)(int) = 0;
    static int looked = 0;
    if (!looked) {
        set_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
        looked = 1;
    }
    if (set_threads) set_threads(1);
}

static inline int mcl_dnnl_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                                 const float *a, long lda, const float *b, long ldb, float beta,
                                 float *c, long ldc) {
    mcl_omp_one_thread();
    return (int)dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline const char *mcl_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
    }
}
#endif
