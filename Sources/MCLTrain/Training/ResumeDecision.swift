import Foundation
import MCLCore

/// Where a training job starts, decided by rank 0 before anything is written to the run
/// directory, so that a job never destroys an earlier run:
///
/// - no `--resume`: an empty directory starts fresh; one holding a run (config.yaml, checkpoints
///   or metrics) is refused unless `--fresh`, which moves that run aside (`RunDirectory.supersede`);
/// - `--resume auto`: the newest checkpoint that reads and passes its checksums (each one skipped
///   is logged); none at all starts fresh; only unusable ones is refused (never a silent start
///   over them);
/// - `--resume PATH`: that checkpoint.
///
/// A checkpoint (or, without one, the directory's config.yaml) is continued only with the
/// configuration it was trained with, up to the continuation keys (`RunConfig.isContinuationKey`:
/// more epochs, evaluation and job keys); any other changed key is refused, naming each key with
/// its old and new value. Allowed changes are logged.
public struct ResumeDecision {
    /// The checkpoint to load (state, weights), or nil to start fresh.
    public var checkpoint: (state: TrainState, weights: String)?
    /// Whether the earlier run in the directory is to be moved aside first (`--fresh`).
    public var supersede = false

    public static func decide(options: TrainOptions, run: TrainingRun, directory: RunDirectory, log: (String) -> Void) throws -> ResumeDecision {
        let previous = directory.previous
        let dir = directory.path
        guard let resume = options.resume else {
            if previous.isEmpty { return ResumeDecision() }
            guard options.fresh else {
                throw ConfigError("--out \(dir) already holds a run (\(previous.summary)): continue it with --resume auto, or start over with --fresh (which moves it to \(dir)/superseded-<time>/); nothing was written")
            }
            return ResumeDecision(checkpoint: nil, supersede: true)
        }
        if options.fresh { throw ConfigError("--fresh and --resume exclude each other") }
        let found: (state: TrainState, weights: String)?
        if resume == "auto" {
            found = Checkpoints.newestValid(runDir: dir, log: log)
            if found == nil && !previous.checkpoints.isEmpty {
                throw ConfigError("--resume auto: none of the \(previous.checkpoints.count) checkpoint(s) in \(Checkpoints.directory(dir)) is usable (see the lines above); refusing to start over them: give one with --resume PATH, or start over with --fresh (which keeps them under \(dir)/superseded-<time>/)")
            }
        } else {
            let stateFile = resume.hasSuffix(".safetensors") ? String(resume.dropLast(".safetensors".count)) + ".json" : resume
            found = try Checkpoints.read(stateFile: stateFile)
        }
        if let found {
            try checkContinuation(from: found.state.config ?? previous.configText, hash: found.state.configHash,
                                  what: "checkpoint \(found.weights)", run: run, log: log)
            let st = found.state
            guard st.step <= run.totalSteps else {
                throw ConfigError("--resume: the checkpoint is at step \(st.step), beyond this run's \(run.totalSteps) steps (train.epochs / train.max_steps); nothing was written")
            }
            guard st.epoch == st.step / run.stepsPerEpoch, st.stepInEpoch == st.step % run.stepsPerEpoch else {
                throw ConfigError("--resume: the checkpoint's step \(st.step) is step \(st.stepInEpoch) of epoch \(st.epoch + 1) but this run has \(run.stepsPerEpoch) steps per epoch (has data.train changed?); nothing was written")
            }
            if let old = previous.configText, resume != "auto" {
                // A checkpoint from elsewhere into a directory holding a run of another configuration.
                try checkContinuation(from: old, hash: nil, what: "\(dir)/config.yaml", run: run, log: { _ in })
            }
            return ResumeDecision(checkpoint: found)
        }
        if let old = previous.configText {
            try checkContinuation(from: old, hash: nil, what: "\(dir)/config.yaml (a run without checkpoints)", run: run, log: log)
        }
        log("resume auto: no checkpoint in \(Checkpoints.directory(dir)); starting fresh")
        return ResumeDecision()
    }

    /// Refuses to continue a run made with `oldText` under this run's configuration when a
    /// trajectory key differs; logs the continuation keys that differ. Without the old text (a
    /// checkpoint of mcl-dist 0.1 in a folder without config.yaml) the hashes are compared.
    static func checkContinuation(from oldText: String?, hash: String?, what: String, run: TrainingRun, log: (String) -> Void) throws {
        let config = run.config
        guard let oldText else {
            if let hash, hash != config.trainingHash {
                throw ConfigError("--resume: \(what) was made with another training configuration (hash \(hash), this one \(config.trainingHash)); nothing was written")
            }
            return
        }
        let changes = RunConfig.changes(from: RunConfig.flatten(yaml: oldText), to: config.flatValues)
        let refused = changes.filter { !RunConfig.isContinuationKey($0.key) }
        if !refused.isEmpty {
            throw ConfigError("--resume: \(what) was trained with another configuration; these keys differ: \(refused.map { "\($0)" }.joined(separator: "; ")). Continue with the run's own values, or start over with --fresh in this folder (the old run is kept) or in another --out; nothing was written")
        }
        if !changes.isEmpty {
            log("resume: continuing \(what) with changed keys: \(changes.map { "\($0)" }.joined(separator: "; "))")
            if changes.contains(where: { $0.key == "train.epochs" || $0.key == "train.max_steps" }) {
                log("resume: the cosine learning-rate schedule now spans \(run.totalSteps) steps")
            }
        }
    }
}
