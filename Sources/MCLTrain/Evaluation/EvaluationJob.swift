import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// An evaluation as a job: from a run configuration (and a checkpoint, for `mcl-dist evaluate`)
// to the report and files in a directory. `TrainJob` ends with the same call on its model.

extension EvalOptions {
    /// The options of a run configuration's `eval` section (and R from `data.rotations`).
    public init(config: RunConfig) {
        self.init(seiWays: config.seiWays, aggregations: config.aggregations, feature: config.feature,
                  rotations: config.rotations, ridge: config.ridge,
                  trainLimit: config.evalTrainLimit > 0 ? config.evalTrainLimit : nil,
                  testLimit: config.evalTestLimit > 0 ? config.evalTestLimit : nil)
        calibrationFraction = config.calibrationFraction
        targetTPR = config.targetTPR
        scorers = config.scorers
        odinTemperature = config.odinTemperature
        odinEpsilon = config.odinEpsilon
    }
}

/// Evaluates `model` on the data sets of `config` over `comm` and writes the report, figures and
/// score files to `outDir` (created by rank 0). Returns the report on rank 0, nil elsewhere.
public func evaluateRun(model: ResNetModel, config: RunConfig, configText: String, checkpoint: String,
                        outDir: String, comm: Communicator, log: (String) -> Void) throws -> EvalReport? {
    guard !config.dataTest.isEmpty else { throw ConfigError("data.test: missing (set it in the config or pass --test)") }
    let train = try PackedDataset(path: config.dataTrain)
    let test = try PackedDataset(path: config.dataTest)
    let ood = try config.dataOOD.map { (name: $0.name, data: try PackedDataset(path: $0.path)) }
    try train.requireShape(ResNetModel.inputShape, for: "data.train")
    try test.requireShape(ResNetModel.inputShape, for: "data.test")
    for o in ood { try o.data.requireShape(ResNetModel.inputShape, for: "data.ood.\(o.name)") }
    if comm.isRoot { try AtomicFile.makeFolder(outDir, for: "--out") }
    comm.watch(phase: "evaluation", timeout: StallDeadline(configured: config.stallTimeout).evaluation)
    return try runEvaluation(model: model, comm: comm, train: train, test: test, ood: ood, options: EvalOptions(config: config),
                             outDir: outDir, checkpoint: checkpoint, configText: configText, log: log)
}

/// What `mcl-dist evaluate` was asked: a configuration with overrides, a checkpoint, an output
/// directory, and optionally other data sets than the configuration's.
public struct EvaluateOptions: Sendable {
    public var configPath: String
    public var overrides: [String] = []
    public var checkpoint: String
    public var outDir: String
    /// OOD sets (name, path) replacing `data.ood` when not empty.
    public var ood: [(name: String, path: String)] = []

    public init(configPath: String, checkpoint: String, outDir: String) {
        self.configPath = configPath; self.checkpoint = checkpoint; self.outDir = outDir
    }
}

/// `mcl-dist evaluate`: loads the configuration and the checkpoint's weights into its model, then
/// `evaluateRun`. A checkpoint of another model fails naming the file and the tensor.
public func runEvaluateJob(_ options: EvaluateOptions, comm: Communicator, log: (String) -> Void) throws -> EvalReport? {
    var (config, yaml) = try RunConfig.load(path: options.configPath, overrides: options.overrides)
    if !options.ood.isEmpty { config.dataOOD = options.ood }
    let model = try ResNetModel(config.model)
    let file = try SafeTensorsFile(path: options.checkpoint)   // a damaged file is reported as such
    do { try model.store.load(from: file) }
    catch {
        let m = config.model
        throw ConfigError("checkpoint \(options.checkpoint) does not match model \(m.arch) width \(m.width) / projector \(m.projectorHidden) -> \(m.projectionDim): \(error)")
    }
    if let bad = model.store.firstNonFinite() {
        throw ConfigError("\(options.checkpoint): tensor '\(bad)' holds NaN or infinity: the checkpoint is unusable")
    }
    return try evaluateRun(model: model, config: config, configText: yaml, checkpoint: options.checkpoint,
                           outDir: options.outDir, comm: comm, log: log)
}
