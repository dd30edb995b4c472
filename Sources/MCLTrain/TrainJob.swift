import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
import MCLData
import MCLEval

/// Set from the SIGTERM / SIGUSR1 handler; checked (and agreed on across ranks) after every step.
nonisolated(unsafe) private var stopSignal: Int32 = 0

private func installStopHandlers() {
    for sig in [SIGTERM, SIGUSR1] {
        signal(sig) { s in stopSignal = s }
    }
}

/// How `mcl-dist train` was asked to run.
public struct TrainOptions: Sendable {
    public var configPath: String
    public var overrides: [String] = []
    public var outDir: String? = nil
    /// nil = start fresh; "auto" = newest valid checkpoint in DIR/checkpoints if any; else a path
    /// to a checkpoint's .json state or .safetensors weights.
    public var resume: String? = nil
    public var threads: Int? = nil
    public init(configPath: String) { self.configPath = configPath }
}

/// Exit codes of `mcl-dist train`.
public enum TrainExit: Int32 {
    case ok = 0, stoppedBySignal = 0x0F, nonFiniteLoss = 4, badInput = 2
}

/// The training job: config, data, model, resume, the step loop with progress and metrics,
/// checkpoints, signals, and evaluation at the end.
public final class TrainJob {
    let options: TrainOptions
    let comm: Communicator
    var log: (String) -> Void

    public init(options: TrainOptions, comm: Communicator) {
        self.options = options
        self.comm = comm
        let rank = comm.rank
        log = { msg in if rank == 0 { print(msg); fflush(nil) } }
    }

    /// Threads per rank: --threads, MCL_THREADS / OPENBLAS_NUM_THREADS, else the cores divided
    /// by the ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE / SLURM_NTASKS_PER_NODE).
    public static func threadsPerRank(explicit: Int?) -> Int {
        if let explicit, explicit > 0 { return explicit }
        let env = ProcessInfo.processInfo.environment
        for key in ["MCL_THREADS", "OPENBLAS_NUM_THREADS"] {
            if let s = env[key], let v = Int(s), v > 0 { return v }
        }
        let local = Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? env["SLURM_NTASKS_PER_NODE"] ?? "1") ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
    }

    public func run() throws -> TrainExit {
        Threads.set(TrainJob.threadsPerRank(explicit: options.threads))
        var (config, resolvedYAML) = try RunConfig.load(path: options.configPath, overrides: options.overrides)
        let outDir = options.outDir ?? "runs/" + URL(fileURLWithPath: options.configPath).deletingPathExtension().lastPathComponent
        Conv2d.deterministic = config.deterministic
        if comm.isRoot {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            try AtomicFile.write(Data(resolvedYAML.utf8), to: outDir + "/config.yaml")
        }
        let train = try PackedDataset(path: config.dataTrain)
        guard train.isLabelled else { throw ConfigError("data.train: \(config.dataTrain) has no class labels (an unlabelled folder); training needs labels") }
        let loader = try BatchLoader(dataset: train, globalBatch: config.batchSize, rotations: config.rotations,
                                     rank: comm.rank, worldSize: comm.size, seed: config.seed,
                                     augment: { var a = AugmentOptions.standard; a.flipVariant = config.flip; return a }(),
                                     prefetch: 2, workers: max(1, Threads.count / 2))
        let spe = loader.stepsPerEpoch
        var total = config.epochs * spe
        if config.maxSteps > 0 { total = min(total, config.maxSteps) }
        config.loss.useAux = config.rotations > 1
        let model = try ResNetModel(config.model)
        model.initialise(seed: config.seed)
        let trainer = DistributedTrainer(model: model, comm: comm, loss: config.loss,
                                         schedule: CosineSchedule(baseLR: config.baseLR, totalSteps: total),
                                         microBatch: config.microBatch, seed: config.seed, syncBN: config.syncBN,
                                         momentum: Float(config.momentum), weightDecay: Float(config.weightDecay))
        trainer.broadcastInitialState()
        let hash = config.trainingHash
        var start = 0
        if let resume = options.resume {
            var found: (TrainState, String)? = nil
            if resume == "auto" {
                found = Checkpoints.newestValid(runDir: outDir, configHash: hash, log: log)
                if found == nil { log("resume auto: no valid checkpoint in \(Checkpoints.directory(outDir)); starting fresh") }
            } else {
                let stateFile = resume.hasSuffix(".safetensors") ? String(resume.dropLast(".safetensors".count)) + ".json" : resume
                let (st, w) = try Checkpoints.read(stateFile: stateFile)
                if st.configHash != hash {
                    throw ConfigError("--resume \(resume): checkpoint was made with a different training configuration (hash \(st.configHash), this config \(hash))")
                }
                found = (st, w)
            }
            if let (st, w) = found {
                try Checkpoints.load(weights: w, model: model, optimizer: trainer.optimizer)
                trainer.optimizer.steps = st.optimizerSteps
                start = st.step
                log("resumed from \(w) at step \(start) (epoch \(st.epoch + 1))")
            }
        }
        let metricsPath = outDir + "/metrics.jsonl"
        var metrics: FileHandle? = nil
        if comm.isRoot { metrics = try openMetrics(path: metricsPath, keepBefore: start) }
        installStopHandlers()
        let imagesPerStep = Double(config.batchSize)
        let views = 2 * config.batchSize / comm.size
        log("mcl-dist train: \(config.model.arch) width \(config.model.width), \(train.count) images x \(config.rotations) rotations, batch \(config.batchSize) (\(2 * config.batchSize) views), \(comm.size) rank(s) x \(Threads.count) thread(s), \(spe) steps/epoch, \(total) steps, lr \(config.baseLR)")
        let imagesPerRank = config.batchSize / config.rotations / comm.size
        if comm.size > 1 && !config.syncBN && [.mcl, .spa, .supcon].contains(config.loss.kind) && imagesPerRank < 128 {
            log("mcl-dist: warning: model.sync_bn is false and each rank normalises only \(imagesPerRank) images: \(config.loss.kind.rawValue)'s positives often lie on other ranks, and per-rank BatchNorm statistics then slow its learning markedly (docs/results.md); consider model.sync_bn: true")
        }
        var lastCheckpoint: String? = nil
        // A live progress line on a terminal; plain lines in logs. mpirun hands ranks a pty even
        // when its own output goes to a file, so under a launcher MCL_PROGRESS=live opts in.
        let progressEnv = ProcessInfo.processInfo.environment["MCL_PROGRESS"]
        let tty = progressEnv == "live" || (progressEnv != "plain" && isatty(1) != 0 && !MPIRuntime.launchedByMPI)
        var ema: Double = 0
        let t0 = ProcessStats.now()
        var step = start
        while step < total {
            let epoch = step / spe, s = step % spe
            let batch = loader.batch(epoch: epoch, step: s)
            precondition(batch.main.count == views)
            let st = batch.views.withUnsafeBufferPointer {
                trainer.step(views: $0.baseAddress!, localViews: views, main: batch.main, aux: batch.aux, step: step)
            }
            if !st.loss.isFinite {
                log("mcl-dist: non-finite loss (\(st.loss)) at step \(step) (epoch \(epoch + 1)); stopping. Last good checkpoint: \(lastCheckpoint ?? "none")")
                return .nonFiniteLoss
            }
            let ips = imagesPerStep / st.totalSeconds
            ema = ema == 0 ? ips : 0.9 * ema + 0.1 * ips
            if comm.isRoot {
                let line = String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.8g,\"loss_ccm\":%.8g,\"loss_spa\":%.8g,\"lr\":%.8g,\"images_per_s\":%.4g,\"step_s\":%.4g,\"forward_s\":%.4g,\"gather_s\":%.4g,\"loss_s\":%.4g,\"backward_s\":%.4g,\"allreduce_s\":%.4g,\"sgd_s\":%.4g}\n",
                                  step, epoch + 1, st.loss, st.ccm, st.spa, st.lr, ips, st.totalSeconds, st.forwardSeconds,
                                  st.gatherSeconds, st.lossSeconds, st.backwardSeconds, st.allreduceSeconds, st.optimizerSeconds)
                metrics?.write(Data(line.utf8))
                let eta = Double(total - step - 1) * imagesPerStep / max(ema, 1e-9)
                let msg = String(format: "epoch %d/%d step %d/%d loss %.4f (ccm %.4f spa %.4f) lr %.4g %.1f img/s ETA %@",
                                 epoch + 1, config.epochs, step + 1, total, st.loss, st.ccm, st.spa, st.lr, ips, formatDuration(eta))
                if tty { print("\r\u{1B}[2K" + msg, terminator: step + 1 == total ? "\n" : ""); fflush(nil) } else { print(msg) }
            }
            step += 1
            var flag = [Double(stopSignal)]
            comm.allreduceMax(&flag)
            let endOfEpoch = step % spe == 0
            let wantCheckpoint = step == total || flag[0] > 0 ||
                (config.checkpointEvery > 0 && endOfEpoch && (step / spe) % config.checkpointEvery == 0)
            if wantCheckpoint {
                if comm.isRoot {
                    let state = TrainState(step: step, epoch: step / spe, stepInEpoch: step % spe, totalSteps: total,
                                           optimizerSteps: trainer.optimizer.steps, seed: config.seed, configHash: hash,
                                           worldSize: comm.size, weights: "", lastLoss: st.loss,
                                           createdAt: ISO8601DateFormatter().string(from: Date()))
                    do {
                        lastCheckpoint = try Checkpoints.save(model: model, optimizer: trainer.optimizer, state: state, runDir: outDir, keep: config.keepCheckpoints)
                        if !tty || step == total || flag[0] > 0 { print("checkpoint \(lastCheckpoint!)") }
                    } catch {
                        FileHandle.standardError.write(Data("mcl-dist: checkpoint at step \(step) failed: \(error); the previous checkpoint \(lastCheckpoint ?? "(none)") is intact\n".utf8))
                    }
                }
                comm.barrier()
            }
            if flag[0] > 0 {
                log("mcl-dist: stopped by signal \(Int(flag[0])) after step \(step); resume with --resume auto")
                try? metrics?.close()
                return .stoppedBySignal
            }
        }
        try? metrics?.close()
        if comm.isRoot { writeLossFigure(metricsPath: metricsPath, out: outDir + "/loss.png", title: "\(config.loss.kind.rawValue) loss, \(config.model.arch) width \(config.model.width)") }
        let elapsed = ProcessStats.now() - t0
        log(String(format: "training done: %d steps in %.1f s (%.1f images/s)", total - start, elapsed, Double(total - start) * imagesPerStep / max(elapsed, 1e-9)))
        if config.evalAfterTrain && !config.dataTest.isEmpty {
            try evaluateAfterTraining(model: model, config: config, yaml: resolvedYAML, checkpoint: lastCheckpoint ?? "(in memory)", outDir: outDir + "/eval")
        }
        return .ok
    }

    func evaluateAfterTraining(model: ResNetModel, config: RunConfig, yaml: String, checkpoint: String, outDir: String) throws {
        let train = try PackedDataset(path: config.dataTrain)
        let test = try PackedDataset(path: config.dataTest)
        let ood = try config.dataOOD.map { (name: $0.name, data: try PackedDataset(path: $0.path)) }
        var opts = EvalOptions()
        opts.seiWays = config.seiWays
        opts.aggregations = config.aggregations
        opts.feature = config.feature
        opts.rotations = config.rotations
        opts.ridge = config.ridge
        if config.evalTrainLimit > 0 { opts.trainLimit = config.evalTrainLimit }
        if config.evalTestLimit > 0 { opts.testLimit = config.evalTestLimit }
        if comm.isRoot { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) }
        let report = try runEvaluation(model: model, comm: comm, train: train, test: test, ood: ood, options: opts,
                                       outDir: outDir, checkpoint: checkpoint, configText: yaml, log: log)
        if let report { log("\n" + report.markdown()) }
    }

    func openMetrics(path: String, keepBefore start: Int) throws -> FileHandle {
        // Keep the lines of steps before the resume point (drop any written after the checkpoint).
        var kept = ""
        if start > 0, let old = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in old.split(separator: "\n") {
                if let r = line.range(of: "\"step\":"), let n = Int(line[r.upperBound...].prefix { $0.isNumber }), n < start {
                    kept += line + "\n"
                }
            }
        }
        try AtomicFile.write(Data(kept.utf8), to: path)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        return h
    }
}

/// Draws DIR/loss.png from DIR/metrics.jsonl (also `mcl-dist plot-loss`).
@discardableResult
public func writeLossFigure(metricsPath: String, out: String, title: String) -> Bool {
    guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return false }
    var steps: [Int] = [], loss: [Double] = [], ccm: [Double] = [], spa: [Double] = []
    for line in text.split(separator: "\n") {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let s = obj["step"] as? Int, let l = obj["loss"] as? Double else { continue }
        steps.append(s); loss.append(l)
        ccm.append(obj["loss_ccm"] as? Double ?? 0); spa.append(obj["loss_spa"] as? Double ?? 0)
    }
    guard !steps.isEmpty else { return false }
    return (try? lossCurveFigure(steps: steps, loss: loss, ccm: ccm, spa: spa, title: title).writePNG(to: out)) != nil
}

/// A duration for people: "1.5d", "2h05m", "3m07s", "42s" ("?" when not finite).
public func formatDuration(_ s: Double) -> String {
    if !s.isFinite { return "?" }
    let t = Int(s.rounded())
    if t >= 86400 { return String(format: "%.1fd", s / 86400) }
    if t >= 3600 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
    if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
    return "\(t)s"
}
