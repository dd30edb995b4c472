import Foundation
import MCLCore

/// Winograd F(2x2, 3x3) for the stride-1, pad-1 3x3 convolutions that carry most of a ResNet's
/// FLOPs (Lavin & Gray, 2016).
///
/// The output is cut into 2x2 tiles; tile (n, th, tw) reads the 4x4 input patch d at rows
/// 2th-1 ..< 2th+3 and columns 2tw-1 ..< 2tw+3 (zero outside the image) and
///
///     Y_tile = A^T [ sum_ci (G g_{co,ci} G^T) ⊙ (B^T d_ci B) ] A
///
/// with B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], G = [[1,0,0],[1/2,1/2,1/2],
/// [1/2,-1/2,1/2],[0,0,1]], A^T = [[1,1,1,0],[0,1,-1,-1]]. The channel sum for each of the 16
/// positions e of the 4x4 transformed tile is a GEMM, `M_e[co][t] = U_e[co][ci] V_e[ci][t]`, with
/// 16 multiplies per tile and channel pair instead of 36: 2.25x fewer FLOPs than im2col.
///
/// Backward, exactly (the identity is linear, so its adjoint is the gradient):
/// - dX is the forward of dY with the flipped, transposed kernel (same as `Conv2d.backwardSame`);
/// - dW: `dU_e = sum_t (A dY_t A^T)_e V_e^T`, `dg = G^T dU G`.
///
/// Tiles are processed in blocks of whole tile rows sized to stay in cache; each worker thread
/// owns its blocks (round-robin, a fixed assignment), its scratch, and for dW its own dU, summed in
/// worker order at the end, so results are the same from run to run at a given thread count.
public enum Winograd {
    /// Floats per transformed block (V or M) per worker: about 4 MB.
    nonisolated(unsafe) public static var blockFloats =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_BLOCK"] ?? "") ?? 1 << 20

    /// Fewest input channels for the Winograd path. With OpenBLAS's GEMMs im2col won on the
    /// 16-channel stage of ResNet-18 width 16 (threshold 32); with oneDNN's, Winograd wins there too
    /// (width 16, batch 256, 2 threads: 238-240 images/s from 16 channels, 198-228 from 32,
    /// 209-222 without Winograd; docs/performance.md).
    nonisolated(unsafe) public static var minChannels =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_MIN_CHANNELS"] ?? "") ?? 16

    /// Whether a convolution of this geometry takes the Winograd path.
    public static func applies(kernel: Int, stride: Int, pad: Int, cin: Int, h: Int, w: Int) -> Bool {
        kernel == 3 && stride == 1 && pad == 1 && cin >= minChannels && h % 2 == 0 && w % 2 == 0 && h >= 2 && w >= 2
    }

    /// U[e][r][c] = (G g G^T)[e] for the 3x3 kernel g of output channel r and input channel c:
    /// `g = W[r][c]` (forward), or the flipped `W[c][r]` (`transposeFlip`, the kernel of dX).
    /// `w` is OIHW [cout][cin][3][3]; the result has rows = cout (or cin when transposed).
    static func transformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, transposeFlip: Bool,
                                 into u: UnsafeMutablePointer<Float>) {
        let rows = transposeFlip ? cin : cout, cols = transposeFlip ? cout : cin
        let plane = rows * cols
        Threads.parallelRange(rows, minPerThread: 8) { r0, r1 in
            for r in r0..<r1 {
                for c in 0..<cols {
                    let src = transposeFlip ? w + (c * cin + r) * 9 : w + (r * cin + c) * 9
                    @inline(__always) func g(_ k: Int) -> Float { transposeFlip ? src[8 - k] : src[k] }
                    let o = u + r * cols + c
                    // a = G g (rows of 3), then each row i of u = a_i G^T (4 values).
                    @inline(__always) func emit(_ i: Int, _ a0: Float, _ a1: Float, _ a2: Float) {
                        o[(4 * i + 0) * plane] = a0
                        o[(4 * i + 1) * plane] = 0.5 * (a0 + a1 + a2)
                        o[(4 * i + 2) * plane] = 0.5 * (a0 - a1 + a2)
                        o[(4 * i + 3) * plane] = a2
                    }
                    emit(0, g(0), g(1), g(2))
                    emit(1, 0.5 * (g(0) + g(3) + g(6)), 0.5 * (g(1) + g(4) + g(7)), 0.5 * (g(2) + g(5) + g(8)))
                    emit(2, 0.5 * (g(0) - g(3) + g(6)), 0.5 * (g(1) - g(4) + g(7)), 0.5 * (g(2) - g(5) + g(8)))
                    emit(3, g(6), g(7), g(8))
                }
            }
        }
    }

    /// Block geometry: `rows` tile rows (of `tile` x `tile` outputs, `(tile + 2)^2` transformed
    /// planes) split into `blocks` blocks of at most `perBlock` rows.
    struct Blocking {
        let tileRows: Int, tilesPerRow: Int, perBlock: Int, blocks: Int, workers: Int
        init(n: Int, h: Int, w: Int, channels: Int, tile: Int = 2) {
            tilesPerRow = w / tile
            tileRows = n * (h / tile)
            let planes = (tile + 2) * (tile + 2)
            let fit = max(1, Winograd.blockFloats / (planes * max(1, channels) * tilesPerRow))
            let t = Threads.count
            var b = max((tileRows + fit - 1) / fit, min(t, tileRows))
            let per = (tileRows + b - 1) / b
            b = (tileRows + per - 1) / per
            perBlock = per; blocks = b; workers = min(t, b)
        }
        var maxTiles: Int { perBlock * tilesPerRow }
    }

    /// y[cout][n][h][w] (=, or += with `accumulate`) the stride-1 pad-1 3x3 convolution of
    /// x[cin][n][h][w] whose transformed kernels are `u` ([16][cout][cin]).
    static func convolve(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, u: UnsafePointer<Float>,
                         cout: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        if n == 0 { return }
        let bk = Blocking(n: n, h: h, w: w, channels: max(cin, cout))
        let vSize = 16 * cin * bk.maxTiles, mSize = 16 * cout * bk.maxTiles, padSize = 4 * (w + 2)
        let per = vSize + mSize + padSize
        let scratch = ws.get("wino.fwd", per * bk.workers)
        Threads.parallelFor(bk.workers) { k in
            let v = scratch + k * per, m = v + vSize, pad = m + mSize
            var b = k
            while b < bk.blocks {
                let r0 = b * bk.perBlock, r1 = min(bk.tileRows, r0 + bk.perBlock)
                let tb = (r1 - r0) * bk.tilesPerRow
                inputTransform(x, channels: cin, n: n, h: h, w: w, rows: r0..<r1, v: v, tb: tb, pad: pad)
                for e in 0..<16 {
                    sgemmCall(false, false, cout, tb, cin, 1, u + e * cout * cin, cin, v + e * cin * tb, tb,
                              0, m + e * cout * tb, tb)
                }
                outputTransform(m, channels: cout, n: n, h: h, w: w, rows: r0..<r1, tb: tb, y: y, accumulate: accumulate, tmp: pad)
                b += bk.workers
            }
        }
    }

    /// dw[cout][cin][3][3] += the weight gradient of the stride-1 pad-1 convolution y = conv(x, w).
    static func weightGradient(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int,
                               dy: UnsafePointer<Float>, cout: Int, dw: UnsafeMutablePointer<Float>, ws: Workspace) {
        if n == 0 { return }
        let bk = Blocking(n: n, h: h, w: w, channels: max(cin, cout))
        let vSize = 16 * cin * bk.maxTiles, mSize = 16 * cout * bk.maxTiles, padSize = 4 * (w + 2)
        let uSize = 16 * cout * cin
        let per = vSize + mSize + padSize + uSize
        let scratch = ws.get("wino.dw", per * bk.workers)
        Threads.parallelFor(bk.workers) { k in
            let v = scratch + k * per, m = v + vSize, pad = m + mSize, du = pad + padSize
            var b = k, first = true
            while b < bk.blocks {
                let r0 = b * bk.perBlock, r1 = min(bk.tileRows, r0 + bk.perBlock)
                let tb = (r1 - r0) * bk.tilesPerRow
                inputTransform(x, channels: cin, n: n, h: h, w: w, rows: r0..<r1, v: v, tb: tb, pad: pad)
                gradTransform(dy, channels: cout, n: n, h: h, w: w, rows: r0..<r1, m: m, tb: tb, tmp: pad)
                for e in 0..<16 {
                    sgemmCall(false, true, cout, cin, tb, 1, m + e * cout * tb, tb, v + e * cin * tb, tb,
                              first ? 0 : 1, du + e * cout * cin, cin)
                }
                first = false
                b += bk.workers
            }
        }
        // Sum the workers' dU in worker order, then dg = G^T dU G.
        let du0 = scratch + vSize + mSize + padSize
        for k in 1..<max(1, bk.workers) {
            let duk = scratch + k * per + vSize + mSize + padSize
            Threads.parallelRange(uSize) { s, e in for i in s..<e { du0[i] += duk[i] } }
        }
        let plane = cout * cin
        Threads.parallelRange(plane, minPerThread: 64) { s, e in
            for idx in s..<e {
                @inline(__always) func d(_ i: Int, _ c: Int) -> Float { du0[(4 * i + c) * plane + idx] }
                let o = dw + idx * 9
                // Q = G^T D (3 rows of 4), then each row of dg = Q_i G (3 values).
                @inline(__always) func emit(_ i: Int, _ q0: Float, _ q1: Float, _ q2: Float, _ q3: Float) {
                    o[3 * i] += q0 + 0.5 * (q1 + q2)
                    o[3 * i + 1] += 0.5 * (q1 - q2)
                    o[3 * i + 2] += 0.5 * (q1 + q2) + q3
                }
                emit(0, d(0, 0) + 0.5 * (d(1, 0) + d(2, 0)), d(0, 1) + 0.5 * (d(1, 1) + d(2, 1)),
                     d(0, 2) + 0.5 * (d(1, 2) + d(2, 2)), d(0, 3) + 0.5 * (d(1, 3) + d(2, 3)))
                emit(1, 0.5 * (d(1, 0) - d(2, 0)), 0.5 * (d(1, 1) - d(2, 1)),
                     0.5 * (d(1, 2) - d(2, 2)), 0.5 * (d(1, 3) - d(2, 3)))
                emit(2, 0.5 * (d(1, 0) + d(2, 0)) + d(3, 0), 0.5 * (d(1, 1) + d(2, 1)) + d(3, 1),
                     0.5 * (d(1, 2) + d(2, 2)) + d(3, 2), 0.5 * (d(1, 3) + d(2, 3)) + d(3, 3))
            }
        }
    }

    /// V[e][c][l] = (B^T d B)[e] for the input patch of local tile l of tile rows `rows`.
    @inline(__always)
    static func inputTransform(_ x: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int, rows: Range<Int>,
                               v: UnsafeMutablePointer<Float>, tb: Int, pad: UnsafeMutablePointer<Float>) {
        let nth = h / 2, ntw = w / 2, wp = w + 2
        let plane = channels * tb
        // pad holds the four row-transformed padded rows t0..t3 (width w + 2).
        let t0 = pad, t1 = pad + wp, t2 = pad + 2 * wp, t3 = pad + 3 * wp
        t0[0] = 0; t1[0] = 0; t2[0] = 0; t3[0] = 0
        t0[wp - 1] = 0; t1[wp - 1] = 0; t2[wp - 1] = 0; t3[wp - 1] = 0
        for c in 0..<channels {
            for r in rows {
                let ni = r / nth, th = r % nth
                let img = x + (c * n + ni) * h * w
                let ih = 2 * th - 1
                // Rows ih ..< ih + 4; the first is missing at the top, the last at the bottom.
                let hasTop = ih >= 0, hasBottom = ih + 3 < h
                let d1 = img + (ih + 1) * w, d2 = img + (ih + 2) * w
                if hasTop && hasBottom {
                    let d0 = img + ih * w, d3 = img + (ih + 3) * w
                    for j in 0..<w {
                        t0[j + 1] = d0[j] - d2[j]; t1[j + 1] = d1[j] + d2[j]
                        t2[j + 1] = d2[j] - d1[j]; t3[j + 1] = d1[j] - d3[j]
                    }
                } else if hasBottom {  // top row is padding (d0 = 0)
                    let d3 = img + (ih + 3) * w
                    for j in 0..<w {
                        t0[j + 1] = -d2[j]; t1[j + 1] = d1[j] + d2[j]
                        t2[j + 1] = d2[j] - d1[j]; t3[j + 1] = d1[j] - d3[j]
                    }
                } else if hasTop {  // bottom row is padding (d3 = 0)
                    let d0 = img + ih * w
                    for j in 0..<w {
                        t0[j + 1] = d0[j] - d2[j]; t1[j + 1] = d1[j] + d2[j]
                        t2[j + 1] = d2[j] - d1[j]; t3[j + 1] = d1[j]
                    }
                } else {  // h == 2: both padding
                    for j in 0..<w {
                        t0[j + 1] = -d2[j]; t1[j + 1] = d1[j] + d2[j]
                        t2[j + 1] = d2[j] - d1[j]; t3[j + 1] = d1[j]
                    }
                }
                let base = (r - rows.lowerBound) * ntw
                @inline(__always) func columns(_ ri: Int, _ tr: UnsafeMutablePointer<Float>) {
                    let o0 = v + (4 * ri) * plane + c * tb + base
                    let o1 = o0 + plane, o2 = o1 + plane, o3 = o2 + plane
                    for tw in 0..<ntw {
                        let a = tr[2 * tw], b = tr[2 * tw + 1], cc = tr[2 * tw + 2], d = tr[2 * tw + 3]
                        o0[tw] = a - cc; o1[tw] = b + cc; o2[tw] = cc - b; o3[tw] = b - d
                    }
                }
                columns(0, t0); columns(1, t1); columns(2, t2); columns(3, t3)
            }
        }
    }

    /// y tiles of rows `rows` (=, or +=) from M[e][c][l]: Y = A^T m A.
    ///
    /// In two passes (see `gradTransform` for why): each row i of the tiles' m becomes the two
    /// values of m_i A in `tmp` (4 rows of w, reading 4 planes at a time), then
    /// Y row 0 = t0 + t1 + t2 and Y row 1 = t1 - t2 - t3 over whole rows.
    @inline(__always)
    static func outputTransform(_ m: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int, rows: Range<Int>,
                                tb: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool,
                                tmp: UnsafeMutablePointer<Float>) {
        let nth = h / 2, ntw = w / 2
        let plane = channels * tb
        let t0 = tmp, t1 = tmp + w, t2 = tmp + 2 * w, t3 = tmp + 3 * w
        for c in 0..<channels {
            for r in rows {
                let ni = r / nth, th = r % nth
                let out0 = y + ((c * n + ni) * h + 2 * th) * w, out1 = out0 + w
                let mb = m + c * tb + (r - rows.lowerBound) * ntw
                // m_i A: (m_i0 + m_i1 + m_i2, m_i1 - m_i2 - m_i3) for each tile.
                @inline(__always) func columns(_ i: Int, _ tr: UnsafeMutablePointer<Float>) {
                    let i0 = mb + (4 * i) * plane
                    let i1 = i0 + plane, i2 = i1 + plane, i3 = i2 + plane
                    for tw in 0..<ntw {
                        let a = i0[tw], b = i1[tw], cc = i2[tw], d = i3[tw]
                        tr[2 * tw] = a + b + cc; tr[2 * tw + 1] = b - cc - d
                    }
                }
                columns(0, t0); columns(1, t1); columns(2, t2); columns(3, t3)
                if accumulate {
                    for j in 0..<w {
                        out0[j] += t0[j] + t1[j] + t2[j]; out1[j] += t1[j] - t2[j] - t3[j]
                    }
                } else {
                    for j in 0..<w {
                        out0[j] = t0[j] + t1[j] + t2[j]; out1[j] = t1[j] - t2[j] - t3[j]
                    }
                }
            }
        }
    }

    /// M[e][c][l] = (A dY_l A^T)[e], the adjoint of the output transform, for dW.
    ///
    /// In two passes, like `inputTransform`: the rows of A dY for a tile row go to `tmp` (4 rows
    /// of w), then each row fills 4 of the 16 planes. Writing all 16 planes from one loop made 16
    /// store streams whose addresses differ by multiples of the plane size (a multiple of 4 KB
    /// for the usual shapes): they fall in the same L1 set, beyond its associativity, and the
    /// transform took 2-3x the GEMMs' time (64 channels, 32x32: 34 ms of a 57 ms dW).
    @inline(__always)
    static func gradTransform(_ dy: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int, rows: Range<Int>,
                              m: UnsafeMutablePointer<Float>, tb: Int, tmp: UnsafeMutablePointer<Float>) {
        let nth = h / 2, ntw = w / 2
        let plane = channels * tb
        let t0 = tmp, t1 = tmp + w, t2 = tmp + 2 * w, t3 = tmp + 3 * w
        for c in 0..<channels {
            for r in rows {
                let ni = r / nth, th = r % nth
                let in0 = dy + ((c * n + ni) * h + 2 * th) * w, in1 = in0 + w
                // Rows of A dY: in0, in0 + in1, in0 - in1, -in1.
                for j in 0..<w {
                    let p = in0[j], s = in1[j]
                    t0[j] = p; t1[j] = p + s; t2[j] = p - s; t3[j] = -s
                }
                let base = c * tb + (r - rows.lowerBound) * ntw
                // Each row (x0, x1) of a tile -> (x0, x0 + x1, x0 - x1, -x1).
                @inline(__always) func columns(_ i: Int, _ tr: UnsafeMutablePointer<Float>) {
                    let o0 = m + (4 * i) * plane + base
                    let o1 = o0 + plane, o2 = o1 + plane, o3 = o2 + plane
                    for tw in 0..<ntw {
                        let x0 = tr[2 * tw], x1 = tr[2 * tw + 1]
                        o0[tw] = x0; o1[tw] = x0 + x1; o2[tw] = x0 - x1; o3[tw] = -x1
                    }
                }
                columns(0, t0); columns(1, t1); columns(2, t2); columns(3, t3)
            }
        }
    }
}
