import MCLCore

/// The contrastive objective of a global batch and its gradient with respect to the projections.
///
/// With `u_i = z_i / max(|z_i|, 1e-12)`, `S = U U^T` and `s_ik = max(S_ik, floor)` (or `S_ik`
/// without a floor), the objective is the mean over the 2N views of the per-view losses of
/// `config.kind` (SPEC 3):
///
///     L_simclr = (1/2N) sum_i l_simclr(i)          L_supcon = (1/2N) sum_i l_supcon(i)
///     L_ccm    = (1/2N) sum_i l_ccm(i)             L_spa    = (1/2N) sum_i l_spa(i)
///     L_mcl    = L_ccm + lambda L_spa
///
/// (see `RowContext.simclr`, `.supcon`, `.ccm`, `.spaOfficial`, `.spaPaperSample`,
/// `.spaExpectation` for each `l(i)` and its derivative). The gradient is
///
///     G_ik = dL/dS_ik = dL/ds_ik [S_ik >= floor],   dL/dU = (G + G^T) U,
///
/// then through the normalisation (see `Similarity`).
///
/// Cost: one `[2N, 2N]` float matrix (S, overwritten by G, then by G + G^T; kept between calls,
/// see `releaseLossWorkspace`), two `sgemm` of `2N x 2N x D`, and one or two passes of `exp` over
/// the matrix with the rows spread over `Threads`; row sums are accumulated in double.
///
/// - Parameters:
///   - z: `[views, dim]` row-major, views interleaved (2k and 2k+1 are partners).
///   - main: main label per view.
///   - aux: auxiliary label per view (ignored, and may be empty, unless `config.useAux`).
///   - spaTargets: per view target index or -1 (no target); required for official and
///     paper-sample SPA (a target must not be the view itself or its partner), ignored otherwise.
public func contrastiveLoss(z: UnsafeBufferPointer<Float>, views: Int, dim: Int, main: [Int32], aux: [Int32],
                    spaTargets: [Int32]?, config: LossConfig) -> LossOutput {
    precondition(views >= 2 && views % 2 == 0, "contrastiveLoss: \(views) views, expected an even count >= 2")
    precondition(dim >= 1 && z.count == views * dim, "contrastiveLoss: z has \(z.count) values, expected \(views) x \(dim)")
    precondition(main.count == views, "contrastiveLoss: \(main.count) main labels for \(views) views")
    precondition(!config.useAux || aux.count == views, "contrastiveLoss: \(aux.count) auxiliary labels for \(views) views")
    precondition(config.tau > 0, "contrastiveLoss: tau must be positive, got \(config.tau)")
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

    let n = views
    let u = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
    defer { u.deallocate() }
    let norms = Similarity.normalise(z, views: n, dim: dim, into: u)
    let matrix = MatrixCache.shared.acquire(n * n)
    defer { MatrixCache.shared.release(matrix) }
    let s = matrix.pointer
    Similarity.gram(u, views: n, dim: dim, into: s)

    var rowCCM = [Double](repeating: 0, count: n)
    var rowSPA = [Double](repeating: 0, count: n)
    let kind = config.kind, mode = config.spa
    let lambda = kind == .mcl ? config.spaWeight : 1
    main.withUnsafeBufferPointer { yb in
    auxLabels.withUnsafeBufferPointer { rb in
    targets.withUnsafeBufferPointer { tb in
    rowCCM.withUnsafeMutableBufferPointer { cb in
    rowSPA.withUnsafeMutableBufferPointer { sb in
        let ctx = RowContext(views: n, y: yb.baseAddress!, r: rb.baseAddress!, config: config)
        let tp = tb.baseAddress!, cp = cb.baseAddress!, sp = sb.baseAddress!
        Threads.parallelRange(n, minPerThread: max(1, 65536 / n)) { start, end in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * n)
            defer { scratch.deallocate() }
            let m = scratch, e = scratch + n, g = scratch + 2 * n
            for i in start..<end {
                let row = s + i * n
                g.initialize(repeating: 0, count: n)
                switch kind {
                case .simclr:
                    cp[i] = ctx.simclr(i, row, m: m, e: e, g: g, weight: 1)
                case .supcon:
                    cp[i] = ctx.supcon(i, row, m: m, e: e, g: g, weight: 1)
                case .ccm, .spa, .mcl:
                    ctx.fillMultipliers(i, m)
                    if kind != .spa { cp[i] = ctx.ccm(i, row, m: m, e: e, g: g, weight: 1) }
                    if kind != .ccm {
                        switch mode {
                        case .official:
                            sp[i] = ctx.spaOfficial(i, target: Int(tp[i]), row, m: m, e: e, g: g, weight: lambda)
                        case .paperSample:
                            sp[i] = ctx.spaPaperSample(i, target: Int(tp[i]), row, m: m, e: e, g: g, weight: lambda)
                        case .paperExpectation:
                            sp[i] = ctx.spaExpectation(i, row, m: m, e: e, g: g, weight: lambda)
                        }
                    }
                }
                ctx.storeGradient(i, row, g)
            }
        }
    }}}}}

    Similarity.symmetrise(s, n: n)
    let du = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
    defer { du.deallocate() }
    Similarity.backward(s, u, views: n, dim: dim, into: du)
    var gradZ = [Float](repeating: 0, count: n * dim)
    gradZ.withUnsafeMutableBufferPointer { gb in
        Similarity.throughNormalisation(du, u, norms: norms, views: n, dim: dim, into: gb.baseAddress!)
    }

    var ccmSum = 0.0, spaSum = 0.0
    for i in 0..<n { ccmSum += rowCCM[i]; spaSum += rowSPA[i] }
    let ccm = ccmSum / Double(n), spa = spaSum / Double(n)
    let loss: Double
    switch kind {
    case .simclr, .supcon, .ccm: loss = ccm
    case .spa: loss = spa
    case .mcl: loss = ccm + config.spaWeight * spa
    }
    return LossOutput(loss: loss, ccm: ccm, spa: spa, gradZ: gradZ)
}

/// `contrastiveLoss` on an array of projections (see the buffer version).
public func contrastiveLoss(z: [Float], views: Int, dim: Int, main: [Int32], aux: [Int32],
                    spaTargets: [Int32]?, config: LossConfig) -> LossOutput {
    z.withUnsafeBufferPointer {
        contrastiveLoss(z: $0, views: views, dim: dim, main: main, aux: aux, spaTargets: spaTargets, config: config)
    }
}
