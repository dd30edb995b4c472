import Foundation
import MCLCore

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
/// transposed kernel, as in `Winograd`; dW is `Winograd.weightGradient` with `tile: 4`
/// (`dg = G^T [(A dY A^T) ⊙ (B^T d B)] G` over 6x6 tiles) where `appliesToWeightGradient` says,
/// else F(2x2).
///
/// The convolution itself is `Winograd.transformWeights` and `Winograd.convolve` with `tile: 4`: the
/// same blocks of tile rows, 36 GEMMs per block, the transforms in C
/// (`CDirectConv/winograd_transforms.c`, compiled per ISA).
public enum Winograd4 {
    /// `MCL_WINOGRAD_F4=0` keeps every Winograd layer on F(2x2).
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4"] != "0"
    /// Fewest output pixels per image (h x w) for F(4x4) at any channel count: 16x16 and up. On
    /// small maps the 36 transformed weight matrices (2.25x F(2x2)'s) weigh more.
    nonisolated(unsafe) public static var minPixels =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_MIN_PIXELS"] ?? "") ?? 256
    /// Fewest channels (the smaller of cin and cout) for F(4x4) on 8x8 maps (64 to `minPixels`
    /// pixels). Sessions 12-13 kept 8x8 maps on F(2x2) (256 channels 12.6-14.8 ms vs 11.7-12.1,
    /// width 64, batch 64): F(4x4) cut 128 tile rows into 3 blocks for 2 threads (`Blocking` now
    /// makes whole rounds) and its weight transform divided. Zen 4, 2 threads, alternating:
    /// 256 channels forward 8.6-9.0 ms with F(4x4), 12.0-12.4 with F(2x2), batch 256 34.1-35.2
    /// vs 45.3-45.6; width 16's 64 channels at batch 256 3.0 vs 4.1. At 32 channels (width 8) no
    /// steady gain (batch 64 forward 0.5 vs 0.4-0.6 ms, batch 256 dX 1.1 vs 1.4), and F(4x4)'s
    /// larger rounding flipped one ReLU of the width-8 golden model (a pre-activation within
    /// float rounding of zero: its channel's gradients 3% off PyTorch's), so below 64 channels
    /// 8x8 maps stay on F(2x2).
    nonisolated(unsafe) public static var smallMapMinChannels =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_8X8_MIN_CHANNELS"] ?? "") ?? 64
    /// Whether 4x4 maps (one F(4x4) tile per image) take F(4x4) too, below `minPixels`: there
    /// F(2x2)'s 4 tiles per image leave rows of 2 tiles to its transforms' scalar tails. Width 64,
    /// batch 64, 2 threads, an AVX2 machine (session 12), the 512-channel 4x4 layer: forward
    /// 27.0-31.4 ms with F(4x4) against 35.3-38.1 with F(2x2), dX 27.1-32.2 against 36.1-41.6.
    /// `MCL_WINOGRAD_F4_SINGLE_TILE=0` keeps them on F(2x2).
    nonisolated(unsafe) public static var singleTile = ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_SINGLE_TILE"] != "0"

    /// Whether a Winograd layer's forward and dX use F(4x4) on an h x w input with `channels` = min(cin, cout).
    public static func applies(h: Int, w: Int, channels: Int) -> Bool {
        enabled && h % 4 == 0 && w % 4 == 0
            && (h * w >= minPixels || (h * w >= 64 && channels >= smallMapMinChannels) || (singleTile && h == 4 && w == 4))
    }

    /// `MCL_WINOGRAD_F4_DW=0` keeps the weight gradient on F(2x2) everywhere.
    nonisolated(unsafe) public static var weightGradientEnabled = ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_DW"] != "0"
    /// Fewest output pixels per image for F(4x4)'s weight gradient: 4x4 and up. On the AVX2 machine of
    /// session 12 F(2x2) won on 4x4 maps (512 channels: dW over forward time 1.14-1.43 against
    /// 1.37-1.80); since the kernel transforms multiply by 1/6, 1/12, 1/24 instead of dividing and
    /// dW's wide layers split their output channels over the threads (`Winograd.weightGradient`),
    /// F(4x4) wins there too (Zen 4, 2 threads: 512 channels 4x4 batch 64 14.5 -> 13.4 ms, batch
    /// 256 54.4 -> 46.9; width 16's 128 channels 4x4 batch 256 3.75 -> 3.05).
    nonisolated(unsafe) public static var weightGradientMinPixels =
        Int(ProcessInfo.processInfo.environment["MCL_WINOGRAD_F4_DW_MIN_PIXELS"] ?? "") ?? 16

    /// Whether a Winograd layer's weight gradient uses F(4x4) on an h x w input.
    public static func appliesToWeightGradient(h: Int, w: Int) -> Bool {
        enabled && weightGradientEnabled && h % 4 == 0 && w % 4 == 0 && h * w >= weightGradientMinPixels
    }
}
