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
    /// Start over in a run directory that holds an earlier run, moving that run aside.
    public var fresh = false
    public var threads: Int? = nil
    public init(configPath: String) { self.configPath = configPath }
}

/// Exit codes of `mcl-dist train`.
public enum TrainExit: Int32 {
    case ok = 0, stoppedBySignal = 0x0F, nonFinite = 4, badInput = 2, cannotWrite = 6
}

/// The training job, top to bottom: build the run, claim the run directory and decide where to
/// start (fresh or a checkpoint; nothing is written before that is settled), then for each step
/// take the batch, step, log, maybe checkpoint (and stop when asked, or when a write failed or a
/// parameter went non-finite); then the loss figure and the evaluation. Each phase is a call
/// defined in its own place: `TrainingRun` (build), `RunDirectory` and `ResumeDecision` (where to
/// start), `BatchLoader`, `DistributedTrainer` (the step), `MetricsLog` and `Progress` (log),
/// `Checkpoints` (checkpoint), `StopSignal`, `evaluateRun`.
public final class TrainJob {
    let options: TrainOptions
    let comm: Communicator
    let log: (String) -> Void
    /// Rank 0's messages about a job that ends early (to stderr).
    let logError: (String) -> Void
    /// Rank 0's hold on the run directory.
    var runDirectory: RunDirectory? = nil

    public init(options: TrainOptions, comm: Communicator) {
        self.options = options
        self.comm = comm
        let rank = comm.rank
        log = { msg in if rank == 0 { print(msg); fflush(nil) } }
        logError = { msg in if rank == 0 { fflush(nil); FileHandle.standardError.write(Data((msg + "\n").utf8)) } }
    }

    public func run() throws -> TrainExit {
        Threads.set(Threads.perRank(explicit: options.threads))
        comm.watch(phase: "startup", timeout: StallDeadline.startupFloor)
        let run = try TrainingRun(options: options, comm: comm, log: log)
        var deadline = StallDeadline(configured: run.config.stallTimeout)
        comm.watch(phase: "startup", timeout: deadline.startup)
        let (start, resumedFrom) = try startingPoint(run)
        if resumedFrom == nil && run.initPending {
            throw ConfigError("train.init: \(run.config.initFrom) does not exist, and there is no checkpoint of this run to continue from")
        }
        let metrics = try MetricsLog(path: run.outDir + "/metrics.jsonl", keepingStepsBefore: start, writer: comm.isRoot)
        if !StopSignal.install() {
            logError("mcl-dist: warning: no alternate signal stack (mmap or sigaltstack failed); a stop signal that lands inside a oneDNN GEMM may corrupt the heap")
        }
        run.announce(log: log)
        var progress = Progress(enabled: comm.isRoot, epochs: run.config.epochs, totalSteps: run.totalSteps,
                                imagesPerStep: Double(run.config.batchSize))
        var lastCheckpoint: String? = resumedFrom
        let t0 = ProcessStats.now()
        for step in start..<run.totalSteps {
            let (epoch, inEpoch) = (step / run.stepsPerEpoch, step % run.stepsPerEpoch)
            let batch = run.loader.batch(epoch: epoch, step: inEpoch)
            comm.watch(phase: "step \(step) (epoch \(epoch + 1))", timeout: deadline.training)
            let st = run.step(batch, step: step)
            deadline.record(stepSeconds: st.totalSeconds)
            guard st.loss.isFinite else {
                logError("mcl-dist: non-finite loss (\(st.loss)) at step \(step) (epoch \(epoch + 1)); stopping. Last good checkpoint: \(lastCheckpoint ?? "none")")
                return .nonFinite
            }
            let ips = progress.record(st)
            metrics.append(step: step, epoch: epoch + 1, stats: st, imagesPerSecond: ips)
            progress.show(step: step, epoch: epoch + 1, st, imagesPerSecond: ips)
            let done = step + 1
            let badTensor = run.model.store.firstNonFinite()
            if let badTensor {
                FileHandle.standardError.write(Data("mcl-dist: rank \(comm.rank): after step \(step) (epoch \(epoch + 1)) tensor '\(badTensor)' holds NaN or infinity\n".utf8))
            }
            let status = JobStatus.agreed(comm, signal: StopSignal.local, writeFailed: metrics.failure != nil, nonFinite: badTensor != nil)
            if status.nonFinite {
                logError("mcl-dist: non-finite weights after step \(step) (epoch \(epoch + 1)); stopping without saving them. Last good checkpoint: \(lastCheckpoint ?? "none")")
                return .nonFinite
            }
            if status.writeFailed {
                logError("mcl-dist: \(metrics.failure ?? "metrics.jsonl: a write failed"); the job ends. Last good checkpoint: \(lastCheckpoint ?? "none")")
                return .cannotWrite
            }
            if status.signal > 0 || run.checkpointDue(afterSteps: done) {
                let saved = saveCheckpoint(run, steps: done, loss: st.loss, previous: lastCheckpoint,
                                           announce: !progress.live || done == run.totalSteps || status.signal > 0)
                guard saved.written else { return .cannotWrite }
                lastCheckpoint = saved.path
            }
            if status.signal > 0 {
                log("mcl-dist: stopped by signal \(status.signal) after step \(done); resume with --resume auto")
                metrics.close()
                runDirectory?.release()
                return .stoppedBySignal
            }
        }
        metrics.close()
        try finishTraining(run, steps: run.totalSteps - start, seconds: ProcessStats.now() - t0)
        if run.config.evalAfterTrain && !run.config.dataTest.isEmpty {
            // With per-rank BatchNorm every rank holds its own running statistics; evaluate the
            // model the checkpoint holds (rank 0's), so that the report and the detector do not
            // depend on the number of ranks and `detect` with the checkpoint gives the same scores.
            let store = run.model.store
            if comm.size > 1 && store.statCount > 0 { comm.broadcast(store.state.ptr, count: store.statCount, root: 0) }
            let report = try evaluateRun(model: run.model, config: run.config, configText: run.resolvedYAML,
                                         checkpoint: lastCheckpoint ?? "(in memory)", outDir: run.outDir + "/eval",
                                         comm: comm, log: log)
            if let report { log("\n" + report.markdown()) }
        }
        runDirectory?.release()
        return .ok
    }

    /// The step to start from (and the checkpoint it comes from): 0, or that of the checkpoint
    /// `--resume` names. Rank 0 alone claims
    /// the run directory (`RunDirectory`), decides (`ResumeDecision`: a run is continued only
    /// with the configuration it was trained with, up to the continuation keys; an earlier run is
    /// never overwritten) and only then writes `config.yaml`; it broadcasts the decision, the
    /// state file and a fingerprint of its weights, and every rank loads exactly that file, or the
    /// job ends naming the rank and the file (on a shared file system with attribute caching,
    /// ranks choosing on their own could load different steps). A refusal reaches every rank as
    /// the same error, before anything was written.
    func startingPoint(_ run: TrainingRun) throws -> (step: Int, checkpoint: String?) {
        var choice = ""   // "" = start fresh; "!" + error; else "<state file>\t<fingerprint>"
        if comm.isRoot {
            do {
                let dir = try RunDirectory(claiming: run.outDir, log: log)
                runDirectory = dir
                let decision = try ResumeDecision.decide(options: options, run: run, directory: dir, log: log)
                if decision.supersede { log("--fresh: the earlier run of \(run.outDir) was moved to \(try dir.supersede())") }
                try AtomicFile.write(Data(run.resolvedYAML.utf8), to: run.outDir + "/config.yaml")
                if let (_, weights) = decision.checkpoint {
                    choice = String(weights.dropLast(".safetensors".count)) + ".json\t" + (try Checkpoints.fingerprint(weights))
                }
            } catch { choice = "!\(error)" }
        }
        choice = comm.size > 1 ? comm.broadcast(choice, root: 0) : choice
        if choice.hasPrefix("!") { throw ConfigError(String(choice.dropFirst())) }
        if choice.isEmpty { return (0, nil) }
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
        if st.step == run.totalSteps { log("resume: the checkpoint is at the end of training (step \(st.step) of \(run.totalSteps)): nothing left to train") }
        return (st.step, weights)
    }

    /// Rank 0 writes the checkpoint after `steps` completed steps; every rank learns whether it
    /// was written (when not, said on stderr naming the file; the previous checkpoint is intact;
    /// every rank then ends the job). Returns that and the path (rank 0's; others keep `previous`).
    func saveCheckpoint(_ run: TrainingRun, steps: Int, loss: Double, previous: String?, announce: Bool) -> (written: Bool, path: String?) {
        var path: String? = previous
        var failed = [0.0]
        if comm.isRoot {
            let spe = run.stepsPerEpoch
            let state = TrainState(step: steps, epoch: steps / spe, stepInEpoch: steps % spe, totalSteps: run.totalSteps,
                                   optimizerSteps: run.trainer.optimizer.steps, seed: run.config.seed,
                                   configHash: run.config.trainingHash, worldSize: comm.size, weights: "", lastLoss: loss,
                                   createdAt: ISO8601DateFormatter().string(from: Date()), config: run.resolvedYAML)
            do {
                path = try Checkpoints.save(model: run.model, optimizer: run.trainer.optimizer, state: state,
                                            runDir: run.outDir, keep: run.config.keepCheckpoints)
                if announce { print("checkpoint \(path!)") }
            } catch {
                FileHandle.standardError.write(Data("mcl-dist: rank 0: the checkpoint of step \(steps) cannot be written: \(error); the job ends. The previous checkpoint \(previous ?? "(none)") is intact\n".utf8))
                failed[0] = 1
            }
        }
        comm.allreduceMax(&failed)
        return (failed[0] == 0, path)
    }

    /// The loss figure (rank 0) and the summary line.
    func finishTraining(_ run: TrainingRun, steps: Int, seconds: Double) throws {
        let c = run.config
        if comm.isRoot {
            _ = try writeLossFigure(metricsPath: run.outDir + "/metrics.jsonl", out: run.outDir + "/loss.png",
                            title: "\(c.loss.kind.rawValue) loss, \(c.model.arch) width \(c.model.width)")
        }
        log(String(format: "training done: %d steps in %.1f s (%.1f images/s)", steps, seconds,
                   Double(steps) * Double(c.batchSize) / max(seconds, 1e-9)))
    }
}

/// What the ranks agree on after every step (one allreduce of the largest value): a stop signal
/// any rank received, a failed write on rank 0, a non-finite parameter on any rank.
struct JobStatus {
    var signal: Int32
    var writeFailed: Bool
    var nonFinite: Bool

    static func agreed(_ comm: Communicator, signal: Int32, writeFailed: Bool, nonFinite: Bool) -> JobStatus {
        var v = [Double(signal), writeFailed ? 1 : 0, nonFinite ? 1 : 0]
        comm.allreduceMax(&v)
        return JobStatus(signal: Int32(v[0]), writeFailed: v[1] > 0, nonFinite: v[2] > 0)
    }
}
