import Foundation
import MCLCore
import CDirectConv

/// Winograd F(4x4, 3x3) for the forward pass and dX of stride-1, pad-1 3x3 convolutions whose
/// sides are multiples of 4 (Lavin & Gray, 2016; the interpolation points 0, 1, -1, 2, -2, ∞).
///
/// Tile (n, th, tw) of 4x4 outputs reads the 6x6 input patch d at rows 4th-1 ..< 4th+5 and
/// columns 4tw-1 ..< 4tw+5 (zero outside the image) and
///
///     Y_tile = A^T [ sum_ci (G g_{co,ci} G^T) ⊙ (B^T d_ci B) ] A
///
/// with
///
///     B^T = [[4, 0,-5, 0, 1, 0],      G = [[ 1/4,    0,    0],      A^T = [[1, 1, 1, 1, 1, 0],
///            [0,-4,-4, 1, 1, 0],           [-1/6, -1/6, -1/6],             [0, 1,-1, 2,-2, 0],
///            [0, 4,-4,-1, 1, 0],           [-1/6,  1/6, -1/6],             [0, 1, 1, 4, 4, 0],
///            [0,-2,-1, 2, 1, 0],           [1/24, 1/12,  1/6],             [0, 1,-1, 8,-8, 1]]
///            [0, 2,-1,-2, 1, 0],           [1/24,-1/12,  1/6],
///            [0, 4, 0,-5, 0, 1]]           [   0,    0,    1]]
///
/// The channel sum for each of the 36 positions e of a transformed tile is a GEMM,
/// `M_e[co][t] = U_e[co][ci] V_e[ci][t]`: 36 multiplies per 16 outputs and channel pair instead
/// of 144 (4x fewer than im2col, F(2x2)'s 2.25x), and the transformed data is 36/16 = 2.25x the
/// activations instead of 4x, so less memory traffic per output. Its float32 rounding error is
/// larger than F(2x2)'s (the points ±2 and the 1/24 scale it by up to ~10x; tested against
/// im2col in `testWinograd4MatchesIm2col`). dX is the forward of dY with the flipped,
/// transposed kernel, as in `Winograd`; dW stays on F(2x2) (`Winograd.weightGradient`).
///
/// The transforms are C (`CDirectConv/winograd_transforms.c`, compiled per ISA): in two passes each, over
/// whole rows and then over each tile's columns, like `Winograd`'s.
public enum Winograd4 {
    /// `MCL_WINOGRAD_F4=0` keeps every Winograd layer on F(2x2).
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4"] != "0"
    /// Fewest output pixels per image (h x w) for F(4x4): on small maps a tile covers most of the
    /// image and the 36 transformed weight matrices (2.25x F(2x2)'s) dominate the traffic. Width
    /// 64, batch 64, 2 threads, alternating runs: 128 channels 16x16 forward 10.6-13.8 ms with
    /// F(4x4), 18.1-18.9 with F(2x2); 256 channels 8x8 12.6-14.8 vs 11.7-12.1 (so 256, 16x16 and up).
    nonisolated(unsafe) public static var minPixels =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_MIN_PIXELS"] ?? "") ?? 256

    /// Whether a Winograd layer's forward and dX use F(4x4) on an h x w input.
    public static func applies(h: Int, w: Int) -> Bool {
        enabled && h % 4 == 0 && w % 4 == 0 && h * w >= minPixels
    }

    /// U[e][r][c] = (G g G^T)[e] for the 3x3 kernel g of output channel r and input channel c:
    /// `g = W[r][c]` (forward), or the flipped `W[c][r]` (`transposeFlip`, the kernel of dX).
    /// `w` is OIHW [cout][cin][3][3]; the result has 36 planes of rows = cout (or cin) x cols.
    static func transformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, transposeFlip: Bool,
                                 into u: UnsafeMutablePointer<Float>) {
        let rows = transposeFlip ? cin : cout
        Threads.parallelRange(rows, minPerThread: 8) { r0, r1 in
            mcl_wino_weights(w, Int32(cout), Int32(cin), transposeFlip ? 1 : 0, 4, u, Int32(r0), Int32(r1))
        }
    }

    /// y[cout][n][h][w] (=, or += with `accumulate`) the stride-1 pad-1 3x3 convolution of
    /// x[cin][n][h][w] whose transformed kernels are `u` ([36][cout][cin]); h and w multiples of 4.
    static func convolve(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, u: UnsafePointer<Float>,
                         cout: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        if n == 0 { return }
        let bk = Winograd.Blocking(n: n, h: h, w: w, channels: max(cin, cout), tile: 4)
        let vSize = 36 * cin * bk.maxTiles, mSize = 36 * cout * bk.maxTiles, padSize = 7 * (w + 34)
        let per = vSize + mSize + padSize
        let scratch = ws.get("wino4.fwd", per * bk.workers)
        Threads.parallelFor(bk.workers) { k in
            let v = scratch + k * per, m = v + vSize, pad = m + mSize
            var b = k
            while b < bk.blocks {
                let r0 = b * bk.perBlock, r1 = min(bk.tileRows, r0 + bk.perBlock)
                let tb = (r1 - r0) * bk.tilesPerRow
                mcl_wino4_input(x, Int32(cin), Int32(n), Int32(h), Int32(w), Int32(r0), Int32(r1), v, Int32(tb), pad)
                for e in 0..<36 {
                    sgemmCall(false, false, cout, tb, cin, 1, u + e * cout * cin, cin, v + e * cin * tb, tb,
                              0, m + e * cout * tb, tb)
                }
                mcl_wino4_output(m, Int32(cout), Int32(n), Int32(h), Int32(w), Int32(r0), Int32(r1), Int32(tb), y,
                                 accumulate ? 1 : 0, pad)
                b += bk.workers
            }
        }
    }
}
