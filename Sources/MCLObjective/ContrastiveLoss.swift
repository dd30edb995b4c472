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
/// This is `LossRows` over every row (one rank); `LossRows` also computes a block of rows, for
/// the loss sharded across ranks.
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
    let whole = LossRows(z: z, views: views, dim: dim, main: main, aux: aux, spaTargets: spaTargets,
                         config: config, rows: 0..<views)
    return whole.finish(reducedColumns: nil, totals: whole.rowSums)
}

/// `contrastiveLoss` on an array of projections (see the buffer version).
public func contrastiveLoss(z: [Float], views: Int, dim: Int, main: [Int32], aux: [Int32],
                    spaTargets: [Int32]?, config: LossConfig) -> LossOutput {
    z.withUnsafeBufferPointer {
        contrastiveLoss(z: $0, views: views, dim: dim, main: main, aux: aux, spaTargets: spaTargets, config: config)
    }
}
