import Dispatch
import COpenBLAS

/// Thread settings shared by the kernels: OpenBLAS's pool for GEMM, Dispatch for elementwise work.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = max(1, Int(openblas_get_num_threads()))

    /// Threads per rank for elementwise kernels and OpenBLAS.
    public static var count: Int { _count }

    public static func set(_ n: Int) {
        _count = max(1, n)
        openblas_set_num_threads(Int32(_count))
    }

    /// Runs `body(chunkStart, chunkEnd)` over 0..<n split into contiguous chunks, one per thread,
    /// when the work is large enough to pay for the hand-off.
    @inline(__always)
    public static func parallelRange(_ n: Int, minPerThread: Int = 16384, _ body: (Int, Int) -> Void) {
        let t = min(_count, max(1, n / max(1, minPerThread)))
        if t <= 1 { body(0, n); return }
        let chunk = (n + t - 1) / t
        // The kernels hand in closures over raw buffers whose disjoint chunks the threads own.
        nonisolated(unsafe) let work = body
        DispatchQueue.concurrentPerform(iterations: t) { i in
            let s = i * chunk, e = min(n, s + chunk)
            if s < e { work(s, e) }
        }
    }

    /// Runs `body(i)` for i in 0..<n, spread over the threads (for coarse, independent items).
    @inline(__always)
    public static func parallelFor(_ n: Int, _ body: (Int) -> Void) {
        if _count <= 1 || n <= 1 { for i in 0..<n { body(i) }; return }
        let t = min(_count, n)
        nonisolated(unsafe) let work = body
        DispatchQueue.concurrentPerform(iterations: t) { k in
            var i = k
            while i < n { work(i); i += t }
        }
    }
}
