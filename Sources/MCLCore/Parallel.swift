import Dispatch
import Foundation
import COpenBLAS

/// The one thread pool of a rank: Dispatch workers run the elementwise kernels and GEMM panels;
/// OpenBLAS itself is kept single-threaded so its workers never spin against ours.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = initialCount()

    /// Threads per rank (from `MCL_THREADS`, else `OPENBLAS_NUM_THREADS`, else the CPU count).
    public static var count: Int { _count }

    public static func set(_ n: Int) {
        _count = max(1, n)
        openblas_set_num_threads(1)
    }

    static func initialCount() -> Int {
        openblas_set_num_threads(1)
        let env = ProcessInfo.processInfo.environment
        for key in ["MCL_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"] {
            if let s = env[key], let v = Int(s), v > 0 { return v }
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
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
