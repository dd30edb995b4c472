import Foundation
import Yams
import MCLCore
import MCLNet
import MCLObjective
import MCLData
import MCLEval

/// A configuration error: the message names the key (e.g. `train.batch_size`) or the file.
public typealias ConfigError = MCLError

/// The resolved run configuration (YAML, see docs/user-guide.md for every key).
public struct RunConfig: Sendable {
    public var model = ModelConfig(arch: "resnet18", width: 64, projectorHidden: 2048, projectionDim: 128)
    public var syncBN = false
    public var dataTrain = ""
    public var dataTest = ""
    public var dataOOD: [(name: String, path: String)] = []
    public var rotations = 4
    public var flip: FlipVariant = .official
    /// `data.augment`: nil = by objective (the standard CIFAR crop + flip for `ce` and
    /// `ce-rotation`, the SimCLR views for the others).
    public var augment: AugmentRecipe? = nil
    /// `loss.rotation_labels: false` trains on the R rotated copies without letting the rotation
    /// enter the masks (the paper's "MCL + DA", Table 5).
    public var rotationLabels = true
    /// `train.init`: a checkpoint whose encoder (and projector) weights start the run (fine-tuning).
    public var initFrom = ""
    public var loss = LossConfig()
    public var batchSize = 1024
    public var epochs = 1
    public var maxSteps = 0
    public var lr: Double? = nil
    public var seed: UInt64 = 0
    public var microBatch = 0
    public var checkpointEvery = 1
    public var keepCheckpoints = 3
    public var deterministic = false
    public var momentum = 0.9
    public var weightDecay = 1e-6
    public var seiWays = [1, 4, 8]
    /// The post-hoc scorers of the evaluation (`sei` = the class-conditional Gaussians + SEI).
    public var scorers: [Scorer] = [.sei]
    public var odinTemperature = 1000.0
    public var odinEpsilon = 0.0014
    public var aggregations: [Aggregation] = Aggregation.allCases
    public var feature: EvalFeature = .projection
    public var evalAfterTrain = true
    public var ridge = 1e-6
    public var evalTrainLimit = 0
    public var evalTestLimit = 0
    /// Training images held out of the Gaussians' fit to set the detector's threshold.
    public var calibrationFraction = 0.1
    public var targetTPR = 0.95
    /// Seconds a collective may wait for the other ranks before the job is ended; 0 = adaptive
    /// (`StallDeadline`). Not part of the training hash: changing it never blocks a resume.
    public var stallTimeout = 0.0

    public init() {}

    /// The augmentation recipe the training views use (`data.augment`, or the objective's).
    public var augmentRecipe: AugmentRecipe {
        augment ?? ((loss.kind == .ce || loss.kind == .ceRotation) ? .cropFlip : .simclr)
    }

    /// Augmented views per (image, rotation) pair: 2 for an objective with a contrastive term.
    public var viewsPerPair: Int { loss.kind.isContrastive ? 2 : 1 }

    /// lr = 0.3 * batch / 256 unless set (SPEC 6; the batch counts (image, rotation) pairs).
    public var baseLR: Double { lr ?? 0.3 * Double(batchSize) / 256 }

    static let schema: [String: [String]] = [
        "model": ["arch", "width", "projector_hidden", "projection_dim", "sync_bn", "classes"],
        "data": ["train", "test", "ood", "rotations", "flip", "augment"],
        "loss": ["kind", "spa", "tau", "alpha", "beta", "spa_weight", "similarity_floor", "rotation_labels",
                 "rotation_weight", "simclr_weight"],
        "train": ["batch_size", "epochs", "max_steps", "lr", "seed", "micro_batch", "checkpoint_every",
                  "keep_checkpoints", "deterministic", "momentum", "weight_decay", "init"],
        "eval": ["sei_ways", "aggregations", "feature", "after_train", "ridge", "train_limit", "test_limit",
                 "calibration_fraction", "target_tpr", "scorers", "odin_temperature", "odin_epsilon"],
        "job": ["stall_timeout"],
    ]

    /// Every key as `section.key`.
    public static var allKeys: [String] { schema.keys.sorted().flatMap { s in schema[s]!.map { "\(s).\($0)" } } }

    /// Reads a YAML file, applies `--set key=value` overrides, validates every key and value.
    /// Relative data paths are relative to the working directory (where the job is started).
    public static func load(path: String, overrides: [String] = []) throws -> (RunConfig, String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("\(path): cannot read the config file")
        }
        return try parse(yaml: text, source: path, overrides: overrides, baseDir: nil)
    }

    public static func parse(yaml: String, source: String = "<config>", overrides: [String] = [], baseDir: String? = nil) throws -> (RunConfig, String) {
        try ConfigYAMLLimits.check(yaml, source: source)
        let loaded: Any?
        do { loaded = try Yams.load(yaml: yaml) } catch { throw ConfigError("\(source): invalid YAML: \(ConfigYAMLLimits.quote(error, limit: 400))") }
        var root = (loaded as? [String: Any]) ?? [:]
        if loaded != nil && !(loaded is [String: Any]) { throw ConfigError("\(source): the top level must be a mapping of sections") }
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { throw ConfigError("--set '\(ConfigYAMLLimits.quote(o))': expected key=value, e.g. train.epochs=5") }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            let parts = key.split(separator: ".").map(String.init)
            guard parts.count == 2, let keys = schema[parts[0]], keys.contains(parts[1]) else {
                throw ConfigError("--set \(ConfigYAMLLimits.quote(key, limit: 100)): unknown key (known: \(allKeys.joined(separator: ", ")))")
            }
            try ConfigYAMLLimits.check(raw, source: "--set \(key)")
            let value = (try? Yams.load(yaml: raw)) ?? raw
            var section = (root[parts[0]] as? [String: Any]) ?? [:]
            section[parts[1]] = value ?? raw
            root[parts[0]] = section
        }
        var c = RunConfig()
        for (sectionName, sectionValue) in root {
            guard let keys = schema[sectionName] else {
                throw ConfigError("\(source): unknown section '\(ConfigYAMLLimits.quote(sectionName, limit: 100))' (known: \(schema.keys.sorted().joined(separator: ", ")))")
            }
            guard let section = sectionValue as? [String: Any] else {
                throw ConfigError("\(source): '\(sectionName)' must be a mapping")
            }
            for (k, v) in section {
                let key = "\(sectionName).\(k)"
                guard keys.contains(k) else { throw ConfigError("\(source): unknown key '\(ConfigYAMLLimits.quote(key, limit: 100))' (known in \(sectionName): \(keys.joined(separator: ", ")))") }
                try c.set(key, v, baseDir: baseDir)
            }
        }
        try c.validate()
        return (c, c.yaml())
    }

    /// The largest value each integer key takes: what memory, Int arithmetic and any real run
    /// allow (a width of 1024 is 16x the paper's largest model; 2^20 images per batch).
    static let intLimits: [String: Int] = [
        "model.width": 1024, "model.classes": 1 << 16, "model.projector_hidden": 1 << 16, "model.projection_dim": 1 << 16,
        "data.rotations": 4, "train.batch_size": 1 << 20, "train.epochs": 1_000_000, "train.max_steps": 1 << 40,
        "train.seed": Int.max, "train.micro_batch": 1 << 20, "train.checkpoint_every": 1_000_000,
        "train.keep_checkpoints": 10_000, "eval.sei_ways": 8, "eval.train_limit": 1 << 40, "eval.test_limit": 1 << 40,
    ]

    static func int(_ key: String, _ v: Any, min lo: Int = 0) throws -> Int {
        let hi = intLimits[key] ?? Int.max
        if let i = v as? Int, i >= lo, i <= hi { return i }
        throw ConfigError("\(key): expected an integer from \(lo) to \(hi), got '\(ConfigYAMLLimits.quote(v))'")
    }

    /// A finite number within `range` (the message states the range).
    static func double(_ key: String, _ v: Any, positive: Bool = false, in range: ClosedRange<Double>? = nil, below: Double? = nil) throws -> Double {
        let d: Double? = (v as? Double) ?? (v as? Int).map(Double.init)
        guard let d, d.isFinite, !positive || d > 0, range.map({ $0.contains(d) }) ?? true, below.map({ d < $0 }) ?? true else {
            var want = positive ? "a positive number" : "a number"
            if let range { want = "a number from \(range.lowerBound) to \(range.upperBound)" }
            if let below { want += " below \(below)" }
            throw ConfigError("\(key): expected \(want), got '\(ConfigYAMLLimits.quote(v))'")
        }
        return d
    }

    static func bool(_ key: String, _ v: Any) throws -> Bool {
        if let b = v as? Bool { return b }
        throw ConfigError("\(key): expected true or false, got '\(ConfigYAMLLimits.quote(v))'")
    }

    static func string(_ key: String, _ v: Any) throws -> String {
        if let s = v as? String { return s }
        throw ConfigError("\(key): expected a string, got '\(ConfigYAMLLimits.quote(v))'")
    }

    static func choice<T: RawRepresentable>(_ key: String, _ v: Any, _ all: [T]) throws -> T where T.RawValue == String {
        let s = try string(key, v)
        if let t = T(rawValue: s) { return t }
        throw ConfigError("\(key): '\(ConfigYAMLLimits.quote(s))' is not one of \(all.map { $0.rawValue }.joined(separator: ", "))")
    }

    static func path(_ s: String, _ baseDir: String?) -> String {
        if s.isEmpty || s.hasPrefix("/") || baseDir == nil { return s }
        return baseDir! + "/" + s
    }

    mutating func set(_ key: String, _ v: Any, baseDir: String?) throws {
        switch key {
        case "model.arch":
            let s = try RunConfig.string(key, v)
            guard ModelConfig.architectures[s] != nil else { throw ConfigError("model.arch: '\(ConfigYAMLLimits.quote(s))' is not one of resnet18, resnet34") }
            model.arch = s
        case "model.width": model.width = try RunConfig.int(key, v, min: 1)
        case "model.projector_hidden": model.projectorHidden = try RunConfig.int(key, v, min: 1)
        case "model.projection_dim": model.projectionDim = try RunConfig.int(key, v, min: 1)
        case "model.sync_bn": syncBN = try RunConfig.bool(key, v)
        case "model.classes":
            let k = try RunConfig.int(key, v)
            guard k != 1 else { throw ConfigError("model.classes: expected 0 (no classifier) or at least 2, got 1") }
            model.classes = k
        case "data.augment":
            let s = try RunConfig.string(key, v)
            if s == "auto" { augment = nil } else { augment = try RunConfig.choice(key, v, AugmentRecipe.allCases) }
        case "loss.rotation_labels": rotationLabels = try RunConfig.bool(key, v)
        case "loss.rotation_weight": loss.rotationWeight = try RunConfig.double(key, v, in: 0...1e6)
        case "loss.simclr_weight": loss.simclrWeight = try RunConfig.double(key, v, in: 0...1e6)
        case "train.init": initFrom = v is NSNull ? "" : RunConfig.path(try RunConfig.string(key, v), baseDir)
        case "eval.scorers":
            let list: [Any] = (v as? [Any]) ?? [v]
            let chosen = try list.map { try RunConfig.choice(key, $0, Scorer.allCases) }
            guard !chosen.isEmpty else { throw ConfigError("eval.scorers: empty list (known: \(Scorer.allCases.map(\.rawValue).joined(separator: ", ")))") }
            scorers = Scorer.allCases.filter { chosen.contains($0) }
        case "eval.odin_temperature": odinTemperature = try RunConfig.double(key, v, positive: true)
        case "eval.odin_epsilon": odinEpsilon = try RunConfig.double(key, v, in: 0...1)
        case "data.train": dataTrain = v is NSNull ? "" : RunConfig.path(try RunConfig.string(key, v), baseDir)
        case "data.test": dataTest = v is NSNull ? "" : RunConfig.path(try RunConfig.string(key, v), baseDir)
        case "data.ood":
            if v is NSNull { dataOOD = []; return }
            guard let m = v as? [String: Any] else { throw ConfigError("data.ood: expected a mapping name: path") }
            dataOOD = try m.keys.sorted().map { ($0, RunConfig.path(try RunConfig.string("data.ood.\($0)", m[$0]!), baseDir)) }
        case "data.rotations":
            let r = try RunConfig.int(key, v, min: 1)
            guard r == 1 || r == 4 else { throw ConfigError("data.rotations: expected 1 (no auxiliary task) or 4, got \(r)") }
            rotations = r
        case "data.flip": flip = try RunConfig.choice(key, v, FlipVariant.allCases)
        case "loss.kind": loss.kind = try RunConfig.choice(key, v, LossKind.allCases)
        case "loss.spa": loss.spa = try RunConfig.choice(key, v, SPAMode.allCases)
        case "loss.tau": loss.tau = try RunConfig.double(key, v, positive: true)
        case "loss.alpha": loss.alpha = try RunConfig.double(key, v)
        case "loss.beta": loss.beta = try RunConfig.double(key, v)
        case "loss.spa_weight": loss.spaWeight = try RunConfig.double(key, v)
        case "loss.similarity_floor":
            if let s = v as? String, s == "none" { loss.floor = nil } else if v is NSNull { loss.floor = nil } else { loss.floor = try RunConfig.double(key, v) }
        case "train.batch_size": batchSize = try RunConfig.int(key, v, min: 1)
        case "train.epochs": epochs = try RunConfig.int(key, v, min: 1)
        case "train.max_steps": maxSteps = try RunConfig.int(key, v, min: 0)
        case "train.lr":
            if v is NSNull { lr = nil } else if let s = v as? String, s == "auto" { lr = nil } else { lr = try RunConfig.double(key, v, positive: true) }
        case "train.seed": seed = UInt64(try RunConfig.int(key, v, min: 0))
        case "train.micro_batch": microBatch = try RunConfig.int(key, v, min: 0)
        case "train.checkpoint_every": checkpointEvery = try RunConfig.int(key, v, min: 0)
        case "train.keep_checkpoints": keepCheckpoints = try RunConfig.int(key, v, min: 1)
        case "train.deterministic": deterministic = try RunConfig.bool(key, v)
        case "train.momentum": momentum = try RunConfig.double(key, v, in: 0...1, below: 1)
        case "train.weight_decay": weightDecay = try RunConfig.double(key, v, in: 0...1)
        case "eval.sei_ways":
            let list: [Any] = (v as? [Any]) ?? [v]
            let ways = try list.map { try RunConfig.int(key, $0, min: 1) }
            guard !ways.isEmpty, ways.allSatisfy({ [1, 4, 8].contains($0) }) else { throw ConfigError("eval.sei_ways: expected a list drawn from 1, 4, 8, got '\(ConfigYAMLLimits.quote(v))'") }
            seiWays = Array(Set(ways)).sorted()
        case "eval.aggregations":
            let list: [Any] = (v as? [Any]) ?? [v]
            aggregations = try list.map { try RunConfig.choice(key, $0, Aggregation.allCases) }
            guard !aggregations.isEmpty else { throw ConfigError("eval.aggregations: empty list") }
        case "eval.feature": feature = try RunConfig.choice(key, v, EvalFeature.allCases)
        case "eval.after_train": evalAfterTrain = try RunConfig.bool(key, v)
        case "eval.ridge": ridge = try RunConfig.double(key, v, in: 0...1e6)
        case "eval.train_limit": evalTrainLimit = try RunConfig.int(key, v)
        case "eval.test_limit": evalTestLimit = try RunConfig.int(key, v)
        case "eval.calibration_fraction": calibrationFraction = try RunConfig.double(key, v, in: 0...0.5)
        case "eval.target_tpr": targetTPR = try RunConfig.double(key, v, positive: true, below: 1)
        case "job.stall_timeout": stallTimeout = try RunConfig.double(key, v)
        default: throw ConfigError("unknown key '\(key)'")
        }
    }

    public mutating func validate() throws {
        loss.useAux = rotations > 1 && rotationLabels
        model.rotationHead = loss.kind == .ceRotation
        if loss.kind.isSupervised && model.classes < 2 {
            throw ConfigError("model.classes: loss.kind \(loss.kind.rawValue) trains a classifier; set model.classes to the number of classes of data.train (e.g. 10 for CIFAR-10)")
        }
        if loss.kind == .ceRotation && rotations != 4 {
            throw ConfigError("data.rotations: loss.kind ce-rotation predicts 4 rotations; set data.rotations: 4, got \(rotations)")
        }
        if model.classes > 0 && !loss.kind.isSupervised {
            throw ConfigError("model.classes: \(model.classes), but loss.kind \(loss.kind.rawValue) trains no classifier (only ce, ce-rotation and ce-simclr do); set model.classes: 0")
        }
        if (loss.kind == .ce || loss.kind == .ceSimCLR) && rotations != 1 {
            throw ConfigError("data.rotations: loss.kind \(loss.kind.rawValue) is trained on unrotated images; set data.rotations: 1 (ce-rotation has the rotation task), got \(rotations)")
        }
        if (loss.kind == .ce || loss.kind == .ceRotation) && feature == .projection {
            throw ConfigError("eval.feature: projection, but loss.kind \(loss.kind.rawValue) does not train the projector; set eval.feature: backbone")
        }
        if batchSize % rotations != 0 {
            throw ConfigError("train.batch_size: \(batchSize) is not divisible by data.rotations = \(rotations) (the batch counts (image, rotation) pairs)")
        }
        if dataTrain.isEmpty { throw ConfigError("data.train: missing (a packed file from `mcl-dist data prepare`)") }
    }

    /// The resolved configuration as YAML (written to DIR/config.yaml; hashed into checkpoints),
    /// emitted by Yams from a document in a fixed key order: paths with ": " or "#" come out
    /// quoted and parse back to the same values; lists in flow style; an empty path as "".
    public func yaml() -> String {
        func scalar(_ s: String) -> Node { .scalar(.init(s)) }
        func path(_ s: String) -> Node { s.isEmpty ? .scalar(.init("", .implicit, .doubleQuoted)) : scalar(s) }
        func number(_ d: Double) -> Node { scalar(String(d)) }
        func map(_ pairs: [(String, Node)], flow: Bool = false) -> Node {
            .mapping(.init(pairs.map { (scalar($0.0), $0.1) }, .implicit, flow ? .flow : .block))
        }
        func list(_ items: [String]) -> Node { .sequence(.init(items.map(scalar), .implicit, .flow)) }
        let doc = map([
            ("model", map([("arch", scalar(model.arch)), ("width", scalar("\(model.width)")),
                           ("projector_hidden", scalar("\(model.projectorHidden)")),
                           ("projection_dim", scalar("\(model.projectionDim)")), ("sync_bn", scalar("\(syncBN)"))]
                          + (model.classes > 0 ? [("classes", scalar("\(model.classes)"))] : []))),
            ("data", map([("train", path(dataTrain)), ("test", path(dataTest)),
                          ("ood", map(dataOOD.map { ($0.name, path($0.path)) }, flow: dataOOD.isEmpty)),
                          ("rotations", scalar("\(rotations)")), ("flip", scalar(flip.rawValue))]
                          + (augment.map { [("augment", scalar($0.rawValue))] } ?? []))),
            ("loss", map([("kind", scalar(loss.kind.rawValue)), ("spa", scalar(loss.spa.rawValue)),
                          ("tau", number(loss.tau)), ("alpha", number(loss.alpha)), ("beta", number(loss.beta)),
                          ("spa_weight", number(loss.spaWeight)),
                          ("similarity_floor", loss.floor.map(number) ?? scalar("none"))]
                          + (rotationLabels ? [] : [("rotation_labels", scalar("false"))])
                          + (loss.kind == .ceRotation ? [("rotation_weight", number(loss.rotationWeight))] : [])
                          + (loss.kind == .ceSimCLR ? [("simclr_weight", number(loss.simclrWeight))] : []))),
            ("train", map([("batch_size", scalar("\(batchSize)")), ("epochs", scalar("\(epochs)")),
                           ("max_steps", scalar("\(maxSteps)")), ("lr", number(baseLR)), ("seed", scalar("\(seed)")),
                           ("micro_batch", scalar("\(microBatch)")), ("checkpoint_every", scalar("\(checkpointEvery)")),
                           ("keep_checkpoints", scalar("\(keepCheckpoints)")), ("deterministic", scalar("\(deterministic)")),
                           ("momentum", number(momentum)), ("weight_decay", number(weightDecay))]
                          + (initFrom.isEmpty ? [] : [("init", path(initFrom))]))),
            ("eval", map([("sei_ways", list(seiWays.map(String.init))), ("aggregations", list(aggregations.map(\.rawValue))),
                          ("feature", scalar(feature.rawValue)), ("after_train", scalar("\(evalAfterTrain)")),
                          ("ridge", number(ridge)), ("train_limit", scalar("\(evalTrainLimit)")),
                          ("test_limit", scalar("\(evalTestLimit)")),
                          ("calibration_fraction", number(calibrationFraction)), ("target_tpr", number(targetTPR))]
                          + (scorers == [.sei] ? [] : [("scorers", list(scorers.map(\.rawValue)))])
                          + (scorers.contains(.odin) ? [("odin_temperature", number(odinTemperature)),
                                                        ("odin_epsilon", number(odinEpsilon))] : []))),
            ("job", map([("stall_timeout", number(stallTimeout))])),
        ])
        // Serialising a document built here from strings cannot fail.
        return try! Yams.serialize(node: doc, indent: 2, width: -1)
    }
}

/// `data.augment`: how training views are drawn.
public enum AugmentRecipe: String, Sendable, CaseIterable {
    /// SimCLR's CIFAR views (SPEC 7): resized crop, flip, colour jitter, grayscale.
    case simclr
    /// The standard supervised CIFAR recipe: random crop with 4-pixel padding, horizontal flip.
    case cropFlip = "crop-flip"

    public var options: AugmentOptions { self == .simclr ? .standard : .cifarStandard }
}

/// `eval.scorers`: what the evaluation scores test images with.
public enum Scorer: String, Sendable, CaseIterable {
    /// Class-conditional Gaussians (class x rotation) and Self-Ensemble Inference (SPEC 8-9).
    case sei
    /// Maximum softmax probability of the classifier (Hendrycks & Gimpel 2016, the "Baseline").
    case msp
    /// ODIN (Liang et al. 2017): temperature-scaled softmax after an input perturbation.
    case odin
    /// Class means and one tied covariance on the encoder feature (Lee et al. 2018), score =
    /// minus the smallest squared Mahalanobis distance.
    case mahalanobis
    /// The auxiliary-rotation score (Hendrycks et al. 2019): KL(uniform || p(y|x)) minus the mean
    /// rotation-head cross-entropy over the 4 rotations.
    case rotation

    /// Whether the scorer reads the classifier (and so needs a model with one).
    public var needsClassifier: Bool { self == .msp || self == .odin || self == .rotation }
}
