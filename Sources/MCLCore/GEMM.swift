import Foundation
import COpenBLAS
import COneDNN

/// Row-major single-precision GEMM: C[M,N] = alpha * op(A) op(B) + beta * C.
///
/// The products run on oneDNN's sgemm (`GEMMEngine.oneDNN`), whose JIT kernels are chosen from
/// the CPU's feature flags (AVX-512, AVX2). OpenBLAS 0.3.21 picks its kernels from the CPU
/// model instead and falls back to its SSE3 "Prescott" kernels on models it does not know (as on
/// this project's AVX-512 test machines: 16-31 GFLOPS per core instead of 40-146, see
/// docs/performance.md). `MCL_GEMM=openblas` selects OpenBLAS, for comparisons.
///
/// mcl-dist keeps one thread pool: OpenBLAS runs single-threaded (`Threads.set` pins it to 1)
/// and large products are split into column (or row) panels, one per Dispatch worker, each an
/// independent OpenBLAS call. This avoids OpenBLAS's worker threads spinning (sched_yield) while
/// the elementwise kernels run on the same two cores.
@inline(__always)
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    let t = Threads.count
    let work = Double(m) * Double(n) * Double(k)
    if t <= 1 || work < 4e6 {
        sgemmCall(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if n >= m || n >= 64 * t {
        // Column panels: C[:, j0..<j1] = op(A) op(B)[:, j0..<j1]
        let step = ((n + t - 1) / t + 15) / 16 * 16
        let parts = (n + step - 1) / step
        Threads.parallelFor(parts) { p in
            let j0 = p * step, j1 = min(n, j0 + step)
            let bp = transB ? b + j0 * ldb : b + j0
            sgemmCall(transA, transB, m, j1 - j0, k, alpha, a, lda, bp, ldb, beta, c + j0, ldc)
        }
    } else {
        // Row panels: C[i0..<i1, :] = op(A)[i0..<i1, :] op(B)
        let step = ((m + t - 1) / t + 15) / 16 * 16
        let parts = (m + step - 1) / step
        Threads.parallelFor(parts) { p in
            let i0 = p * step, i1 = min(m, i0 + step)
            let ap = transA ? a + i0 : a + i0 * lda
            sgemmCall(transA, transB, i1 - i0, n, k, alpha, ap, lda, b, ldb, beta, c + i0 * ldc, ldc)
        }
    }
}

@inline(__always)
public func sgemmCall(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
               _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
               _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    switch GEMMEngine.current {
    case .oneDNN:
        let status = mcl_dnnl_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        precondition(status == 0, "dnnl_sgemm failed (status \(status)) for \(m) x \(n) x \(k)")
    case .openBLAS:
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// Which library computes `sgemm`.
public enum GEMMEngine: String, Sendable {
    case oneDNN = "onednn"
    case openBLAS = "openblas"

    /// oneDNN unless `MCL_GEMM=openblas`.
    public static let current: GEMMEngine =
        ProcessInfo.processInfo.environment["MCL_GEMM"].flatMap { GEMMEngine(rawValue: $0.lowercased()) } ?? .oneDNN

    /// The engine and the kernels it runs, e.g. "onednn (avx512_core)" or "openblas (Prescott)".
    public static var description: String {
        switch current {
        case .oneDNN: return "onednn (\(String(cString: mcl_dnnl_isa())))"
        case .openBLAS: return "openblas (\(String(cString: openblas_get_corename())))"
        }
    }
}
