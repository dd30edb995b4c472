import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
import MCLData
import MCLEval

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

/// The training job, top to bottom: build the run, maybe resume, then for each step take the
/// batch, step, log, maybe checkpoint (and stop when asked); then the loss figure and the
/// evaluation. Each phase is a call defined in its own place: `TrainingRun` (build),
/// `resumePoint`, `BatchLoader`, `DistributedTrainer` (the step), `MetricsLog` and `Progress`
/// (log), `Checkpoints` (checkpoint), `StopSignal`, `evaluateRun`.
public final class TrainJob {
    let options: TrainOptions
    let comm: Communicator
    let log: (String) -> Void

    public init(options: TrainOptions, comm: Communicator) {
        self.options = options
        self.comm = comm
        let rank = comm.rank
        log = { msg in if rank == 0 { print(msg); fflush(nil) } }
    }

    public func run() throws -> TrainExit {
        Threads.set(Threads.perRank(explicit: options.threads))
        comm.watch(phase: "startup", timeout: StallDeadline.startupFloor)
        let run = try TrainingRun(options: options, comm: comm, log: log)
        var deadline = StallDeadline(configured: run.config.stallTimeout)
        comm.watch(phase: "startup", timeout: deadline.startup)
        let start = try resumePoint(run)
        guard start <= run.totalSteps else {
            throw ConfigError("--resume: the checkpoint is at step \(start), beyond this run's \(run.totalSteps) steps (train.epochs / train.max_steps)")
        }
        let metrics = try MetricsLog(path: run.outDir + "/metrics.jsonl", keepingStepsBefore: start, writer: comm.isRoot)
        StopSignal.install()
        run.announce(log: log)
        var progress = Progress(enabled: comm.isRoot, epochs: run.config.epochs, totalSteps: run.totalSteps,
                                imagesPerStep: Double(run.config.batchSize))
        var lastCheckpoint: String? = nil
        let t0 = ProcessStats.now()
        for step in start..<run.totalSteps {
            let (epoch, inEpoch) = (step / run.stepsPerEpoch, step % run.stepsPerEpoch)
            let batch = run.loader.batch(epoch: epoch, step: inEpoch)
            comm.watch(phase: "step \(step) (epoch \(epoch + 1))", timeout: deadline.training)
            let st = run.step(batch, step: step)
            deadline.record(stepSeconds: st.totalSeconds)
            guard st.loss.isFinite else {
                log("mcl-dist: non-finite loss (\(st.loss)) at step \(step) (epoch \(epoch + 1)); stopping. Last good checkpoint: \(lastCheckpoint ?? "none")")
                return .nonFiniteLoss
            }
            let ips = progress.record(st)
            metrics.append(step: step, epoch: epoch + 1, stats: st, imagesPerSecond: ips)
            progress.show(step: step, epoch: epoch + 1, st, imagesPerSecond: ips)
            let done = step + 1
            let stop = StopSignal.agreed(comm)
            if stop > 0 || run.checkpointDue(afterSteps: done) {
                lastCheckpoint = saveCheckpoint(run, steps: done, loss: st.loss, previous: lastCheckpoint,
                                                announce: !progress.live || done == run.totalSteps || stop > 0)
            }
            if stop > 0 {
                log("mcl-dist: stopped by signal \(stop) after step \(done); resume with --resume auto")
                metrics.close()
                return .stoppedBySignal
            }
        }
        metrics.close()
        finishTraining(run, steps: run.totalSteps - start, seconds: ProcessStats.now() - t0)
        if run.config.evalAfterTrain && !run.config.dataTest.isEmpty {
            let report = try evaluateRun(model: run.model, config: run.config, configText: run.resolvedYAML,
                                         checkpoint: lastCheckpoint ?? "(in memory)", outDir: run.outDir + "/eval",
                                         comm: comm, log: log)
            if let report { log("\n" + report.markdown()) }
        }
        return .ok
    }

    /// The step to start from: 0, or that of the checkpoint `--resume` names (`auto`: the newest
    /// valid one of this configuration in the run directory), whose weights, momentum and
    /// optimizer step count are loaded into the run. Rank 0 alone chooses and broadcasts the
    /// state file and a fingerprint of its weights; every rank loads exactly that file, or the
    /// job ends naming the rank and the file (on a shared file system with attribute caching,
    /// ranks choosing on their own could load different steps).
    func resumePoint(_ run: TrainingRun) throws -> Int {
        guard let resume = options.resume else { return 0 }
        var choice = ""   // "" = start fresh; "!" + error; else "<state file>\t<fingerprint>"
        if comm.isRoot {
            do {
                if let (_, weights) = try chooseCheckpoint(resume, run) {
                    choice = String(weights.dropLast(".safetensors".count)) + ".json\t" + (try Checkpoints.fingerprint(weights))
                }
            } catch { choice = "!\(error)" }
        }
        choice = comm.size > 1 ? comm.broadcast(choice, root: 0) : choice
        if choice.hasPrefix("!") { throw ConfigError(String(choice.dropFirst())) }
        if choice.isEmpty { return 0 }
        let parts = choice.split(separator: "\t").map(String.init)
        let stateFile = parts[0], wanted = parts[1]
        let st: TrainState, weights: String
        do {
            (st, weights) = try Checkpoints.read(stateFile: stateFile)
            let mine = try Checkpoints.fingerprint(weights)
            guard mine == wanted else { throw ConfigError("its weights differ from rank 0's (fingerprint \(mine), rank 0 \(wanted))") }
        } catch {
            throw ConfigError("resume: rank \(comm.rank) cannot use the checkpoint rank 0 chose, \(stateFile): \(error)")
        }
        try Checkpoints.load(weights: weights, model: run.model, optimizer: run.trainer.optimizer)
        run.trainer.optimizer.steps = st.optimizerSteps
        log("resumed from \(weights) at step \(st.step) (epoch \(st.epoch + 1)); every rank loaded the same file (fingerprint \(wanted))")
        return st.step
    }

    /// Rank 0's choice of checkpoint for `--resume` (nil: none, start fresh).
    func chooseCheckpoint(_ resume: String, _ run: TrainingRun) throws -> (TrainState, String)? {
        let hash = run.config.trainingHash
        if resume == "auto" {
            let found = Checkpoints.newestValid(runDir: run.outDir, configHash: hash, log: log)
            if found == nil { log("resume auto: no valid checkpoint in \(Checkpoints.directory(run.outDir)); starting fresh") }
            return found
        }
        let stateFile = resume.hasSuffix(".safetensors") ? String(resume.dropLast(".safetensors".count)) + ".json" : resume
        let (st, w) = try Checkpoints.read(stateFile: stateFile)
        if st.configHash != hash {
            throw ConfigError("--resume \(resume): checkpoint was made with a different training configuration (hash \(st.configHash), this config \(hash))")
        }
        return (st, w)
    }

    /// Rank 0 writes the checkpoint after `steps` completed steps; every rank waits for it.
    /// Returns its path, or `previous` when writing failed (said on stderr; `previous` is intact).
    func saveCheckpoint(_ run: TrainingRun, steps: Int, loss: Double, previous: String?, announce: Bool) -> String? {
        var path = previous
        if comm.isRoot {
            let spe = run.stepsPerEpoch
            let state = TrainState(step: steps, epoch: steps / spe, stepInEpoch: steps % spe, totalSteps: run.totalSteps,
                                   optimizerSteps: run.trainer.optimizer.steps, seed: run.config.seed,
                                   configHash: run.config.trainingHash, worldSize: comm.size, weights: "", lastLoss: loss,
                                   createdAt: ISO8601DateFormatter().string(from: Date()))
            do {
                path = try Checkpoints.save(model: run.model, optimizer: run.trainer.optimizer, state: state,
                                            runDir: run.outDir, keep: run.config.keepCheckpoints)
                if announce { print("checkpoint \(path!)") }
            } catch {
                FileHandle.standardError.write(Data("mcl-dist: checkpoint at step \(steps) failed: \(error); the previous checkpoint \(previous ?? "(none)") is intact\n".utf8))
            }
        }
        comm.barrier()
        return path
    }

    /// The loss figure (rank 0) and the summary line.
    func finishTraining(_ run: TrainingRun, steps: Int, seconds: Double) {
        let c = run.config
        if comm.isRoot {
            writeLossFigure(metricsPath: run.outDir + "/metrics.jsonl", out: run.outDir + "/loss.png",
                            title: "\(c.loss.kind.rawValue) loss, \(c.model.arch) width \(c.model.width)")
        }
        log(String(format: "training done: %d steps in %.1f s (%.1f images/s)", steps, seconds,
                   Double(steps) * Double(c.batchSize) / max(seconds, 1e-9)))
    }
}
