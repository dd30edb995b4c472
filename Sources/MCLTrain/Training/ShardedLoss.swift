import MCLCore
import MCLObjective
import MCLDistributed

/// The contrastive loss of the gathered global batch, sharded by rows across the ranks.
///
/// Rank `r` owns the views `[r n, (r+1) n)` (its own shard of `n` views; every rank holds the same
/// `n`). It computes its rows of the similarity matrix, their losses and both gradient terms
/// (`LossRows`); a reduce-scatter of the column terms completes dL/dZ for its own views and an
/// allreduce of the two row sums gives the loss. Time O(V^2 D / N) and memory O(V^2 / N) per rank
/// instead of O(V^2 D) and O(V^2) (every rank computing the whole matrix). With one rank this is
/// `contrastiveLoss`.
///
/// - Returns: the loss of the global batch and dL/dz of this rank's `n` views (`[n, dim]`).
public func shardedContrastiveLoss(zGlobal: UnsafeBufferPointer<Float>, localViews n: Int, dim: Int,
                                   main: [Int32], aux: [Int32], spaTargets: [Int32]?, config: LossConfig,
                                   comm: Communicator) -> LossOutput {
    let views = comm.size * n
    let rows = LossRows(z: zGlobal, views: views, dim: dim, main: main, aux: aux, spaTargets: spaTargets,
                        config: config, rows: (comm.rank * n)..<((comm.rank + 1) * n))
    if rows.isWhole { return rows.finish(reducedColumns: nil, totals: rows.rowSums) }
    var reduced = [Float](repeating: 0, count: n * dim)
    rows.columnContributions.withUnsafeBufferPointer { c in
        reduced.withUnsafeMutableBufferPointer { r in
            comm.reduceScatterSum(c.baseAddress!, countPerRank: n * dim, into: r.baseAddress!)
        }
    }
    var totals = rows.rowSums
    comm.allreduceSum(&totals)
    return reduced.withUnsafeBufferPointer { rows.finish(reducedColumns: $0.baseAddress!, totals: totals) }
}
