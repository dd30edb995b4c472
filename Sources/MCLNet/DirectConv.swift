import Foundation
import MCLCore
import CDirectConv

/// Direct 3x3, stride-1, pad-1 convolution for rows of 16 or 32 pixels and few channels
/// (`Sources/CDirectConv`: AVX-512 or AVX2 kernels chosen at run time).
///
/// Forward: `Y[co, n, oh, ow] = sum_{ci, i, j} W[co, ci, i, j] Xp[ci, n, oh + i, ow + j]` with `Xp`
/// the input padded by one zero pixel; the kernel keeps a block of output channels x a row in
/// registers and applies all 9 Cin taps to it. dX is the same kernel on the padded dY with the
/// transposed, flipped weights `W'[ci, co, i, j] = W[co, ci, 2 - i, 2 - j]`. dW accumulates
/// `dY[co, n, oh, :] * Xp[ci, n, oh + i, j:j + w]` in vector registers over blocks of images
/// and sums the 16 lanes at the end. Images are split across the rank's threads; each thread keeps
/// its own dW partial sums, added in thread order, so results repeat at a given thread count.
///
/// At width 16 the 32x32 layers have 16 channels: im2col + GEMM multiplies 16 x 144 by 144 x 65536
/// and Winograd does 16 GEMMs of 16 x 16 x tiles, shapes where GEMM libraries reach 15-35% of the
/// FMA peak (docs/performance.md). `MCL_DIRECT_CONV=0` switches this path off.
public enum DirectConv {
    /// 2 = AVX-512, 1 = AVX2 + FMA, 0 = not available.
    public static var isa: Int { Int(mcl_dconv_isa()) }
    /// Restricts the kernels to `level` (tests of the AVX2 kernels on an AVX-512 machine).
    public static func force(isa level: Int) { mcl_dconv_force_isa(Int32(level)) }
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["MCL_DIRECT_CONV"] != "0"
    /// Most input or output channels for the direct path (beyond it Winograd's GEMMs are efficient),
    /// except for a stem-like layer of at most 4 input channels, which takes it at any width: there
    /// im2col's GEMM has K = 27 (width 64, batch 64: dW 1.9 ms direct vs 2.5-2.7 ms im2col).
    nonisolated(unsafe) public static var maxChannels =
        Int(ProcessInfo.processInfo.environment["MCL_DIRECT_CONV_MAX_CHANNELS"] ?? "") ?? 32

    /// Most channels for the direct weight gradient; beyond, a layer Winograd applies to takes
    /// Winograd's dW (`Conv2d.usesWinogradWeightGradient`). 32 (every direct layer): with its
    /// loops unrolled the direct dW of the 32-channel 16x16 layers takes 11.1-11.2 ms against
    /// Winograd's 15.9-20.8 (width 16, batch 256, 2 threads); before the unrolling it was the
    /// slower one (21.6-23.0 ms) and this was 16.
    nonisolated(unsafe) public static var maxWeightGradientChannels =
        Int(ProcessInfo.processInfo.environment["MCL_DIRECT_DW_MAX_CHANNELS"] ?? "") ?? 32

    public static var isaName: String { ["none", "avx2", "avx512"][isa] }

    /// The stride-2 kernels (`direct_conv_s2.c`, AVX2 + FMA: 3x3 stride 2 pad 1, 32x32 or 16x16
    /// inputs), unless `MCL_DIRECT_CONV_S2=0`; on AVX-512 machines too, on 32x32 inputs only
    /// (`stride2MinInput`).
    nonisolated(unsafe) public static var stride2Enabled = ProcessInfo.processInfo.environment["MCL_DIRECT_CONV_S2"] != "0"

    /// Forward and dX at any channel count; dW up to `maxWeightGradientChannels` (width 64, batch
    /// 64, 64 -> 128 channels: forward 36.0-36.1 ms vs im2col 44.8-49.3, dX 35.8-37.9 vs 42.0-42.3,
    /// but dW 58.0-60.6 vs 41.8-57.0; width 16, 16 -> 32: 9.6 / 11.6 / 9.5 ms vs 14.4 / 20.9 / 13.7).
    static func appliesStride2(kernel: Int, stride: Int, pad: Int, h: Int, w: Int) -> Bool {
        enabled && stride2Enabled && isa >= 1 && kernel == 3 && stride == 2 && pad == 1 && h == w
            && (h == 32 || h == 16) && h >= stride2MinInput
    }

    /// Smallest input side for the stride-2 kernels: 16 (32x32 and 16x16 inputs) on AVX2 machines,
    /// 32 on AVX-512 machines; `MCL_DIRECT_CONV_S2_MIN` (`stride2MinInputSetting`) sets it.
    /// AVX2 (AMD EPYC family 23): session 11's runs, in the machine's slow phases, had the 16x16
    /// kernels no faster than im2col (width 16 32->64: forward 20.0-20.2 vs 19.3-26.5 ms);
    /// session 12, the same machine type calm (sgemm peak 69-74 GFLOPS in every run),
    /// alternating: width 16 batch 256 32->64 forward 9.8-10.1 ms vs 13.1-14.1, dX 10.1-11.4 vs
    /// 13.6-14.4; width 64 batch 64 128->256 forward 38.3-40.2 vs 45.3-45.5, dX 34.5-37.5 vs
    /// 42.4-42.7. AVX-512 (AMD EPYC family 25, session 13, against im2col + oneDNN's AVX-512
    /// GEMM): width 16 batch 256 16->32 (32x32) forward / dX / dW 5.4 / 4.8 / 4.7 ms vs 5.6 /
    /// 8.2 / 5.7, but 32->64 (16x16) 6.7-6.8 / 5.5-5.6 vs 4.6 / 4.9 (dW on im2col either way);
    /// width 64 batch 64 64->128 forward 13.3 vs 13.4, dX 15.1 vs 16.0, and 128->256 (16x16)
    /// forward 21.4 vs 13.0.
    nonisolated(unsafe) public static var stride2MinInputSetting =
        Int(ProcessInfo.processInfo.environment["MCL_DIRECT_CONV_S2_MIN"] ?? "")
    static var stride2MinInput: Int { stride2MinInputSetting ?? (isa == 2 ? 32 : 16) }

    static func applies(kernel: Int, stride: Int, pad: Int, cin: Int, cout: Int, w: Int) -> Bool {
        enabled && isa > 0 && kernel == 3 && stride == 1 && pad == 1 && (w == 16 || w == 32)
            && ((cin <= maxChannels && cout <= maxChannels) || cin <= 4)
    }

    /// `y = conv(x, weights)` (or `y +=` with `accumulate`); weights OIHW `[cout][cin][3][3]`.
    static func forward(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, weights: UnsafePointer<Float>, cout: Int,
                        _ y: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        overImages(n, scratchFloats: cin * (h + 2) * (w + 2), ws: ws) { s, e, scratch in
            mcl_dconv_forward(x, Int32(cin), Int32(n), Int32(h), Int32(w), weights, Int32(cout), y,
                              accumulate ? 1 : 0, Int32(s), Int32(e), scratch)
        }
    }

    /// `dx = conv(dy, W')` (or `dx +=`), `W'` the transposed, flipped kernel.
    static func dataGradient(_ dy: UnsafePointer<Float>, cout: Int, n: Int, h: Int, w: Int, weights: UnsafePointer<Float>, cin: Int,
                             _ dx: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        let wt = ws.get("dconv.wt", cin * cout * 9)
        for co in 0..<cout {
            for ci in 0..<cin {
                for k in 0..<9 { wt[(ci * cout + co) * 9 + k] = weights[(co * cin + ci) * 9 + (8 - k)] }
            }
        }
        forward(dy, cin: cout, n: n, h: h, w: w, weights: wt, cout: cin, dx, accumulate: accumulate, ws: ws)
    }

    /// `dw += dL/dW` of `y = conv(x, W)` given `dy`.
    static func weightGradient(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, w: Int, dy: UnsafePointer<Float>, cout: Int,
                               dw: UnsafeMutablePointer<Float>, ws: Workspace) {
        let scratchFloats = Int(mcl_dconv_block_images(Int32(cin), Int32(cout), Int32(h), Int32(w))) * cin * (h + 2) * (w + 2)
        weightGradientLanes(count: cout * cin * 9, n: n, scratchFloats: scratchFloats, dw: dw, ws: ws) { s, e, acc, scratch in
            mcl_dconv_weight_grad(x, Int32(cin), Int32(n), Int32(h), Int32(w), dy, Int32(cout), acc, Int32(s), Int32(e), scratch)
        }
    }

    /// Stride 2 (h x h -> h/2 x h/2, h = 32 or 16): `y = conv(x, weights)` (or `y +=`), images split over the threads.
    static func forwardStride2(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, weights: UnsafePointer<Float>, cout: Int,
                               _ y: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        let wo = Int32(h / 2)
        let scratchFloats = Int(mcl_dconv_s2_forward_scratch(Int32(cin), wo))
        overImages(n, scratchFloats: scratchFloats, ws: ws) { s, e, scratch in
            mcl_dconv_s2_forward(x, Int32(cin), Int32(n), wo, weights, Int32(cout), y, accumulate ? 1 : 0, Int32(s), Int32(e), scratch)
        }
    }

    /// Stride 2: `dx = dL/dX` (or `dx +=`) given `dy`, per phase of dX (`direct_conv_s2.c`).
    static func dataGradientStride2(_ dy: UnsafePointer<Float>, cout: Int, n: Int, h: Int, weights: UnsafePointer<Float>, cin: Int,
                                    _ dx: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        let wo = Int32(h / 2)
        let wph = ws.get("dconv.s2.wph", Int(mcl_dconv_s2_dx_weights_count(Int32(cin), Int32(cout))))
        mcl_dconv_s2_dx_weights(weights, Int32(cout), Int32(cin), wph)
        let scratchFloats = Int(mcl_dconv_s2_data_scratch(Int32(cin), Int32(cout), wo))
        overImages(n, scratchFloats: scratchFloats, ws: ws) { s, e, scratch in
            mcl_dconv_s2_data_grad(dy, Int32(cout), Int32(n), wo, wph, Int32(cin), dx, accumulate ? 1 : 0, Int32(s), Int32(e), scratch)
        }
    }

    /// Stride 2: `dw += dL/dW` given `dy`; per-thread lane sums added in thread order.
    static func weightGradientStride2(_ x: UnsafePointer<Float>, cin: Int, n: Int, h: Int, dy: UnsafePointer<Float>, cout: Int,
                                      dw: UnsafeMutablePointer<Float>, ws: Workspace) {
        let wo = Int32(h / 2)
        let scratchFloats = Int(mcl_dconv_s2_weight_scratch(Int32(cin), Int32(cout), wo))
        weightGradientLanes(count: cout * cin * 9, n: n, scratchFloats: scratchFloats, dw: dw, ws: ws) { s, e, acc, scratch in
            mcl_dconv_s2_weight_grad(x, Int32(cin), Int32(n), wo, dy, Int32(cout), acc, Int32(s), Int32(e), scratch)
        }
    }

    /// The weight gradients' frame: each thread's images add into its own zeroed 16-lane sums
    /// (`count` weights x 16 floats) through `body(start, end, acc, scratch)`; the lanes are then
    /// summed into `dw` in thread order, so results repeat at a given thread count.
    static func weightGradientLanes(count: Int, n: Int, scratchFloats: Int, dw: UnsafeMutablePointer<Float>, ws: Workspace,
                                    _ body: (Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let t = max(1, min(Threads.count, n))
        let acc = ws.get("dconv.acc", t * count * 16)
        memset(acc, 0, t * count * 16 * MemoryLayout<Float>.stride)
        let scratch = ws.get("dconv.scratch", t * scratchFloats)
        let per = (n + t - 1) / t
        Threads.parallelFor(t) { k in
            let s = k * per, e = min(n, s + per)
            if s < e { body(s, e, acc + k * count * 16, scratch + k * scratchFloats) }
        }
        for k in 0..<t { mcl_dconv_reduce(acc + k * count * 16, Int32(count), dw) }
    }

    /// Splits images 0..<n over the threads: `body(start, end, scratch)`, each with its own scratch.
    static func overImages(_ n: Int, scratchFloats: Int, ws: Workspace,
                           _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let t = max(1, min(Threads.count, n))
        let per = (n + t - 1) / t
        let scratch = ws.get("dconv.scratch", t * scratchFloats)
        Threads.parallelFor(t) { k in
            let s = k * per, e = min(n, s + per)
            if s < e { body(s, e, scratch + k * scratchFloats) }
        }
    }
}
