import MCLCore

/// The similarity matrix of the views and the chain rule back to the unnormalised projections.
///
/// Forward: `n_i = max(|z_i|, 1e-12)`, `u_i = z_i / n_i`, `S = U U^T` (one `sgemm`).
///
/// Backward: with `G = dL/dS` (zero diagonal), `dL/dU = (G + G^T) U` (`G` symmetrised in place,
/// then one `sgemm`), and through the normalisation
///
///     dL/dz_i = (g_i - (u_i . g_i) u_i) / |z_i|     when |z_i| > 1e-12
///             = g_i / 1e-12                          otherwise (the clamp is constant)
///
/// where `g_i = dL/du_i`.
enum Similarity {
    /// The clamp of the norm in `u = z / max(|z|, eps)` (PyTorch's `F.normalize`).
    static let normEpsilon = 1e-12

    /// Side of the square tiles used to symmetrise the matrix cache-friendly.
    static let tile = 32

    /// Normalises the rows of `z` into `u` (computed in double, stored as float); returns the
    /// unclamped norms.
    static func normalise(_ z: UnsafeBufferPointer<Float>, views: Int, dim: Int,
                          into u: UnsafeMutablePointer<Float>) -> [Double] {
        var norms = [Double](repeating: 0, count: views)
        norms.withUnsafeMutableBufferPointer { nb in
            let np = nb.baseAddress!
            let zp = z.baseAddress!
            Threads.parallelRange(views, minPerThread: max(1, 65536 / max(1, dim))) { s, e in
                for i in s..<e {
                    let row = zp + i * dim
                    var ss = 0.0
                    for d in 0..<dim { let v = Double(row[d]); ss += v * v }
                    let n = ss.squareRoot()
                    np[i] = n
                    let inv = 1 / max(n, normEpsilon)
                    for d in 0..<dim { u[i * dim + d] = Float(Double(row[d]) * inv) }
                }
            }
        }
        return norms
    }

    /// `S_R = U_R U^T` for the rows `R` ([rows.count, views] row-major; all rows: `S = U U^T`).
    static func gramRows(_ u: UnsafePointer<Float>, views: Int, dim: Int, rows: Range<Int>, into s: UnsafeMutablePointer<Float>) {
        sgemm(transA: false, transB: true, m: rows.count, n: views, k: dim, a: u + rows.lowerBound * dim, lda: dim,
              b: u, ldb: dim, beta: 0, c: s, ldc: views)
    }

    /// Replaces `G` by `G + G^T` (both triangles) and zeroes the diagonal.
    static func symmetrise(_ a: UnsafeMutablePointer<Float>, n: Int) {
        let tiles = (n + tile - 1) / tile
        // Tile row `bi` handles the pairs (i, k), k < i, i in block bi, writing tiles (bi, bj) and
        // (bj, bi) for bj <= bi: every element is touched by exactly one thread.
        Threads.parallelFor(tiles) { bi in
            let i0 = bi * tile, i1 = min(n, i0 + tile)
            for bj in 0...bi {
                let k0 = bj * tile, k1 = min(n, k0 + tile)
                for i in i0..<i1 {
                    let kEnd = min(k1, i)
                    if kEnd <= k0 { continue }
                    for k in k0..<kEnd {
                        let h = a[i * n + k] + a[k * n + i]
                        a[i * n + k] = h
                        a[k * n + i] = h
                    }
                }
            }
            for i in i0..<i1 { a[i * n + i] = 0 }
        }
    }

    /// `dU = H U` (`H = G + G^T`, all rows).
    static func backward(_ h: UnsafePointer<Float>, _ u: UnsafePointer<Float>, views: Int, dim: Int,
                         into du: UnsafeMutablePointer<Float>) {
        rowTerm(h, u, views: views, dim: dim, rows: views, into: du)
    }

    /// The row term of a block of rows: `A = G_R U` (`G_R` is `[rows, views]`).
    static func rowTerm(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, views: Int, dim: Int, rows: Int,
                        into a: UnsafeMutablePointer<Float>) {
        sgemm(transA: false, transB: false, m: rows, n: dim, k: views, a: g, lda: views, b: u, ldb: dim,
              beta: 0, c: a, ldc: dim)
    }

    /// The column term of a block of rows: `C = G_R^T U_R` (`[views, dim]`; `uRows` = `U_R`).
    static func columnTerm(_ g: UnsafePointer<Float>, _ uRows: UnsafePointer<Float>, views: Int, dim: Int, rows: Int,
                           into c: UnsafeMutablePointer<Float>) {
        sgemm(transA: true, transB: false, m: views, n: dim, k: rows, a: g, lda: views, b: uRows, ldb: dim,
              beta: 0, c: c, ldc: dim)
    }

    /// dL/dz from dL/du through the normalisation (see the type's documentation).
    static func throughNormalisation(_ du: UnsafePointer<Float>, _ u: UnsafePointer<Float>, norms: [Double],
                                     views: Int, dim: Int, into dz: UnsafeMutablePointer<Float>) {
        norms.withUnsafeBufferPointer { nb in
            let np = nb.baseAddress!
            Threads.parallelRange(views, minPerThread: max(1, 65536 / max(1, dim))) { s, e in
                for i in s..<e {
                    let g = du + i * dim, ui = u + i * dim, out = dz + i * dim
                    let n = np[i]
                    if n > normEpsilon {
                        var dot = 0.0
                        for d in 0..<dim { dot += Double(ui[d]) * Double(g[d]) }
                        let inv = 1 / n
                        for d in 0..<dim { out[d] = Float((Double(g[d]) - dot * Double(ui[d])) * inv) }
                    } else {
                        let inv = 1 / normEpsilon
                        for d in 0..<dim { out[d] = Float(Double(g[d]) * inv) }
                    }
                }
            }
        }
    }
}
