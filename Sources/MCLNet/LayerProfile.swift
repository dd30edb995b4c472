import Foundation
import MCLCore

/// Time per convolution shape of a ResNet, per pass, next to the machine's sgemm peak measured in
/// the same run (`mcl-dist bench --profile`).
///
/// Every pass is counted as direct convolution, `2 Cout Cin k^2 Ho Wo N` FLOPs (forward, dX and dW
/// alike), whatever the algorithm (Winograd does fewer multiplications, so its "GFLOPS" are
/// effective ones and may exceed the peak). `gemmGflops` is a bare `sgemm` of the shape the
/// im2col algorithm multiplies (`M = Cout`, `N = N Ho Wo`, `K = Cin k^2`): what the GEMM library
/// itself reaches there, the bound of im2col + GEMM.
public struct ConvProfileRow: Codable, Sendable {
    public var shape: String
    public var layers: Int
    public var algorithm: String
    public var gflop: Double
    public var forward_ms: Double
    public var backward_data_ms: Double?
    public var backward_weights_ms: Double
    public var forward_gflops: Double
    public var backward_data_gflops: Double?
    public var backward_weights_gflops: Double
    public var gemm_gflops: Double
}

public struct LayerProfile: Codable, Sendable {
    public var model: String
    public var width: Int
    public var batch: Int
    public var threads: Int
    public var gemm: String
    /// sgemm (the rank's threads, column panels) at 2048 x 2048 x 2048.
    public var sgemm_peak_gflops: Double
    public var rows: [ConvProfileRow]
    /// Sum over the network's convolutions (each shape x its layer count), all three passes.
    public var convolutions_ms: Double
    /// The whole network step at the same batch (`TrainBenchmark`, its fastest of `repeats` steps),
    /// and what is not convolution.
    public var step_ms: Double
    public var other_ms: Double

    public var table: String {
        var s = String(format: "profile: %@ width %d, batch %d, %d thread(s), gemm %@; sgemm peak (2048^3) %.1f GFLOPS\n",
                       model, width, batch, threads, gemm, sgemm_peak_gflops)
        s += "shape                          layers algorithm   GFLOP  fwd ms (GFLOPS, %peak)   dX ms (GFLOPS, %peak)    dW ms (GFLOPS, %peak)    sgemm of its im2col shape\n"
        func cell(_ ms: Double?, _ g: Double?) -> String {
            guard let ms, let g else { return String(repeating: " ", count: 24) + "-" }
            return String(format: "%8.1f (%6.1f, %4.0f%%)", ms, g, 100 * g / sgemm_peak_gflops)
        }
        for r in rows {
            s += r.shape.padding(toLength: 30, withPad: " ", startingAt: 0)
            s += String(format: " %6d ", r.layers) + r.algorithm.padding(toLength: 9, withPad: " ", startingAt: 0)
            s += String(format: " %7.3f ", r.gflop)
            s += cell(r.forward_ms, r.forward_gflops) + " " + cell(r.backward_data_ms, r.backward_data_gflops) + " "
                + cell(r.backward_weights_ms, r.backward_weights_gflops)
            s += String(format: "  %6.1f GFLOPS (%3.0f%%)\n", r.gemm_gflops, 100 * r.gemm_gflops / sgemm_peak_gflops)
        }
        s += String(format: "convolutions %.0f ms of a %.0f ms step (%.0f%%); the rest (BatchNorm, ReLU, residual adds, head, copies) %.0f ms",
                    convolutions_ms, step_ms, 100 * convolutions_ms / step_ms, other_ms)
        return s
    }

    /// Profiles every distinct convolution shape of `config` at `batch` images (best of `repeats`,
    /// the peak likewise: on a shared VM interference only adds time, and the medians of one shape
    /// moved by 20-40% between runs minutes apart; docs/performance.md, session 9).
    public static func run(config: ModelConfig, batch: Int, repeats: Int = 3) throws -> LayerProfile {
        let model = try ResNetModel(config)
        model.initialise(seed: 1)
        let peak = sgemmGflops(m: 2048, n: 2048, k: 2048, repeats: repeats)
        // (layer, input size, count), distinct shapes in network order.
        var shapes: [(conv: Conv2d, h: Int, hasDX: Bool, count: Int)] = []
        func add(_ c: Conv2d, _ h: Int, hasDX: Bool) {
            if let i = shapes.firstIndex(where: { $0.conv.cin == c.cin && $0.conv.cout == c.cout && $0.conv.kernel == c.kernel
                && $0.conv.stride == c.stride && $0.h == h && $0.hasDX == hasDX }) {
                shapes[i].count += 1
            } else {
                shapes.append((c, h, hasDX, 1))
            }
        }
        add(model.stem, 32, hasDX: false)
        var h = 32
        for b in model.blocks {
            add(b.conv1, h, hasDX: true)
            let ho = b.conv1.outSize(h)
            add(b.conv2, ho, hasDX: true)
            if let d = b.downConv { add(d, h, hasDX: true) }
            h = ho
        }
        let ws = Workspace()
        var rng = SplitMix64(seed: 3)
        var rows: [ConvProfileRow] = []
        var convMs = 0.0
        for (c, h, hasDX, count) in shapes {
            let ho = c.outSize(h)
            let x = FloatBuffer(count: c.cin * batch * h * h), dx = FloatBuffer(count: c.cin * batch * h * h)
            let y = FloatBuffer(count: c.cout * batch * ho * ho), dy = FloatBuffer(count: c.cout * batch * ho * ho)
            for i in 0..<x.count { x.ptr[i] = rng.nextFloat() - 0.5 }
            for i in 0..<dy.count { dy.ptr[i] = rng.nextFloat() - 0.5 }
            let f = time(repeats) { c.forward(x.ptr, n: batch, h: h, w: h, y.ptr, ws: ws) }
            let d = hasDX ? time(repeats) { c.backwardData(dy.ptr, n: batch, h: h, w: h, dx: dx.ptr, accumulate: false, ws: ws) } : nil
            let wg = time(repeats) { c.backwardWeights(x.ptr, n: batch, h: h, w: h, dy: dy.ptr, ws: ws) }
            let gflop = c.flops(n: batch, h: h, w: h) / 1e9
            let gemm = sgemmGflops(m: c.cout, n: batch * ho * ho, k: c.kdim, repeats: repeats)
            rows.append(ConvProfileRow(shape: "\(c.kernel)x\(c.kernel) \(c.cin)->\(c.cout) s\(c.stride) \(h)x\(h)",
                                       layers: count, algorithm: c.algorithm(h: h, w: h), gflop: gflop,
                                       forward_ms: f * 1e3, backward_data_ms: d.map { $0 * 1e3 }, backward_weights_ms: wg * 1e3,
                                       forward_gflops: gflop / f, backward_data_gflops: d.map { gflop / $0 },
                                       backward_weights_gflops: gflop / wg, gemm_gflops: gemm))
            convMs += Double(count) * (f + (d ?? 0) + wg) * 1e3
        }
        model.store.zeroGrads()
        let step = try TrainBenchmark.run(config: config, batch: batch, steps: repeats, warmup: 1)
        let stepMs = step.fastest_step_ms
        return LayerProfile(model: config.arch, width: config.width, batch: batch, threads: Threads.count,
                            gemm: GEMMEngine.description, sgemm_peak_gflops: peak, rows: rows,
                            convolutions_ms: convMs, step_ms: stepMs, other_ms: stepMs - convMs)
    }

    /// Fewest seconds of `body` over `repeats` runs after one warm-up run.
    static func time(_ repeats: Int, _ body: () -> Void) -> Double {
        body()
        var t: [Double] = []
        for _ in 0..<max(1, repeats) {
            let t0 = ProcessStats.now()
            body()
            t.append(ProcessStats.now() - t0)
        }
        return t.min()!
    }

    /// GFLOPS of `sgemm` (row-major, no transposes) on an m x n x k product, best of `repeats`.
    public static func sgemmGflops(m: Int, n: Int, k: Int, repeats: Int) -> Double {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        var rng = SplitMix64(seed: 5)
        for i in 0..<a.count { a.ptr[i] = rng.nextFloat() }
        for i in 0..<b.count { b.ptr[i] = rng.nextFloat() }
        let s = time(repeats) {
            sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a.ptr, lda: k, b: b.ptr, ldb: n, beta: 0, c: c.ptr, ldc: n)
        }
        return 2 * Double(m) * Double(n) * Double(k) / s / 1e9
    }
}
