import Foundation
import MCLCore
import CDirectConv

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
/// The transforms are C (`CDirectConv/winograd_transforms.c`, compiled per ISA): on AVX-512 with
/// rows of up to 32 pixels in registers (whole rows combined, each tile's window one permute),
/// otherwise in two passes over whole rows and then each tile's columns. `convolve` and
/// `transformWeights` also run F(4x4, 3x3) with `tile: 4` (`Winograd4` says where).
///
/// Tiles are processed in blocks of whole tile rows sized to stay in cache; each worker thread
/// owns its blocks (round-robin, a fixed assignment), its scratch, and for dW its own dU, summed in
/// worker order at the end, so results are the same from run to run at a given thread count.
public enum Winograd {
    /// Floats per transformed block (V or M) per worker: about 4 MB.
    nonisolated(unsafe) public static var blockFloats =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_BLOCK"] ?? "") ?? 1 << 20

    /// Floats per transformed block of dW (V or M; at least 128 tiles): smaller than the forward's,
    /// because dW writes both V and M before its GEMMs read them. Width 64, batch 64, 2 threads,
    /// best of 6 alternating runs: the 64-channel 32x32 dW 19.2-20.3 ms with 256K floats (256
    /// tiles), 23.1-24.1 with 1M; 128 to 512 channels within 10% either way.
    nonisolated(unsafe) public static var weightGradientBlockFloats =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_DW_BLOCK"] ?? "") ?? 1 << 18
    /// Fewest tiles per dW block (small maps with many channels: 512 x 4x4 keeps 128-tile GEMMs).
    nonisolated(unsafe) public static var weightGradientMinTiles = 128

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
    /// `w` is OIHW [cout][cin][3][3]; the result has (tile + 2)^2 planes of rows = cout (or cin
    /// when transposed) x cols, `planeStride(rows, cols)` apart; `tile` 4 gives F(4x4)'s G (`Winograd4`).
    static func transformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, transposeFlip: Bool,
                                 into u: UnsafeMutablePointer<Float>, tile: Int = 2) {
        let rows = transposeFlip ? cin : cout
        Threads.parallelRange(rows, minPerThread: 8) { r0, r1 in
            mcl_wino_weights(w, Int32(cout), Int32(cin), transposeFlip ? 1 : 0, Int32(tile), u, Int32(r0), Int32(r1))
        }
    }

    /// Floats between the planes of a transformed block V or M ([planes][channels][tb]), and of
    /// the transformed kernels U and dW's dU ([planes][rows][cols]): `channels * tb` (`rows *
    /// cols`) and one cache line (`mcl_wino_plane`), so that a tile's (or kernel's) per-plane
    /// accesses do not all map to one L1 set.
    static func planeStride(_ channels: Int, _ tb: Int) -> Int { Int(mcl_wino_plane(Int32(channels), Int32(tb))) }

    /// V = B^T d B of the tile rows `rows` of x (`tiles` tiles, planes `planeStride(cin, tiles)`
    /// apart): F(4x4)'s input transform with `tile` 4, F(2x2)'s with 2 (the forward's and dW's).
    static func transformInput(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, rows: Range<Int>,
                               into v: UnsafeMutablePointer<Float>, tiles: Int, pad: UnsafeMutablePointer<Float>, tile: Int) {
        let args = (Int32(cin), Int32(n), Int32(h), Int32(w), Int32(rows.lowerBound), Int32(rows.upperBound))
        if tile == 4 {
            mcl_wino4_input(x, args.0, args.1, args.2, args.3, args.4, args.5, v, Int32(tiles), pad)
        } else {
            mcl_wino2_input(x, args.0, args.1, args.2, args.3, args.4, args.5, v, Int32(tiles), pad)
        }
    }

    /// Block geometry: `rows` tile rows (of `tile` x `tile` outputs, `(tile + 2)^2` transformed
    /// planes) split into `blocks` blocks of at most `perBlock` rows.
    struct Blocking {
        let tileRows: Int, tilesPerRow: Int, perBlock: Int, blocks: Int, workers: Int
        init(n: Int, h: Int, w: Int, channels: Int, tile: Int = 2, floats: Int = Winograd.blockFloats, minTiles: Int = 1) {
            tilesPerRow = w / tile
            tileRows = n * (h / tile)
            let planes = (tile + 2) * (tile + 2)
            let fit = max(1, floats / (planes * max(1, channels) * tilesPerRow), (minTiles + tilesPerRow - 1) / tilesPerRow)
            let t = Threads.count
            var b = max((tileRows + fit - 1) / fit, min(t, tileRows))
            // Whole rounds of the workers: 3 blocks on 2 threads left one thread idle for a third of
            // the layer (256 channels 8x8 and 128 channels 16x16 with F(4x4) at batch 64).
            if b > t { b = (b + t - 1) / t * t }
            let per = (tileRows + b - 1) / b
            b = (tileRows + per - 1) / per
            perBlock = per; blocks = b; workers = min(t, b)
        }
        var maxTiles: Int { perBlock * tilesPerRow }
    }

    /// y[cout][n][h][w] (=, or += with `accumulate`) the stride-1 pad-1 3x3 convolution of
    /// x[cin][n][h][w] whose transformed kernels are `u` ([P][cout][cin], P = (tile + 2)^2 planes):
    /// F(2x2, 3x3) with `tile` 2, F(4x4, 3x3) (`Winograd4`; h and w multiples of 4) with 4.
    ///
    /// With `flipped` (F(4x4) on 4x4 maps), `u` holds the forward's kernels [P][cin][cout]
    /// of the layer whose dX this is, and the result is `flip(conv(flip(x), U^T))`: the correlation
    /// with the flipped kernel equals the flipped correlation of the flipped image with the kernel
    /// itself, so dX needs no second kernel transform (its GEMMs read U transposed).
    static func convolve(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, u: UnsafePointer<Float>,
                         cout: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace, tile: Int = 2,
                         flipped: Bool = false) {
        if n == 0 { return }
        let planes = (tile + 2) * (tile + 2)
        let bk = Blocking(n: n, h: h, w: w, channels: max(cin, cout), tile: tile)
        precondition(!flipped || (tile == 4 && flipFits(h: h, w: w)), "flipped Winograd: F(4x4) on 4x4 maps")
        let vSize = planes * planeStride(cin, bk.maxTiles), mSize = planes * planeStride(cout, bk.maxTiles), padSize = 7 * (w + 2)
        let per = vSize + mSize + padSize
        let scratch = ws.get("wino.fwd", per * bk.workers)
        let (h32, w32) = (Int32(h), Int32(w))
        Threads.parallelFor(bk.workers) { k in
            let v = scratch + k * per, m = v + vSize, pad = m + mSize
            var b = k
            while b < bk.blocks {
                let r0 = b * bk.perBlock, r1 = min(bk.tileRows, r0 + bk.perBlock)
                let tb = (r1 - r0) * bk.tilesPerRow
                if flipped {
                    mcl_wino4_single_input(x, Int32(cin), Int32(n), Int32(r0), Int32(r1), v, Int32(tb), 1)
                } else {
                    transformInput(x, cin: cin, n: n, h: h, w: w, rows: r0..<r1, into: v, tiles: tb, pad: pad, tile: tile)
                }
                let vp = planeStride(cin, tb), mp = planeStride(cout, tb), up = planeStride(cout, cin)
                for e in 0..<planes {
                    sgemmCall(flipped, false, cout, tb, cin, 1, u + e * up, flipped ? cout : cin, v + e * vp, tb,
                              0, m + e * mp, tb)
                }
                if flipped {
                    mcl_wino4_single_output(m, Int32(cout), Int32(n), Int32(r0), Int32(r1), Int32(tb), y, accumulate ? 1 : 0, 1)
                } else if tile == 4 {
                    mcl_wino4_output(m, Int32(cout), Int32(n), h32, w32, Int32(r0), Int32(r1), Int32(tb), y,
                                     accumulate ? 1 : 0, pad)
                } else {
                    mcl_wino2_output(m, Int32(cout), Int32(n), h32, w32, Int32(r0), Int32(r1), Int32(tb), y,
                                     accumulate ? 1 : 0, pad)
                }
                b += bk.workers
            }
        }
    }

    /// Whether `convolve(flipped: true)` can run: F(4x4) on 4x4 maps (one tile per image), whose
    /// 16-image kernels flip in registers.
    static func flipFits(h: Int, w: Int) -> Bool { h == 4 && w == 4 }

    /// dw[cout][cin][3][3] += the weight gradient of the stride-1 pad-1 convolution y = conv(x, w):
    /// since Y = A^T [(G g G^T) ⊙ (B^T d B)] A is linear in g, per tile
    ///
    ///     dg = G^T [ (A dY A^T) ⊙ (B^T d B) ] G,
    ///
    /// summed over tiles: the channel sum of each of the (tile + 2)^2 positions is a GEMM
    /// `dU_e[co][ci] = sum_t M_e[co][t] V_e[ci][t]` (M = A dY A^T, V = B^T d B), then one
    /// G^T dU G per kernel. `tile` 2 is F(2x2) (16 planes, 4 tiles' worth of GEMM work per 16
    /// kernel taps x outputs); 4 is F(4x4) (36 planes: 0.5625x F(2x2)'s GEMM FLOPs, and 2.25x
    /// instead of 4x the activations transformed; h and w multiples of 4, `Winograd4`).
    static func weightGradient(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int,
                               dy: UnsafePointer<Float>, cout: Int, dw: UnsafeMutablePointer<Float>, ws: Workspace,
                               tile: Int = 2) {
        if n == 0 { return }
        if splitsWeightGradientByRows(cin: cin, cout: cout, n: n, h: h, w: w, tile: tile) {
            weightGradientByRows(x, cin: cin, n: n, h: h, w: w, dy: dy, cout: cout, dw: dw, ws: ws, tile: tile)
            return
        }
        let planes = (tile + 2) * (tile + 2)
        let bk = Blocking(n: n, h: h, w: w, channels: max(cin, cout), tile: tile,
                          floats: Winograd.weightGradientBlockFloats, minTiles: Winograd.weightGradientMinTiles)
        let vSize = planes * planeStride(cin, bk.maxTiles), mSize = planes * planeStride(cout, bk.maxTiles)
        let padSize = (tile + 3) * (w + 2)
        let up = planeStride(cout, cin), uSize = planes * up
        let per = vSize + mSize + padSize + uSize
        let scratch = ws.get(tile == 4 ? "wino4.dw" : "wino.dw", per * bk.workers)
        Threads.parallelFor(bk.workers) { k in
            let v = scratch + k * per, m = v + vSize, pad = m + mSize, du = pad + padSize
            var b = k, first = true
            while b < bk.blocks {
                let r0 = b * bk.perBlock, r1 = min(bk.tileRows, r0 + bk.perBlock)
                let tb = (r1 - r0) * bk.tilesPerRow
                transformInput(x, cin: cin, n: n, h: h, w: w, rows: r0..<r1, into: v, tiles: tb, pad: pad, tile: tile)
                if tile == 4 {
                    mcl_wino4_grad(dy, Int32(cout), Int32(n), Int32(h), Int32(w), Int32(r0), Int32(r1), m, Int32(tb), pad)
                } else {
                    mcl_wino2_grad(dy, Int32(cout), Int32(n), Int32(h), Int32(w), Int32(r0), Int32(r1), m, Int32(tb), pad)
                }
                let vp = planeStride(cin, tb), mp = planeStride(cout, tb)
                for e in 0..<planes {
                    sgemmCall(false, true, cout, cin, tb, 1, m + e * mp, tb, v + e * vp, tb,
                              first ? 0 : 1, du + e * up, cin)
                }
                first = false
                b += bk.workers
            }
        }
        // Sum the workers' dU in worker order, then dg = G^T dU G (in C: see mcl_wino_weight_grad).
        Threads.parallelRange(cout * cin, minPerThread: 64) { s, e in
            mcl_wino_weight_grad(scratch + vSize + mSize + padSize, per, Int32(bk.workers), up, s, e, Int32(tile), dw)
        }
    }

    /// Most transformed floats (V and M of all tiles together) for `weightGradientByRows`.
    nonisolated(unsafe) public static var rowSplitMaxFloats =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_DW_ROWS_MAX"] ?? "") ?? 1 << 23

    /// Whether dW splits the output channels over the threads rather than the tiles: on layers
    /// with at least as many kernel floats as activation floats per transformed plane
    /// (`cout * cin >= tiles * max(cin, cout)`, e.g. 512 channels at 4x4 or 256 at 8x8 at batch
    /// 64), where the tile split's per-thread copies of dU, written by the GEMMs and summed after
    /// them, cost more memory traffic than the transformed activations.
    static func splitsWeightGradientByRows(cin: Int, cout: Int, n: Int, h: Int, w: Int, tile: Int) -> Bool {
        let tiles = n * (h / tile) * (w / tile), planes = (tile + 2) * (tile + 2)
        return Threads.count > 1 && cout >= Threads.count * 16 && cout * cin >= tiles * max(cin, cout)
            && planes * tiles * (cin + cout) <= rowSplitMaxFloats
    }

    /// dW as `weightGradient`, with every tile transformed first (V and M of the whole batch,
    /// split by tile rows over the threads), then thread k computing the kernels of its own output
    /// channels co0 ..< co1 in full: `dU_e[co0..<co1] = M_e[co0..<co1] V_e^T` over all tiles, one
    /// GEMM per plane, and `G^T dU G` of those rows. One dU, each element summed over the tiles by
    /// one GEMM, so the result does not depend on a worker order (it does on the thread count,
    /// through the GEMMs' row blocks).
    static func weightGradientByRows(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int,
                                     dy: UnsafePointer<Float>, cout: Int, dw: UnsafeMutablePointer<Float>, ws: Workspace,
                                     tile: Int) {
        let planes = (tile + 2) * (tile + 2), tilesPerRow = w / tile, tileRows = n * (h / tile)
        let tiles = tileRows * tilesPerRow, t = Threads.count
        let vp = planeStride(cin, tiles), mp = planeStride(cout, tiles), up = planeStride(cout, cin)
        let padSize = (tile + 3) * (w + 2)
        let scratch = ws.get(tile == 4 ? "wino4.dw" : "wino.dw", planes * (vp + mp + up) + t * padSize)
        let v = scratch, m = v + planes * vp, du = m + planes * mp, pads = du + planes * up
        Threads.parallelFor(t) { k in
            let r0 = k * tileRows / t, r1 = (k + 1) * tileRows / t, pad = pads + k * padSize
            if r0 == r1 { return }
            // Tile rows r0 ..< r1 start at tile r0 * tilesPerRow of every plane row of `tiles`.
            transformInput(x, cin: cin, n: n, h: h, w: w, rows: r0..<r1, into: v + r0 * tilesPerRow, tiles: tiles,
                           pad: pad, tile: tile)
            let args = (Int32(cout), Int32(n), Int32(h), Int32(w), Int32(r0), Int32(r1))
            if tile == 4 {
                mcl_wino4_grad(dy, args.0, args.1, args.2, args.3, args.4, args.5, m + r0 * tilesPerRow, Int32(tiles), pad)
            } else {
                mcl_wino2_grad(dy, args.0, args.1, args.2, args.3, args.4, args.5, m + r0 * tilesPerRow, Int32(tiles), pad)
            }
        }
        Threads.parallelFor(t) { k in
            let co0 = k * cout / t, co1 = (k + 1) * cout / t
            for e in 0..<planes {
                sgemmCall(false, true, co1 - co0, cin, tiles, 1, m + e * mp + co0 * tiles, tiles, v + e * vp, tiles,
                          0, du + e * up + co0 * cin, cin)
            }
            mcl_wino_weight_grad(du, 0, 1, up, co0 * cin, co1 * cin, Int32(tile), dw)
        }
    }
}
