import Foundation
import MCLCore
import MCLNet

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
}

/// Checkpoints: `DIR/checkpoints/step-XXXXXXXX.safetensors` (parameters and BN running statistics
/// under PyTorch's names, momentum buffers under `optimizer.momentum_buffer.<name>`) plus
/// `step-XXXXXXXX.json` (TrainState). Both are written atomically by rank 0, the JSON last, so a
/// checkpoint counts only once both are complete; older ones beyond `keep` are removed.
public enum Checkpoints {
    public static func directory(_ runDir: String) -> String { runDir + "/checkpoints" }

    public static func save(model: ResNetModel, optimizer: SGD, state: TrainState, runDir: String, keep: Int) throws -> String {
        let dir = directory(runDir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let stem = String(format: "step-%08d", state.step)
        var w = SafeTensorsWriter()
        w.metadata = ["format": "pt", "producer": "mcl-dist", "step": "\(state.step)", "arch": model.config.arch,
                      "width": "\(model.config.width)", "projector_hidden": "\(model.config.projectorHidden)",
                      "projection_dim": "\(model.config.projectionDim)"]
        model.store.addTensors(to: &w)
        for p in model.store.params {
            w.add("optimizer.momentum_buffer." + p.name, shape: p.shape,
                  floats: UnsafeBufferPointer(start: optimizer.momentumBuffer.ptr + p.offset, count: p.count))
        }
        var st = state
        st.weights = stem + ".safetensors"
        try w.write(to: dir + "/" + st.weights)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(st), to: dir + "/" + stem + ".json")
        prune(dir: dir, keep: keep)
        return dir + "/" + stem + ".safetensors"
    }

    static func prune(dir: String, keep: Int) {
        let states = list(dir: dir)
        if states.count <= keep { return }
        for old in states.dropLast(keep) {
            unlink(dir + "/" + old + ".json")
            unlink(dir + "/" + old + ".safetensors")
        }
    }

    /// Checkpoint stems with a JSON state, oldest first.
    public static func list(dir: String) -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasPrefix("step-") && $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The newest checkpoint whose state parses, whose weights open, and whose config hash matches.
    public static func newestValid(runDir: String, configHash: String, log: (String) -> Void) -> (state: TrainState, weights: String)? {
        let dir = directory(runDir)
        for stem in list(dir: dir).reversed() {
            do {
                let (st, w) = try read(stateFile: dir + "/" + stem + ".json")
                if st.configHash != configHash {
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

    public static func read(stateFile: String) throws -> (TrainState, String) {
        guard let data = FileManager.default.contents(atPath: stateFile) else { throw SafeTensorsError("\(stateFile): cannot read") }
        let st: TrainState
        do { st = try JSONDecoder().decode(TrainState.self, from: data) } catch { throw SafeTensorsError("\(stateFile): not a valid checkpoint state (\(error))") }
        let weights = URL(fileURLWithPath: stateFile).deletingLastPathComponent().path + "/" + st.weights
        _ = try SafeTensorsFile(path: weights)
        return (st, weights)
    }

    /// A fingerprint of a file's bytes (FNV-1a 64, hex), to check that every rank reads the same
    /// checkpoint.
    public static func fingerprint(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw SafeTensorsError("\(path): cannot read") }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        data.withUnsafeBytes { for b in $0 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        return String(format: "%016llx", h)
    }

    /// Loads weights, BN statistics and (when present) momentum buffers.
    public static func load(weights: String, model: ResNetModel, optimizer: SGD?) throws {
        let f = try SafeTensorsFile(path: weights)
        try model.store.load(from: f)
        if let optimizer {
            for p in model.store.params {
                let name = "optimizer.momentum_buffer." + p.name
                if f.has(name) { try f.read(name, shape: p.shape, into: optimizer.momentumBuffer.ptr + p.offset) }
            }
        }
    }
}
