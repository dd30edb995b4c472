import Foundation
import MCLCore
import MCLNet
import MCLEval

/// Where a run stands, saved next to the weights (JSON).
public struct TrainState: Codable, Sendable, Equatable {
    /// Steps completed (the next step to run).
    public var step: Int
    /// Epoch of the next step and its index within that epoch.
    public var epoch: Int
    public var stepInEpoch: Int
    public var totalSteps: Int
    public var optimizerSteps: Int
    public var seed: UInt64
    public var configHash: String
    public var worldSize: Int
    public var weights: String
    public var lastLoss: Double?
    public var createdAt: String
    /// The resolved configuration the run was trained with (config.yaml's text), so a resume can
    /// name the keys that differ. Absent in checkpoints of mcl-dist before 0.2.
    public var config: String?

    /// Checks the fields a corrupt or hand-edited state could get wrong; the error names the file.
    public func validate(file: String) throws {
        func bad(_ what: String) -> MCLError { MCLError("\(file): not a valid checkpoint state: \(what)") }
        guard step >= 0, epoch >= 0, stepInEpoch >= 0 else { throw bad("step \(step), epoch \(epoch), step_in_epoch \(stepInEpoch) must be >= 0") }
        guard totalSteps >= step else { throw bad("step \(step) is beyond total_steps \(totalSteps)") }
        guard optimizerSteps >= 0, worldSize >= 1 else { throw bad("optimizer_steps \(optimizerSteps), world_size \(worldSize)") }
        guard weights.hasSuffix(".safetensors"), !weights.contains("/"), !weights.hasPrefix(".") else {
            throw bad("'weights' must name a .safetensors file beside it, got '\(weights.prefix(200))'")
        }
        guard !configHash.isEmpty else { throw bad("config_hash is empty") }
    }
}

/// Checkpoints: `DIR/checkpoints/step-XXXXXXXX.safetensors` (parameters and BN running statistics
/// under PyTorch's names, momentum buffers under `optimizer.momentum_buffer.<name>`, a CRC-32 of
/// every tensor in the metadata) plus `step-XXXXXXXX.json` (TrainState). Both are written
/// atomically by rank 0 (temporary file, fsync, rename, fsync of the folder), the JSON last, so a
/// checkpoint counts only once both are complete; older ones of the same configuration beyond
/// `keep` are removed (a checkpoint of another configuration never is).
public enum Checkpoints {
    public static func directory(_ runDir: String) -> String { runDir + "/checkpoints" }

    public static func save(model: ResNetModel, optimizer: SGD, state: TrainState, runDir: String, keep: Int) throws -> String {
        let dir = directory(runDir)
        try AtomicFile.makeFolder(dir, for: "checkpoint folder")
        let stem = String(format: "step-%08d", state.step)
        var w = SafeTensorsWriter()
        w.metadata = ["format": "pt", "producer": "mcl-dist", "step": "\(state.step)", "arch": model.config.arch,
                      "width": "\(model.config.width)", "projector_hidden": "\(model.config.projectorHidden)",
                      "projection_dim": "\(model.config.projectionDim)"].merging(headMetadata(model.config)) { a, _ in a }
        model.store.addTensors(to: &w)
        for p in model.store.params {
            w.add("optimizer.momentum_buffer." + p.name, shape: p.shape,
                  floats: UnsafeBufferPointer(start: optimizer.momentumBuffer.ptr + p.offset, count: p.count))
        }
        var st = state
        st.weights = stem + ".safetensors"
        let weights = dir + "/" + st.weights
        try w.write(to: weights)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try AtomicFile.write(try enc.encode(st), to: dir + "/" + stem + ".json")
        } catch {
            // Without its state the weights are not a checkpoint: remove them so that no
            // half-written checkpoint is left; the previous one is untouched.
            if state.step > 0 { unlink(weights) }
            throw error
        }
        prune(dir: dir, keep: keep, configHash: state.configHash)
        return weights
    }

    /// Removes the oldest checkpoints of configuration `configHash` beyond `keep`.
    static func prune(dir: String, keep: Int, configHash: String) {
        let mine = list(dir: dir).filter { stem in
            guard let d = FileManager.default.contents(atPath: dir + "/" + stem + ".json"),
                  let st = try? JSONDecoder().decode(TrainState.self, from: d) else { return false }
            return st.configHash == configHash
        }
        if mine.count <= keep { return }
        for old in mine.dropLast(keep) {
            unlink(dir + "/" + old + ".json")
            unlink(dir + "/" + old + ".safetensors")
        }
    }

    /// Checkpoint stems with a JSON state, oldest first.
    public static func list(dir: String) -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasPrefix("step-") && $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The newest checkpoint whose state parses and whose weights open and pass their checksums;
    /// each one skipped is logged with the reason. `configHash` (when given) skips those of
    /// another configuration (evaluation's choice; training's resume compares keys instead).
    public static func newestValid(runDir: String, configHash: String? = nil, log: (String) -> Void) -> (state: TrainState, weights: String)? {
        let dir = directory(runDir)
        for stem in list(dir: dir).reversed() {
            do {
                let (st, w) = try read(stateFile: dir + "/" + stem + ".json")
                if let configHash, st.configHash != configHash {
                    log("skipping checkpoint \(stem): made with a different training configuration (hash \(st.configHash), now \(configHash))")
                    continue
                }
                return (st, w)
            } catch {
                log("skipping checkpoint \(stem): \(error)")
            }
        }
        return nil
    }

    /// Reads and checks a checkpoint's state and opens its weights (shapes, offsets, checksums).
    public static func read(stateFile: String) throws -> (TrainState, String) {
        guard let data = FileManager.default.contents(atPath: stateFile) else { throw SafeTensorsError("\(stateFile): cannot read") }
        let st: TrainState
        do { st = try JSONDecoder().decode(TrainState.self, from: data) } catch {
            throw SafeTensorsError("\(stateFile): not a valid checkpoint state (\(String("\(error)".prefix(300))))")
        }
        try st.validate(file: stateFile)
        let weights = URL(fileURLWithPath: stateFile).deletingLastPathComponent().path + "/" + st.weights
        _ = try SafeTensorsFile(path: weights)
        return (st, weights)
    }

    /// A fingerprint of a file's bytes (FNV-1a 64, hex), to check that every rank reads the same
    /// checkpoint.
    public static func fingerprint(_ path: String) throws -> String { try fingerprintFile(path) }

    /// Loads weights, BN statistics and (when present) momentum buffers; a tensor holding NaN or
    /// infinity is refused, naming it and the file.
    public static func load(weights: String, model: ResNetModel, optimizer: SGD?) throws {
        try load(try SafeTensorsFile(path: weights), model: model, optimizer: optimizer)
    }

    /// `load(weights:model:optimizer:)` from an opened (and so already checked) file.
    public static func load(_ f: SafeTensorsFile, model: ResNetModel, optimizer: SGD?) throws {
        let weights = f.path
        try model.store.load(from: f)
        if let bad = model.store.firstNonFinite() {
            throw SafeTensorsError("\(weights): tensor '\(bad)' holds NaN or infinity: the checkpoint is unusable")
        }
        if let optimizer {
            for p in model.store.params {
                let name = "optimizer.momentum_buffer." + p.name
                if f.has(name) {
                    try f.read(name, shape: p.shape, into: optimizer.momentumBuffer.ptr + p.offset)
                    if !allFinite(optimizer.momentumBuffer.ptr + p.offset, p.count) {
                        throw SafeTensorsError("\(weights): tensor '\(name)' holds NaN or infinity: the checkpoint is unusable")
                    }
                }
            }
        }
    }
}

/// What `mcl-dist checkpoint verify` found in a checkpoint.
public struct CheckpointSummary: Sendable {
    public var weights: String
    public var state: TrainState?
    public var model: ModelConfig
    public var tensors: Int
    public var checksums: Bool

    public var text: String {
        var s = "\(weights): ok: \(model.arch) width \(model.width), projector \(model.projectorHidden) -> \(model.projectionDim), "
        if model.classes > 0 { s += "classifier \(model.classes) classes, " }
        if model.rotationHead { s += "rotation head, " }
        s += "\(tensors) tensors, "
        s += checksums ? "every tensor's checksum verified, " : "no checksums (written before mcl-dist 0.2), "
        s += "all finite"
        if let st = state { s += "; step \(st.step) of \(st.totalSteps) (epoch \(st.epoch + 1)), \(st.worldSize) rank(s), config hash \(st.configHash)" }
        return s
    }
}

extension Checkpoints {
    /// Checks a checkpoint completely without training or evaluating: its state (when given the
    /// .json), the safetensors header and every tensor's checksum, the model its metadata names
    /// (every tensor present with its shape, via a model of that configuration), finiteness.
    public static func verify(path: String) throws -> CheckpointSummary {
        var state: TrainState? = nil
        var weights = path
        if path.hasSuffix(".json") { let (st, w) = try read(stateFile: path); state = st; weights = w }
        let f = try SafeTensorsFile(path: weights)
        func meta(_ k: String) throws -> Int {
            guard let s = f.metadata[k], let v = Int(s), v >= 1, v <= (k == "width" ? 1024 : 1 << 16) else {
                throw SafeTensorsError("\(weights): metadata '\(k)' is missing or not a size (\(f.metadata[k].map { String($0.prefix(40)) } ?? "absent")): not a checkpoint of mcl-dist train")
            }
            return v
        }
        guard let arch = f.metadata["arch"], ModelConfig.architectures[arch] != nil else {
            throw SafeTensorsError("\(weights): metadata 'arch' is missing or unknown: not a checkpoint of mcl-dist train")
        }
        var config = ModelConfig(arch: arch, width: try meta("width"), projectorHidden: try meta("projector_hidden"), projectionDim: try meta("projection_dim"))
        // The heads: from the metadata, or (checkpoints written before it named them) from the tensors.
        if f.metadata["classes"] != nil { config.classes = try meta("classes") }
        else if f.has("classifier.weight"), let shape = try? f.shape("classifier.weight"), shape.count == 2, shape[0] >= 2, shape[0] <= 1 << 16 {
            config.classes = shape[0]
        }
        config.rotationHead = f.metadata["rotation_head"] == "true" || f.has("rotation_head.weight")
        let model = try ResNetModel(config)
        // Weights exported without the optimizer state (`checkpoint weights`) have no momentum.
        let hasOptimizer = f.names.contains { $0.hasPrefix("optimizer.") }
        try load(weights: weights, model: model, optimizer: hasOptimizer ? SGD(count: model.store.paramCount) : nil)
        return CheckpointSummary(weights: weights, state: state, model: config, tensors: f.entries.count, checksums: f.hasChecksums)
    }

    /// `mcl-dist checkpoint weights`: the model's tensors of a checkpoint (parameters and running
    /// statistics, without the optimizer state) into a new safetensors file, with the model's
    /// metadata and the source named; the checkpoint is verified first, the file written
    /// atomically. `evaluate --checkpoint`, `train --init` and `detect` read the result.
    @discardableResult
    public static func exportWeights(from path: String, to out: String) throws -> CheckpointSummary {
        let summary = try verify(path: path)
        guard URL(fileURLWithPath: out).standardizedFileURL.path != URL(fileURLWithPath: summary.weights).standardizedFileURL.path else {
            throw ConfigError("--out \(out) is the checkpoint itself; write the weights to another file")
        }
        let f = try SafeTensorsFile(path: summary.weights)
        let model = try ResNetModel(summary.model)
        try model.store.load(from: f)
        var w = SafeTensorsWriter()
        w.metadata = ["format": "pt", "producer": "mcl-dist", "arch": summary.model.arch, "width": "\(summary.model.width)",
                      "projector_hidden": "\(summary.model.projectorHidden)", "projection_dim": "\(summary.model.projectionDim)",
                      "source": summary.weights].merging(headMetadata(summary.model)) { a, _ in a }
        if let step = f.metadata["step"] { w.metadata["step"] = step }
        model.store.addTensors(to: &w)
        try w.write(to: out)
        return summary
    }

    /// The heads in a checkpoint's metadata (absent for the contrastive models).
    static func headMetadata(_ m: ModelConfig) -> [String: String] {
        var d: [String: String] = [:]
        if m.classes > 0 { d["classes"] = "\(m.classes)" }
        if m.rotationHead { d["rotation_head"] = "true" }
        return d
    }
}
