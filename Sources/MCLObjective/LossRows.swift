import MCLCore

/// The contrastive objective restricted to a block of rows of the similarity matrix: the part of
/// the loss and of dL/dZ that one rank computes when the loss is sharded by rows.
///
/// Rank `r` of `N` owns the views `R = [lo, hi)` of the gathered global batch (its own shard, in
/// rank order). With `U` the normalised projections of all `V` views it computes
///
///     S_R = U_R U^T                                 ([|R|, V], O(|R| V D) time, O(|R| V) memory)
///     l(i), G_i. = dL/dS_i.            for i in R   (the row kernels of `contrastiveLoss`)
///     A = G_R U                                     (the row term of dL/dU for its own views)
///     C = G_R^T U_R                                 ([V, D], its column contributions to every view)
///
/// Since `dL/dU = (G + G^T) U`, the own views' gradient is `dL/dU_R = A + (sum over ranks of C)_R`:
/// a reduce-scatter of `C` (block `r` to rank `r`) completes it, and an allreduce of the two row
/// sums (`rowSums`) gives the loss. SPA targets are drawn for the whole batch as before, so every
/// rank uses the same targets as the unsharded loss. When `R` covers every view nothing is
/// exchanged: `G` is symmetrised in place and `dL/dU = (G + G^T) U` is one product, as before.
///
/// Use: `init` (the local work), the collectives on `columnContributions` and `rowSums`, then
/// `finish`. `contrastiveLoss` is `init` over all rows followed by `finish`.
public final class LossRows {
    public let views: Int, dim: Int
    public let rows: Range<Int>
    public let config: LossConfig
    /// `[sum_{i in R} l_ccm(i), sum_{i in R} l_spa(i)]`: allreduce (sum) before `finish`.
    public private(set) var rowSums: [Double]
    /// `C = G_R^T U_R`, `[views, dim]`: reduce-scatter (sum, block `r` of `rows.count * dim` floats
    /// to rank `r`) before `finish`. Empty when the rows cover every view.
    public private(set) var columnContributions: [Float]
    /// Whether `rows` covers every view (the single-rank case).
    public var isWhole: Bool { rows.count == views }

    let u: UnsafeMutablePointer<Float>
    var ownNorms: [Double]
    /// `A = G_R U` (or the whole `dL/dU` when `isWhole`), `[rows.count, dim]`.
    var rowGrad: [Float]

    /// Computes the rows `rows` of the loss of the global batch `z` (`[views, dim]`, views
    /// interleaved; the other arguments as in `contrastiveLoss`).
    public init(z: UnsafeBufferPointer<Float>, views: Int, dim: Int, main: [Int32], aux: [Int32],
                spaTargets: [Int32]?, config: LossConfig, rows: Range<Int>) {
        precondition(views >= 2 && views % 2 == 0, "contrastiveLoss: \(views) views, expected an even count >= 2")
        precondition(dim >= 1 && z.count == views * dim, "contrastiveLoss: z has \(z.count) values, expected \(views) x \(dim)")
        precondition(main.count == views, "contrastiveLoss: \(main.count) main labels for \(views) views")
        precondition(!config.useAux || aux.count == views, "contrastiveLoss: \(aux.count) auxiliary labels for \(views) views")
        precondition(config.tau > 0, "contrastiveLoss: tau must be positive, got \(config.tau)")
        precondition(rows.lowerBound >= 0 && rows.upperBound <= views && !rows.isEmpty,
                     "contrastiveLoss: rows \(rows) outside the \(views) views")
        var targets = [Int32](repeating: -1, count: views)
        if config.needsSPATargets {
            guard let t = spaTargets else {
                preconditionFailure("contrastiveLoss: \(config.spa.rawValue) SPA needs spaTargets (see sampleSPATargets)")
            }
            precondition(t.count == views, "contrastiveLoss: \(t.count) SPA targets for \(views) views")
            for i in 0..<views where t[i] >= 0 {
                precondition(Int(t[i]) < views && Int(t[i]) >> 1 != i >> 1,
                             "contrastiveLoss: SPA target \(t[i]) of view \(i) is out of range or a view of the same image")
            }
            targets = t
        }
        let auxLabels = config.useAux ? aux : [Int32](repeating: 0, count: views)
        self.views = views; self.dim = dim; self.rows = rows; self.config = config

        let n = views, lo = rows.lowerBound, nr = rows.count
        u = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
        let norms = Similarity.normalise(z, views: n, dim: dim, into: u)
        ownNorms = Array(norms[rows])
        let matrix = MatrixCache.shared.acquire(nr * n)
        defer { MatrixCache.shared.release(matrix) }
        let s = matrix.pointer
        Similarity.gramRows(u, views: n, dim: dim, rows: rows, into: s)

        var rowCCM = [Double](repeating: 0, count: nr)
        var rowSPA = [Double](repeating: 0, count: nr)
        let kind = config.kind, mode = config.spa
        let lambda = kind == .mcl ? config.spaWeight : 1
        main.withUnsafeBufferPointer { yb in
        auxLabels.withUnsafeBufferPointer { rb in
        targets.withUnsafeBufferPointer { tb in
        rowCCM.withUnsafeMutableBufferPointer { cb in
        rowSPA.withUnsafeMutableBufferPointer { sb in
            let ctx = RowContext(views: n, y: yb.baseAddress!, r: rb.baseAddress!, config: config)
            let tp = tb.baseAddress!, cp = cb.baseAddress!, sp = sb.baseAddress!
            Threads.parallelRange(nr, minPerThread: max(1, 65536 / n)) { start, end in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * n)
                defer { scratch.deallocate() }
                let m = scratch, e = scratch + n, g = scratch + 2 * n
                for local in start..<end {
                    let i = lo + local
                    let row = s + local * n
                    g.initialize(repeating: 0, count: n)
                    switch kind {
                    case .simclr, .ceSimCLR:
                        cp[local] = ctx.simclr(i, row, m: m, e: e, g: g, weight: 1)
                    case .ce, .ceRotation:
                        preconditionFailure("\(kind.rawValue) has no contrastive term")
                    case .supcon:
                        cp[local] = ctx.supcon(i, row, m: m, e: e, g: g, weight: 1)
                    case .ccm, .spa, .mcl:
                        ctx.fillMultipliers(i, m)
                        if kind != .spa { cp[local] = ctx.ccm(i, row, m: m, e: e, g: g, weight: 1) }
                        if kind != .ccm {
                            switch mode {
                            case .official:
                                sp[local] = ctx.spaOfficial(i, target: Int(tp[i]), row, m: m, e: e, g: g, weight: lambda)
                            case .paperSample:
                                sp[local] = ctx.spaPaperSample(i, target: Int(tp[i]), row, m: m, e: e, g: g, weight: lambda)
                            case .paperExpectation:
                                sp[local] = ctx.spaExpectation(i, row, m: m, e: e, g: g, weight: lambda)
                            }
                        }
                    }
                    ctx.storeGradient(i, row, g)
                }
            }
        }}}}}
        var ccmSum = 0.0, spaSum = 0.0
        for i in 0..<nr { ccmSum += rowCCM[i]; spaSum += rowSPA[i] }
        rowSums = [ccmSum, spaSum]

        rowGrad = [Float](repeating: 0, count: nr * dim)
        if nr == n {
            columnContributions = []
            Similarity.symmetrise(s, n: n)
            rowGrad.withUnsafeMutableBufferPointer { Similarity.backward(s, u, views: n, dim: dim, into: $0.baseAddress!) }
        } else {
            columnContributions = [Float](repeating: 0, count: n * dim)
            rowGrad.withUnsafeMutableBufferPointer { a in
                Similarity.rowTerm(s, u, views: n, dim: dim, rows: nr, into: a.baseAddress!)
            }
            columnContributions.withUnsafeMutableBufferPointer { c in
                Similarity.columnTerm(s, u + lo * dim, views: n, dim: dim, rows: nr, into: c.baseAddress!)
            }
        }
    }

    deinit { u.deallocate() }

    /// The loss of the whole batch and dL/dz of the own rows (`gradZ` is `[rows.count, dim]`).
    ///
    /// - Parameters:
    ///   - reducedColumns: this rank's block of the summed `columnContributions`
    ///     (`rows.count * dim` floats); ignored (may be nil) when `isWhole`.
    ///   - totals: `rowSums` summed over the ranks (`rowSums` itself when `isWhole`).
    public func finish(reducedColumns: UnsafePointer<Float>?, totals: [Double]) -> LossOutput {
        precondition(totals.count == 2, "LossRows.finish: expected the two row sums")
        let nr = rows.count
        if !isWhole {
            guard let reducedColumns else { preconditionFailure("LossRows.finish: the reduced column terms are missing") }
            for k in 0..<(nr * dim) { rowGrad[k] += reducedColumns[k] }
        }
        var gradZ = [Float](repeating: 0, count: nr * dim)
        rowGrad.withUnsafeBufferPointer { du in
            gradZ.withUnsafeMutableBufferPointer { gz in
                Similarity.throughNormalisation(du.baseAddress!, u + rows.lowerBound * dim, norms: ownNorms,
                                                views: nr, dim: dim, into: gz.baseAddress!)
            }
        }
        let ccm = totals[0] / Double(views), spa = totals[1] / Double(views)
        let loss: Double
        switch config.kind {
        case .simclr, .supcon, .ccm, .ceSimCLR, .ce, .ceRotation: loss = ccm
        case .spa: loss = spa
        case .mcl: loss = ccm + config.spaWeight * spa
        }
        return LossOutput(loss: loss, ccm: ccm, spa: spa, gradZ: gradZ)
    }
}
