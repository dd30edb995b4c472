import Foundation
import MCLCore
import COpenBLAS

/// Throughput of the training step's network part (forward, backward, SGD) on random 32x32 data.
public struct TrainBenchResult: Codable, Sendable {
    public var model: String
    public var width: Int
    public var batch: Int
    public var threads: Int
    public var steps: Int
    public var seconds_per_step: Double
    public var images_per_s: Double
    /// Achieved GFLOPS of the whole job (all ranks), counting forward + backward as 3x the
    /// forward FLOPs (incl. the head).
    public var gflops: Double
    public var gflop_per_image: Double
    /// Medians over the timed steps of one rank's phases: forward; backward (without the
    /// gradient allreduce, which is `allreduce_ms`); the SGD update.
    public var forward_ms: Double
    public var backward_ms: Double
    public var sgd_ms: Double
    public var peak_rss_mb: Double
    public var openblas_core: String
    /// The library and kernels of `sgemm` (`GEMMEngine.description`).
    public var gemm: String = GEMMEngine.description
    /// Ranks that shared the batch (each ran batch / ranks images) and the allreduce time.
    public var ranks: Int = 1
    public var allreduce_ms: Double = 0
    /// The fastest timed step (`bench --profile` sets it beside its best-of-N layer times).
    public var fastest_step_ms: Double = 0
}

public enum TrainBenchmark {
    /// Runs `warmup` untimed steps, then `steps` timed ones, and reports the median step.
    /// With `ranks` > 1 (under mpirun) every rank runs `batch / ranks` images and `allreduce`
    /// sums the gradient buffer after backward, as the data-parallel step does.
    public static func run(config: ModelConfig, batch globalBatch: Int, steps: Int, warmup: Int = 2,
                           inference: Bool = false, ranks: Int = 1,
                           allreduce: ((UnsafeMutablePointer<Float>, Int) -> Void)? = nil) throws -> TrainBenchResult {
        let batch = globalBatch / max(1, ranks)
        let model = try ResNetModel(config)
        model.initialise(seed: 1)
        var rng = SplitMix64(seed: 7)
        let input = FloatBuffer(count: batch * 3 * 32 * 32)
        for i in 0..<input.count { input.ptr[i] = rng.nextFloat() }
        let dz = FloatBuffer(count: batch * config.projectionDim)
        let opt = SGD(count: model.store.paramCount)
        var fwd: [Double] = [], bwd: [Double] = [], sgd: [Double] = [], total: [Double] = [], comm: [Double] = []
        for it in 0..<(warmup + steps) {
            let t0 = ProcessStats.now()
            if inference {
                model.forward(input.ptr, n: batch, train: false)
                let t1 = ProcessStats.now()
                if it >= warmup { fwd.append(t1 - t0); bwd.append(0); sgd.append(0); total.append(t1 - t0) }
                continue
            }
            model.store.zeroGrads()
            let out = model.forward(input.ptr, n: batch, train: true)
            let t1 = ProcessStats.now()
            for i in 0..<dz.count { dz.ptr[i] = out.z[i] / Float(batch) }
            model.backward(dZ: dz.ptr)
            let tb = ProcessStats.now()
            allreduce?(model.store.grads.ptr, model.store.paramCount)
            let t2 = ProcessStats.now()
            if it >= warmup { comm.append(t2 - tb) }
            opt.step(params: model.store.values.ptr, grads: model.store.grads.ptr, count: model.store.paramCount, lr: 0.01)
            let t3 = ProcessStats.now()
            if it >= warmup { fwd.append(t1 - t0); bwd.append(tb - t1); sgd.append(t3 - t2); total.append(t3 - t0) }
        }
        func median(_ a: [Double]) -> Double { let s = a.sorted(); return s[s.count / 2] }
        let step = median(total)
        let flopsPerImage = model.forwardFlops(n: 1) * (inference ? 1 : 3)
        return TrainBenchResult(model: config.arch, width: config.width, batch: globalBatch, threads: Threads.count,
                                steps: steps, seconds_per_step: step, images_per_s: Double(globalBatch) / step,
                                gflops: flopsPerImage * Double(globalBatch) / step / 1e9, gflop_per_image: flopsPerImage / 1e9,
                                forward_ms: median(fwd) * 1e3, backward_ms: median(bwd) * 1e3, sgd_ms: median(sgd) * 1e3,
                                peak_rss_mb: ProcessStats.peakRSSMB, openblas_core: BLASInfo.coreName,
                                ranks: max(1, ranks), allreduce_ms: comm.isEmpty ? 0 : median(comm) * 1e3,
                                fastest_step_ms: (total.min() ?? 0) * 1e3)
    }
}

/// What OpenBLAS reports about itself.
public enum BLASInfo {
    public static var coreName: String { String(cString: openblas_get_corename()) }
    public static var config: String { String(cString: openblas_get_config()) }
}

extension TrainBenchResult {
    /// One line for people: throughput, GFLOPS and the step's phases.
    public var summary: String {
        String(format: "%@ width %d batch %d ranks %d x threads %d (gemm %@): %.1f images/s, %.1f GFLOPS (%.2f GFLOP/image), step %.3f s (fwd %.0f ms, bwd %.0f ms, allreduce %.1f ms, sgd %.0f ms), peak RSS %.0f MB",
               model, width, batch, ranks, threads, gemm, images_per_s, gflops, gflop_per_image,
               seconds_per_step, forward_ms, backward_ms, allreduce_ms, sgd_ms, peak_rss_mb)
    }
}
