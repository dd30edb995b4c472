import Foundation
import ArgumentParser
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval
import MCLTrain

let mclVersion = "0.1.0"

/// Runs a command body; any error ends the whole job: a clear message naming the rank, then
/// MPI_Abort when other ranks exist (so none is left waiting in a collective), exit 2 otherwise.
func runGuarded(_ body: () throws -> Int32) -> Never {
    do {
        let code = try body()
        MPIRuntime.finalize()
        exit(code)
    } catch {
        if MPIRuntime.isInitialised, MPICommunicator().size > 1 {
            MPIRuntime.abort("error: \(error)", code: 2)
        }
        FileHandle.standardError.write(Data("mcl-dist: error: \(error)\n".utf8))
        exit(2)
    }
}

@main
struct MCLDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcl-dist",
        abstract: "Masked Contrastive Learning for OOD detection, data-parallel over MPI.",
        discussion: """
        Typical use:
          mcl-dist data prepare data/cifar10/train --out data/cifar10-train.mcld
          mpirun -np 8 mcl-dist train --config configs/paper-resnet34.yaml --out runs/r34
          mcl-dist evaluate --config configs/paper-resnet34.yaml --checkpoint runs/r34/checkpoints/step-00400000.safetensors --out runs/r34/eval
        """,
        version: mclVersion,
        subcommands: [Info.self, Train.self, Evaluate.self, DataCommand.self, Metrics.self, Bench.self, Plan.self, PlotLoss.self])
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Version, MPI world, threads and OpenBLAS configuration.")
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            let threads = TrainJob.threadsPerRank(explicit: nil)
            Threads.set(threads)
            let env = ProcessInfo.processInfo.environment
            let info: [String: String] = [
                "version": mclVersion, "world_size": "\(comm.size)", "rank": "\(comm.rank)",
                "threads_per_rank": "\(threads)", "cpu_count": "\(ProcessInfo.processInfo.activeProcessorCount)",
                "openblas_core": BLASInfo.coreName, "openblas_config": BLASInfo.config,
                "openblas_coretype_env": env["OPENBLAS_CORETYPE"] ?? "(unset)",
                "openblas_l2_size_env": env["OPENBLAS_L2_SIZE"] ?? "(unset)",
            ]
            if comm.isRoot {
                if json {
                    let d = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys, .prettyPrinted])
                    print(String(decoding: d, as: UTF8.self))
                } else {
                    for k in info.keys.sorted() { print("\(k): \(info[k]!)") }
                }
            }
            return 0
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train with MCL (run under mpirun or srun for several ranks).")
    @Option(help: "YAML run configuration.") var config: String
    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set train.epochs=5 (repeatable).") var sets: [String] = []
    @Option(help: "Output directory (default runs/<config name>).") var out: String?
    @Option(help: "auto (newest valid checkpoint in OUT/checkpoints) or a checkpoint path.") var resume: String?
    @Option(help: "Threads per rank (default: cores / ranks on the node).") var threads: Int?

    func validate() throws {
        guard FileManager.default.fileExists(atPath: config) else { throw ValidationError("--config \(config): no such file") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            var opts = TrainOptions(configPath: config)
            opts.overrides = sets; opts.outDir = out; opts.resume = resume; opts.threads = threads
            return try TrainJob(options: opts, comm: comm).run().rawValue
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fit class x rotation Gaussians and score with Self-Ensemble Inference.")
    @Option(help: "YAML run configuration (model and data).") var config: String
    @Option(help: "Checkpoint (.safetensors) to evaluate.") var checkpoint: String
    @Option(help: "Output directory for report.md, report.json and figures.") var out: String
    @Option(help: "Training set (overrides data.train).") var train: String?
    @Option(help: "In-distribution test set (overrides data.test).") var test: String?
    @Option(help: "OOD set NAME=PATH (repeatable; replaces data.ood).") var ood: [String] = []
    @Option(name: .customLong("set"), help: "Override a config key (repeatable).") var sets: [String] = []
    @Option(help: "Threads per rank.") var threads: Int?

    func validate() throws {
        for o in ood where !o.contains("=") { throw ValidationError("--ood \(o): expected NAME=PATH") }
        guard FileManager.default.fileExists(atPath: checkpoint) else { throw ValidationError("--checkpoint \(checkpoint): no such file") }
    }

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            Threads.set(TrainJob.threadsPerRank(explicit: threads))
            var overrides = sets
            if let train { overrides.append("data.train=\(train)") }
            if let test { overrides.append("data.test=\(test)") }
            var (cfg, yaml) = try RunConfig.load(path: config, overrides: overrides)
            if !ood.isEmpty {
                cfg.dataOOD = ood.map { o in let i = o.firstIndex(of: "=")!; return (String(o[..<i]), String(o[o.index(after: i)...])) }
            }
            guard !cfg.dataTest.isEmpty else { throw ConfigError("data.test: missing (set it in the config or pass --test)") }
            let model = try ResNetModel(cfg.model)
            do { try Checkpoints.load(weights: checkpoint, model: model, optimizer: nil) }
            catch { throw ConfigError("checkpoint \(checkpoint) does not match model \(cfg.model.arch) width \(cfg.model.width) / projector \(cfg.model.projectorHidden) -> \(cfg.model.projectionDim): \(error)") }
            let trainSet = try PackedDataset(path: cfg.dataTrain), testSet = try PackedDataset(path: cfg.dataTest)
            let oodSets = try cfg.dataOOD.map { (name: $0.name, data: try PackedDataset(path: $0.path)) }
            var opts = EvalOptions()
            opts.seiWays = cfg.seiWays; opts.aggregations = cfg.aggregations; opts.feature = cfg.feature
            opts.rotations = cfg.rotations; opts.ridge = cfg.ridge
            if cfg.evalTrainLimit > 0 { opts.trainLimit = cfg.evalTrainLimit }
            if cfg.evalTestLimit > 0 { opts.testLimit = cfg.evalTestLimit }
            if comm.isRoot { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
            let rank = comm.rank
            let report = try runEvaluation(model: model, comm: comm, train: trainSet, test: testSet, ood: oodSets, options: opts,
                                           outDir: out, checkpoint: checkpoint, configText: yaml,
                                           log: { if rank == 0 { print($0); fflush(nil) } })
            if let report { print(report.markdown()) }
            return 0
        }
    }
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Prepare and inspect data sets.",
                                                    subcommands: [Prepare.self, DataInfo.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pack CIFAR binary, IDX (MNIST-style) or image folders into one memory-mappable file.")
        @Argument(help: "Source: CIFAR binary file/folder, IDX images file, or image folder (<class>/<file>, or flat = unlabelled).") var source: String
        @Option(help: "Output file.") var out: String
        @Option(help: "Keep only these classes, relabelled 0..k-1 in this order, e.g. 0,1,2.") var classes: String?
        @Option(help: "Keep the first N images of each class.") var limit: Int?
        @Option(help: "Split for CIFAR/IDX folders or an image folder's subfolder (train or test).") var split: String?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() throws {
            runGuarded {
                let cls = try classes.map(parseClassList)
                let info = try prepareDataset(source: source, out: out, classes: cls, limitPerClass: limit, split: split)
                print("wrote \(out)")
                print(info.text)
                return 0
            }
        }
    }

    struct DataInfo: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "info", abstract: "Counts per class, image shape, per-channel mean and std.")
        @Argument(help: "A packed data set file.") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runGuarded {
                let info = try datasetInfo(path: file)
                print(json ? info.json() : info.text)
                return 0
            }
        }
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "AUROC, AUPR-In, AUPR-Out and FPR@95TPR from two score files (one number per line, higher = more in-distribution).")
    @Option(name: .customLong("in"), help: "In-distribution scores.") var inFile: String
    @Option(help: "Out-of-distribution scores.") var ood: String
    @Flag(help: "Print JSON (keys auroc, aupr_in, aupr_out, fpr95; percent).") var json = false

    func run() throws {
        runGuarded {
            let m = oodMetrics(inScores: try readScoreFile(inFile), oodScores: try readScoreFile(ood))
            if json {
                print(String(format: "{\"auroc\": %.10g, \"aupr_in\": %.10g, \"aupr_out\": %.10g, \"fpr95\": %.10g}", m.auroc, m.auprIn, m.auprOut, m.fpr95))
            } else {
                print(String(format: "AUROC %.4f  AUPR-In %.4f  AUPR-Out %.4f  FPR@95TPR %.4f", m.auroc, m.auprIn, m.auprOut, m.fpr95))
            }
            return 0
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Training-step throughput (forward + backward + SGD) on random 32x32 data.")
    @Option(help: "resnet18 or resnet34.") var model = "resnet18"
    @Option(help: "Images per step.") var batch = 64
    @Option(help: "Encoder width.") var width = 64
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Timed steps (median reported).") var steps = 5
    @Option(help: "Untimed warm-up steps.") var warmup = 2
    @Flag(help: "Measure eval-mode inference instead of training.") var inference = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard ModelConfig.architectures[model] != nil else { throw ValidationError("--model must be resnet18 or resnet34") }
        guard batch > 0, steps > 0, width > 0 else { throw ValidationError("--batch, --steps and --width must be positive") }
    }

    func run() throws {
        runGuarded {
            Threads.set(threads ?? TrainJob.threadsPerRank(explicit: nil))
            // Under mpirun: every rank runs batch / ranks images and the gradients are summed
            // across ranks after backward (the data-parallel step without the contrastive loss).
            let comm: MPICommunicator? = MPIRuntime.launchedByMPI ? MPICommunicator() : nil
            let size = comm?.size ?? 1
            guard batch % size == 0 else { throw ValidationError("--batch \(batch) is not divisible by \(size) ranks") }
            let reduce: ((UnsafeMutablePointer<Float>, Int) -> Void)? = comm.map { c in { p, n in c.allreduceSum(p, count: n) } }
            let r = try TrainBenchmark.run(config: ModelConfig(arch: model, width: width), batch: batch, steps: steps,
                                           warmup: warmup, inference: inference, ranks: size, allreduce: reduce)
            if let comm, !comm.isRoot { return 0 }
            if json {
                let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
                print(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                print(String(format: "%@ width %d batch %d ranks %d x threads %d (%@): %.1f images/s, %.1f GFLOPS (%.2f GFLOP/image), step %.3f s (fwd %.0f ms, bwd %.0f ms, allreduce %.1f ms, sgd %.0f ms), peak RSS %.0f MB",
                             r.model, r.width, r.batch, r.ranks, r.threads, r.openblas_core, r.images_per_s, r.gflops, r.gflop_per_image,
                             r.seconds_per_step, r.forward_ms, r.backward_ms, r.allreduce_ms, r.sgd_ms, r.peak_rss_mb))
            }
            return 0
        }
    }
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate time per epoch, time to train, memory per rank and communication share on N ranks.",
        discussion: """
        Per-rank network throughput is measured here (a short `bench` at the rank's batch, up to 512
        views, with --threads threads) unless --views-per-s is given; the global loss is timed at up to 4096
        views and scaled with views^2; collectives follow a ring model with --latency-us and
        --bandwidth (GB/s; default 2.4 = this machine's shared-memory allreduce). See docs/scaling.md.
        """)
    @Option(help: "YAML run configuration.") var config: String
    @Option(help: "Number of ranks (repeatable: --ranks 8 --ranks 32).") var ranks: [Int] = [1]
    @Option(help: "Threads per rank (default: cores / ranks here, for measuring).") var threads: Int?
    @Option(help: "Interconnect bandwidth per rank in GB/s.") var bandwidth = 2.4
    @Option(help: "Per-message latency in microseconds.") var latencyUs = 5.0
    @Option(help: "Skip measuring: network views/s of one rank.") var viewsPerS: Double?
    @Option(help: "Training images (default: the count in data.train, else 50000).") var images: Int?
    @Option(name: .customLong("set"), help: "Override a config key (repeatable).") var sets: [String] = []
    @Flag(help: "Print JSON.") var json = false

    /// The largest per-rank batch (views) the throughput bench runs at.
    static let maxBenchViews = 512

    func validate() throws {
        guard !ranks.isEmpty, ranks.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--ranks must be >= 1") }
        guard bandwidth > 0, latencyUs >= 0 else { throw ValidationError("--bandwidth must be > 0 and --latency-us >= 0") }
    }

    func run() throws {
        runGuarded {
            let (cfg, _) = try RunConfig.load(path: config, overrides: sets)
            let model = try ResNetModel(cfg.model)
            var count = images ?? 50000
            if images == nil, let d = try? PackedDataset(path: cfg.dataTrain, verify: false) { count = d.count }
            var results: [PlanResult] = []
            for n in ranks {
                guard (2 * cfg.batchSize) % n == 0 else { throw ConfigError("--ranks \(n): the \(2 * cfg.batchSize) views of a batch do not split evenly") }
                let t = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / n)
                let perRank = 2 * cfg.batchSize / n
                var vps = viewsPerS ?? 0
                if vps == 0 {
                    Threads.set(t)
                    // Per-view throughput still grows from 256 to 512 views (larger GEMM panels and
                    // Winograd tile blocks: ~25% at width 16, docs/scaling.md), so measure at the
                    // rank's own batch (or micro-batch) up to 512 views, which bounds the bench's memory.
                    let b = min(perRank, cfg.microBatch > 0 ? cfg.microBatch : perRank, Plan.maxBenchViews)
                    let r = try TrainBenchmark.run(config: cfg.model, batch: b, steps: 3, warmup: 1)
                    vps = r.images_per_s
                }
                var lossCfg = cfg.loss
                lossCfg.useAux = cfg.rotations > 1
                let lv = min(2 * cfg.batchSize, 4096)
                let lossT = Planner.measureLoss(views: lv, dim: cfg.model.projectionDim, config: lossCfg)
                let cal = PlanCalibration(viewsPerSecondPerRank: vps, lossSeconds: lossT, lossViews: lv,
                                          latencySeconds: latencyUs * 1e-6, bandwidthBytesPerSecond: bandwidth * 1e9,
                                          activationBytesPerView: Planner.activationBytesPerView(cfg.model))
                results.append(Planner.estimate(config: cfg, datasetImages: count, ranks: n, threads: t,
                                                parameterCount: model.store.paramCount,
                                                batchNormChannels: model.batchNorms.map(\.channels), calibration: cal))
            }
            if json {
                let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try enc.encode(results), as: UTF8.self))
            } else {
                print("plan: \(cfg.model.arch) width \(cfg.model.width), batch \(cfg.batchSize) (\(2 * cfg.batchSize) views), \(count) images x \(cfg.rotations) rotations, \(cfg.epochs) epochs, bandwidth \(bandwidth) GB/s, sync_bn \(cfg.syncBN)")
                print("ranks threads  step_s  compute  loss  allgather allreduce  bn_sync  comm%  images/s  epoch      total     mem/rank")
                for r in results {
                    print(String(format: "%5d %7d %7.3f %8.3f %5.3f %9.4f %9.4f %8.4f %6.1f %9.1f %9@ %9@ %8.2f GB",
                                 r.ranks, r.threadsPerRank, r.stepSeconds, r.computeSeconds, r.lossSeconds, r.allgatherSeconds,
                                 r.allreduceSeconds, r.syncBNSeconds, 100 * r.communicationShare, r.imagesPerSecond,
                                 formatDuration(r.epochSeconds), formatDuration(r.totalSeconds), r.memoryPerRankGB))
                }
            }
            return 0
        }
    }
}

struct PlotLoss: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plot-loss", abstract: "Draw a run's loss curve (PNG) from its metrics.jsonl.")
    @Argument(help: "metrics.jsonl of a run.") var metrics: String
    @Option(help: "Output PNG.") var out: String
    @Option(help: "Figure title.") var title = "training loss"

    func run() throws {
        runGuarded {
            guard writeLossFigure(metricsPath: metrics, out: out, title: title) else {
                throw ConfigError("\(metrics): no readable step lines (expected metrics.jsonl from `mcl-dist train`)")
            }
            print("wrote \(out)")
            return 0
        }
    }
}
