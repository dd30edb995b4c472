import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLData

/// Inputs of the run-time model, measured on this machine or given.
public struct PlanCalibration: Codable, Sendable {
    /// Network forward+backward(+SGD) throughput of one rank, views per second, at the rank's batch.
    public var viewsPerSecondPerRank: Double
    /// Seconds for the global loss and dL/dZ at `lossViews` views (scaled as views^2).
    public var lossSeconds: Double
    public var lossViews: Int
    /// Collective cost model: time = latency + bytes / bandwidth per message step.
    public var latencySeconds: Double
    public var bandwidthBytesPerSecond: Double
    /// Activation memory per view (bytes) for this model, and fixed bytes per rank.
    public var activationBytesPerView: Double

    public init(viewsPerSecondPerRank: Double, lossSeconds: Double, lossViews: Int, latencySeconds: Double,
                bandwidthBytesPerSecond: Double, activationBytesPerView: Double) {
        self.viewsPerSecondPerRank = viewsPerSecondPerRank; self.lossSeconds = lossSeconds; self.lossViews = lossViews
        self.latencySeconds = latencySeconds; self.bandwidthBytesPerSecond = bandwidthBytesPerSecond
        self.activationBytesPerView = activationBytesPerView
    }
}

/// A run-time, memory and communication estimate for a config on N ranks.
public struct PlanResult: Codable, Sendable {
    public var ranks: Int
    public var threadsPerRank: Int
    public var viewsPerRank: Int
    public var stepsPerEpoch: Int
    public var epochs: Int
    public var computeSeconds: Double
    public var lossSeconds: Double
    public var allgatherSeconds: Double
    public var allreduceSeconds: Double
    /// The BatchNorm statistic allreduces of `model.sync_bn` (0 without it or on one rank).
    public var syncBNSeconds: Double
    public var stepSeconds: Double
    public var epochSeconds: Double
    public var totalSeconds: Double
    public var imagesPerSecond: Double
    public var communicationShare: Double
    public var memoryPerRankGB: Double
    public var gradientBytes: Double
}

/// The cost model behind `mcl-dist plan` (see docs/scaling.md):
/// - compute: the rank's 2B/N views at the measured per-rank throughput (x 4/3 with micro-batching,
///   which forwards every chunk twice);
/// - loss: sharded by rows, each rank computes V/N rows: t_loss(V) = t_loss(V0) (V/V0)^2 / N
///   (t_loss(V0) the whole matrix timed on one rank; GEMMs of V/N x V x D and a V/N x V row pass);
/// - z exchange: the allgather of z (V x D floats) and the reduce-scatter of the loss's column
///   terms (V x D floats), ring algorithms, (N-1)(alpha + s/N / beta) each, plus the allreduce of
///   the two row sums, ceil(log2 N) alpha; the gradient allreduce (P floats), 2(N-1)(alpha + s/N / beta),
///   s in bytes;
/// - synchronised BatchNorm (`model.sync_bn`): per BN layer of C channels, two allreduces in
///   forward (C+1 then C doubles: sums and count, then centred squares) and one in backward
///   (2C+1 doubles); messages this small are latency-bound and MPI reduces them by recursive
///   doubling: ceil(log2 N)(alpha + s / beta) each;
/// - memory: parameters, gradients, momentum (3P floats) + activations per view x views held at
///   once (the chunk with micro-batching) + the rank's V/N x V rows of the similarity matrix and
///   the V x D column terms.
public enum Planner {
    public static func estimate(config: RunConfig, datasetImages: Int, ranks: Int, threads: Int,
                                parameterCount: Int, batchNormChannels: [Int] = [],
                                calibration c: PlanCalibration) -> PlanResult {
        let pairs = config.batchSize
        let views = config.viewsPerPair * pairs
        let perRank = views / max(1, ranks)
        let steps = max(1, datasetImages * config.rotations / pairs)
        let chunked = config.microBatch > 0 && config.microBatch < perRank
        let compute = Double(perRank) / c.viewsPerSecondPerRank * (chunked ? 4.0 / 3.0 : 1.0)
        let v = Double(views), v0 = Double(max(1, c.lossViews))
        let n = Double(ranks)
        let loss = c.lossSeconds * (v / v0) * (v / v0) / n
        let zBytes = v * Double(config.model.projectionDim) * 4
        let gBytes = Double(parameterCount) * 4
        // allgather of z + reduce-scatter of the column terms (same size) + allreduce of 2 doubles
        let allgather = ranks > 1
            ? 2 * (n - 1) * (c.latencySeconds + zBytes / n / c.bandwidthBytesPerSecond) + log2(n).rounded(.up) * c.latencySeconds
            : 0
        let allreduce = ranks > 1 ? 2 * (n - 1) * (c.latencySeconds + gBytes / n / c.bandwidthBytesPerSecond) : 0
        // Per BN layer: 3 messages of (C+1) + C + (2C+1) = 4C+2 doubles in all, ceil(log2 N) rounds each.
        let bnDoubles = Double(batchNormChannels.reduce(0) { $0 + 4 * $1 + 2 })
        let syncBN = config.syncBN && ranks > 1
            ? log2(n).rounded(.up) * (3 * Double(batchNormChannels.count) * c.latencySeconds + 8 * bnDoubles / c.bandwidthBytesPerSecond)
            : 0
        let step = compute + loss + allgather + allreduce + syncBN
        let held = Double(chunked ? config.microBatch : perRank)
        let mem = 3 * gBytes + held * c.activationBytesPerView + v * v * 4 / n + (ranks > 1 ? zBytes : 0) + 300e6
        let epochs = config.maxSteps > 0 ? Int((Double(config.maxSteps) / Double(steps)).rounded(.up)) : config.epochs
        let totalSteps = config.maxSteps > 0 ? min(config.maxSteps, steps * config.epochs) : steps * config.epochs
        return PlanResult(ranks: ranks, threadsPerRank: threads, viewsPerRank: perRank, stepsPerEpoch: steps, epochs: epochs,
                          computeSeconds: compute, lossSeconds: loss, allgatherSeconds: allgather, allreduceSeconds: allreduce,
                          syncBNSeconds: syncBN, stepSeconds: step, epochSeconds: step * Double(steps), totalSeconds: step * Double(totalSteps),
                          imagesPerSecond: Double(pairs) / step, communicationShare: (allgather + allreduce + syncBN) / step,
                          memoryPerRankGB: mem / 1e9, gradientBytes: gBytes)
    }

    /// Parameters of a ResNet and its projection head, counted from the architecture (no model
    /// is built): convolutions k*k*Cin*Cout, BatchNorm 2C, the head's two linear layers.
    public static func parameterCount(_ m: ModelConfig) -> Double {
        guard let blocks = try? m.blocks() else { return 0 }
        let w = Double(m.width)
        var p = 27 * w + 2 * w   // stem conv 3x3x3 and its BN
        var cin = w
        for (stage, count) in blocks.enumerated() {
            let c = w * Double(1 << stage)
            for b in 0..<count {
                p += 9 * cin * c + 9 * c * c + 4 * c
                if b == 0 && stage > 0 { p += cin * c + 2 * c }
                cin = c
            }
        }
        let f = Double(m.featureDim), h = Double(m.projectorHidden), d = Double(m.projectionDim)
        return p + f * h + h + h * d + d
    }

    /// Bytes one rank needs to train `config` on `ranks` ranks (the `plan` estimate's memory term,
    /// computed without building the model), so that a configuration far beyond this machine is
    /// refused with a message instead of failing an allocation.
    public static func trainingBytesPerRank(_ config: RunConfig, ranks: Int) -> Double {
        let views = Double(config.viewsPerPair * config.batchSize)
        let perRank = views / Double(max(1, ranks))
        let held = config.microBatch > 0 ? min(Double(config.microBatch), perRank) : perRank
        let zBytes = ranks > 1 ? views * Double(config.model.projectionDim) * 4 : 0
        return 3 * 4 * parameterCount(config.model) + held * activationBytesPerView(config.model)
            + views * views * 4 / Double(max(1, ranks)) + zBytes + 300e6
    }

    /// Activation bytes per view of a ResNet, from the tensors the engine keeps per layer (input,
    /// conv output, BN/ReLU output, block output, shortcut) plus the gradient scratch.
    public static func activationBytesPerView(_ m: ModelConfig) -> Double {
        guard let blocks = try? m.blocks() else { return 0 }
        var floats = 0.0
        let w = Double(m.width)
        floats += 3 * 1024 + 2 * w * 1024 // input (CNHW copy), stem conv and BN output
        for (stage, count) in blocks.enumerated() {
            let c = w * Double(1 << stage)
            let hw = Double(1024 >> (2 * stage))
            floats += Double(count) * 4 * c * hw + (stage > 0 ? c * hw : 0)
        }
        floats += 4 * w * 1024 // gradient scratch (two ping-pong + two temporaries at stage-1 size)
        floats += Double(8 * m.width + 2 * m.projectorHidden + m.projectionDim)
        return floats * 4
    }

    /// Times the global loss at `views` views on this machine.
    public static func measureLoss(views: Int, dim: Int, config: LossConfig) -> Double {
        // The cross-entropy terms are O(V K) and negligible; only a contrastive term is timed.
        guard let config = config.contrastivePart else { return 0 }
        var rng = SplitMix64(seed: 1)
        let z = (0..<(views * dim)).map { _ in Float(rng.nextGaussian()) }
        let main = (0..<views).map { Int32(($0 / 8) % 10) }
        let aux = (0..<views).map { Int32(($0 / 2) % 4) }
        let targets = config.needsSPATargets ? sampleSPATargets(main: main, aux: aux, useAux: config.useAux, mode: config.spa, seed: 1, step: 0) : nil
        _ = contrastiveLoss(z: z, views: views, dim: dim, main: main, aux: aux, spaTargets: targets, config: config)
        let t0 = ProcessStats.now()
        _ = contrastiveLoss(z: z, views: views, dim: dim, main: main, aux: aux, spaTargets: targets, config: config)
        let dt = ProcessStats.now() - t0
        releaseLossWorkspace()
        return dt
    }
}

/// What `mcl-dist plan` is asked: the interconnect model and, optionally, a known throughput.
public struct PlanRequest: Sendable {
    public var ranks: [Int]
    /// Threads per rank; nil = the cores here divided by the ranks (for measuring).
    public var threads: Int?
    public var bandwidthGBs: Double
    public var latencyUs: Double
    /// Network views/s of one rank; nil = measured here with a short benchmark.
    public var viewsPerSecond: Double?
    /// Training images; nil = the count in data.train, else 50,000.
    public var images: Int?

    public init(ranks: [Int], threads: Int? = nil, bandwidthGBs: Double = 2.4, latencyUs: Double = 5,
                viewsPerSecond: Double? = nil, images: Int? = nil) {
        self.ranks = ranks; self.threads = threads; self.bandwidthGBs = bandwidthGBs; self.latencyUs = latencyUs
        self.viewsPerSecond = viewsPerSecond; self.images = images
    }
}

extension Planner {
    /// The largest per-rank batch (views) the throughput bench runs at.
    public static let maxBenchViews = 512

    /// The training images a plan counts: `request.images`, else data.train's count, else 50,000.
    public static func datasetImages(_ config: RunConfig, _ request: PlanRequest) -> Int {
        if let n = request.images { return n }
        return (try? PackedDataset(path: config.dataTrain, verify: false))?.count ?? 50000
    }

    /// Calibrates and estimates every rank count of `request`: the per-rank network throughput
    /// is measured here at the rank's batch (or micro-batch) up to `maxBenchViews` views, since
    /// per-view throughput still grows from 256 to 512 views (larger GEMM panels and Winograd
    /// tile blocks: ~25% at width 16, docs/scaling.md), unless given; the global loss is timed
    /// at up to 4096 views and scaled with views^2.
    public static func plan(config: RunConfig, request: PlanRequest) throws -> [PlanResult] {
        let model = try ResNetModel(config.model)
        let count = datasetImages(config, request)
        var results: [PlanResult] = []
        for n in request.ranks {
            guard (config.viewsPerPair * config.batchSize) % n == 0 else {
                throw ConfigError("--ranks \(n): the \(config.viewsPerPair * config.batchSize) views of a batch do not split evenly")
            }
            let t = request.threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / n)
            let perRank = config.viewsPerPair * config.batchSize / n
            var vps = request.viewsPerSecond ?? 0
            if vps == 0 {
                Threads.set(t)
                let b = min(perRank, config.microBatch > 0 ? config.microBatch : perRank, maxBenchViews)
                vps = try TrainBenchmark.run(config: config.model, batch: b, steps: 3, warmup: 1).images_per_s
            }
            let lossViews = min(config.viewsPerPair * config.batchSize, 4096)
            let cal = PlanCalibration(viewsPerSecondPerRank: vps,
                                      lossSeconds: measureLoss(views: lossViews, dim: config.model.projectionDim, config: config.loss),
                                      lossViews: lossViews, latencySeconds: request.latencyUs * 1e-6,
                                      bandwidthBytesPerSecond: request.bandwidthGBs * 1e9,
                                      activationBytesPerView: activationBytesPerView(config.model))
            results.append(estimate(config: config, datasetImages: count, ranks: n, threads: t,
                                    parameterCount: model.store.paramCount,
                                    batchNormChannels: model.batchNorms.map(\.channels), calibration: cal))
        }
        return results
    }
}
