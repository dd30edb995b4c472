import Foundation
import MCLCore
import MCLObjective
import MCLDistributed

/// Time and memory of the contrastive loss of one global batch on every rank: the row-sharded
/// loss (`shardedContrastiveLoss`, what training runs) or, for comparison, the whole matrix on
/// every rank (`contrastiveLoss`, what training did before the loss was sharded).
public struct LossBenchmark: Codable, Sendable {
    public var mode: String
    public var ranks: Int
    public var threads: Int
    public var views: Int
    public var dim: Int
    /// Median seconds per loss call (including the reduce-scatter and allreduce), slowest rank.
    public var seconds: Double
    /// The similarity-matrix block each rank holds, MB.
    public var matrixMB: Double
    /// Peak resident set of the largest rank, MB.
    public var peakRSSMB: Double

    public var summary: String {
        String(format: "loss %@: V=%d views, D=%d, %d rank(s) x %d thread(s): %.4f s per call, matrix %.1f MB per rank, peak RSS %.0f MB",
               mode, views, dim, ranks, threads, seconds, matrixMB, peakRSSMB)
    }

    /// MCL (official SPA, auxiliary rotations) on `views` random projections of `dim` values.
    public static func run(views: Int, dim: Int, replicated: Bool, steps: Int, comm: Communicator) -> LossBenchmark {
        precondition(views % (2 * comm.size) == 0, "views must be a multiple of 2 x ranks")
        let n = views / comm.size
        var rng = SplitMix64(seed: 9, 1)
        let z = (0..<(views * dim)).map { _ in rng.nextFloat() * 2 - 1 }
        let main = (0..<views).map { Int32(($0 / 8) % 10) }, aux = (0..<views).map { Int32(($0 / 2) % 4) }
        let config = LossConfig(kind: .mcl, spa: .official)
        let targets = sampleSPATargets(main: main, aux: aux, useAux: true, mode: .official, seed: 1, step: 0)
        var times: [Double] = []
        for _ in 0..<(steps + 1) {
            comm.barrier()
            let t0 = ProcessStats.now()
            let out = z.withUnsafeBufferPointer { zb in
                replicated
                    ? contrastiveLoss(z: zb, views: views, dim: dim, main: main, aux: aux, spaTargets: targets, config: config)
                    : shardedContrastiveLoss(zGlobal: zb, localViews: n, dim: dim, main: main, aux: aux,
                                             spaTargets: targets, config: config, comm: comm)
            }
            precondition(out.loss.isFinite)
            var t = [ProcessStats.now() - t0]
            comm.allreduceMax(&t)
            times.append(t[0])
        }
        times.removeFirst()  // the first call allocates and faults in the matrix
        var rss = [ProcessStats.peakRSSMB]
        comm.allreduceMax(&rss)
        let rowsHeld = replicated ? views : n
        return LossBenchmark(mode: replicated ? "whole matrix on every rank" : "sharded by rows", ranks: comm.size,
                             threads: Threads.count, views: views, dim: dim, seconds: times.sorted()[times.count / 2],
                             matrixMB: Double(rowsHeld * views * 4) / 1e6, peakRSSMB: rss[0])
    }
}
