import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
import MCLData

/// Everything a training job builds before its first step, without writing anything: the resolved
/// configuration, the sharded batch loader, the model (initialised from the seed,
/// then rank 0's copy broadcast) and the data-parallel trainer, and the step counts.
public struct TrainingRun {
    public let config: RunConfig
    public let resolvedYAML: String
    public let outDir: String
    public let loader: BatchLoader
    public let model: ResNetModel
    public let trainer: DistributedTrainer
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    /// Views of this rank per step (2 per (image, rotation) pair).
    public let viewsPerRank: Int
    /// `train.init` names a file that is missing while the run may resume: a fresh start fails.
    public let initPending: Bool
    let comm: Communicator

    public init(options: TrainOptions, comm: Communicator, log: (String) -> Void) throws {
        let (config, yaml) = try RunConfig.load(path: options.configPath, overrides: options.overrides)
        self.config = config
        resolvedYAML = yaml
        self.comm = comm
        outDir = options.outDir ?? "runs/" + URL(fileURLWithPath: options.configPath).deletingPathExtension().lastPathComponent
        Conv2d.deterministic = config.deterministic
        let train = try PackedDataset(path: config.dataTrain)
        try train.requireShape(ResNetModel.inputShape, for: "data.train")
        guard train.isLabelled else { throw ConfigError("data.train: \(config.dataTrain) has no class labels (an unlabelled folder); training needs labels") }
        if config.model.classes > 0 && config.model.classes != train.numClasses {
            throw ConfigError("model.classes: \(config.model.classes), but the training set \(config.dataTrain) has \(train.numClasses) classes")
        }
        var augment = config.augmentRecipe.options
        augment.flipVariant = config.flip
        loader = try BatchLoader(dataset: train, globalBatch: config.batchSize, rotations: config.rotations,
                                 rank: comm.rank, worldSize: comm.size, seed: config.seed, augment: augment,
                                 prefetch: 2, workers: max(1, Threads.count / 2), viewsPerPair: config.viewsPerPair)
        stepsPerEpoch = loader.stepsPerEpoch
        totalSteps = config.maxSteps > 0 ? min(config.epochs * stepsPerEpoch, config.maxSteps) : config.epochs * stepsPerEpoch
        viewsPerRank = config.viewsPerPair * config.batchSize / comm.size
        let need = Planner.trainingBytesPerRank(config, ranks: comm.size)
        let have = Double(ProcessInfo.processInfo.physicalMemory)
        guard need < 0.9 * have else {
            throw ConfigError(String(format: "model.width %d, train.batch_size %d: training needs about %.1f GB per rank (parameters, gradients and momentum, the activations of %d views, the similarity matrix) and this node has %.1f GB: lower model.width or train.batch_size, set train.micro_batch, or use more ranks",
                                     config.model.width, config.batchSize, need / 1e9, 2 * config.batchSize / comm.size, have / 1e9))
        }
        model = try ResNetModel(config.model)
        model.initialise(seed: config.seed)
        // train.init: read now, before anything is written, unless the run may continue from its
        // own checkpoint (--resume) and the file is gone; then only a fresh start needs it
        // (`initPending`, checked once the starting point is known).
        var pending = false
        if !config.initFrom.isEmpty {
            if options.resume == nil || FileManager.default.fileExists(atPath: config.initFrom) {
                let loaded = try InitialWeights.load(config.initFrom, into: model, projector: config.loss.kind.isContrastive)
                log("train.init: \(loaded) tensors from \(config.initFrom) (the heads start fresh)")
            } else {
                pending = true
            }
        }
        initPending = pending
        if config.evalAfterTrain && !config.dataTest.isEmpty {
            // A scorer the model cannot serve fails now, not after the training.
            try checkScorers(config.scorers, model: model, checkpoint: "", subject: "the model this run trains (loss.kind \(config.loss.kind.rawValue))")
        }
        trainer = DistributedTrainer(model: model, comm: comm, loss: config.loss,
                                     schedule: CosineSchedule(baseLR: config.baseLR, totalSteps: totalSteps),
                                     microBatch: config.microBatch, seed: config.seed, syncBN: config.syncBN,
                                     momentum: Float(config.momentum), weightDecay: Float(config.weightDecay))
        trainer.broadcastInitialState()
    }

    /// One training step on this rank's part of the global batch.
    public func step(_ batch: TrainBatch, step: Int) -> StepStats {
        precondition(batch.main.count == viewsPerRank)
        return batch.views.withUnsafeBufferPointer {
            trainer.step(views: $0.baseAddress!, localViews: viewsPerRank, main: batch.main, aux: batch.aux, step: step)
        }
    }

    /// Whether a checkpoint is due after `steps` completed steps: at the end, and at the end of
    /// every `checkpoint_every`-th epoch.
    public func checkpointDue(afterSteps steps: Int) -> Bool {
        steps == totalSteps ||
            (config.checkpointEvery > 0 && steps % stepsPerEpoch == 0 && (steps / stepsPerEpoch) % config.checkpointEvery == 0)
    }

    /// The run's header line, and the warning about per-rank BatchNorm with few images per rank.
    public func announce(log: (String) -> Void) {
        let c = config
        log("mcl-dist train: \(c.model.arch) width \(c.model.width), \(loader.dataset.count) images x \(c.rotations) rotations, batch \(c.batchSize) (\(c.viewsPerPair * c.batchSize) views), \(comm.size) rank(s) x \(Threads.count) thread(s), \(stepsPerEpoch) steps/epoch, \(totalSteps) steps, lr \(c.baseLR)")
        let imagesPerRank = c.batchSize / c.rotations / comm.size
        if comm.size > 1 && !c.syncBN && [.mcl, .spa, .supcon].contains(c.loss.kind) && imagesPerRank < 128 {
            log("mcl-dist: warning: model.sync_bn is false and each rank normalises only \(imagesPerRank) images: \(c.loss.kind.rawValue)'s positives often lie on other ranks, and per-rank BatchNorm statistics then slow its learning markedly (docs/results.md); consider model.sync_bn: true")
        }
    }
}
