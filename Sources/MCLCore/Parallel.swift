import Dispatch
import Foundation
import COpenBLAS

/// The one thread pool of a rank: Dispatch workers run the elementwise kernels and GEMM panels;
/// OpenBLAS itself is kept single-threaded so its workers never spin against ours.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = initialCount()

    /// Threads per rank now (initially `perRank(explicit: nil)`; `set` changes it).
    public static var count: Int { _count }

    /// Threads per rank: `explicit` (e.g. --threads), else `MCL_THREADS`, `OPENBLAS_NUM_THREADS`
    /// or `OMP_NUM_THREADS`, else the cores divided by the ranks on this node
    /// (`OMPI_COMM_WORLD_LOCAL_SIZE` under mpirun, `SLURM_NTASKS_PER_NODE` under srun).
    public static func perRank(explicit: Int?) -> Int {
        if let explicit, explicit > 0 { return explicit }
        let env = ProcessInfo.processInfo.environment
        for key in ["MCL_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"] {
            if let s = env[key], let v = Int(s), v > 0 { return v }
        }
        let local = Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? env["SLURM_NTASKS_PER_NODE"] ?? "1") ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
    }

    public static func set(_ n: Int) {
        _count = max(1, n)
        openblas_set_num_threads(1)
    }

    static func initialCount() -> Int {
        openblas_set_num_threads(1)
        return perRank(explicit: nil)
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
