import XCTest
import Foundation
import MCLCore
import MCLNet
@testable import MCLTrain

/// Checkpoints: round trip, newest-valid selection, pruning, and a failed write that leaves the
/// previous checkpoint intact.
final class CheckpointTests: XCTestCase {
    func runDir() -> String {
        let d = NSTemporaryDirectory() + "mcl-ckpt-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func state(_ step: Int, hash: String = "h") -> TrainState {
        TrainState(step: step, epoch: step / 10, stepInEpoch: step % 10, totalSteps: 100, optimizerSteps: step, seed: 1,
                   configHash: hash, worldSize: 1, weights: "", lastLoss: 1.0, createdAt: "now")
    }

    func testRoundTripPruneAndFailedWrite() throws {
        let dir = runDir()
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 4))
        model.initialise(seed: 1)
        let opt = SGD(count: model.store.paramCount)
        for i in 0..<opt.momentumBuffer.count { opt.momentumBuffer.ptr[i] = Float(i % 7) }
        for s in [10, 20, 30, 40] { _ = try Checkpoints.save(model: model, optimizer: opt, state: state(s), runDir: dir, keep: 3) }
        XCTAssertEqual(Checkpoints.list(dir: Checkpoints.directory(dir)), ["step-00000020", "step-00000030", "step-00000040"])
        let newest = try XCTUnwrap(Checkpoints.newestValid(runDir: dir, configHash: "h", log: { _ in }))
        XCTAssertEqual(newest.state.step, 40)
        XCTAssertNil(Checkpoints.newestValid(runDir: dir, configHash: "other", log: { _ in }))

        // Loading restores parameters and momentum exactly.
        let m2 = try ResNetModel(model.config)
        let o2 = SGD(count: m2.store.paramCount)
        try Checkpoints.load(weights: newest.weights, model: m2, optimizer: o2)
        XCTAssertEqual(m2.store.values.array, model.store.values.array)
        XCTAssertEqual(o2.momentumBuffer.array, opt.momentumBuffer.array)

        // A write that cannot complete (a directory blocks the final name) throws and leaves the
        // previous checkpoint as the newest valid one.
        let blocked = Checkpoints.directory(dir) + "/step-00000050.safetensors"
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)
        XCTAssertThrowsError(try Checkpoints.save(model: model, optimizer: opt, state: state(50), runDir: dir, keep: 3))
        XCTAssertEqual(Checkpoints.newestValid(runDir: dir, configHash: "h", log: { _ in })?.state.step, 40)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: Checkpoints.directory(dir)).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])

        // A truncated weights file is skipped in favour of the one before it.
        let w40 = Checkpoints.directory(dir) + "/step-00000040.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: w40))
        try data.prefix(100).write(to: URL(fileURLWithPath: w40))
        var logged: [String] = []
        XCTAssertEqual(Checkpoints.newestValid(runDir: dir, configHash: "h", log: { logged.append($0) })?.state.step, 30)
        XCTAssertTrue(logged.contains { $0.contains("step-00000040") && $0.contains("truncated") }, "\(logged)")
        try? FileManager.default.removeItem(atPath: dir)
    }

    func testConfigErrorsNameTheKey() throws {
        let base = "data: {train: x.mcld}\n"
        for (yaml, key) in [("train: {batch_size: -3}", "train.batch_size"), ("loss: {kind: nope}", "loss.kind"),
                            ("model: {arch: resnet50}", "model.arch"), ("eval: {sei_ways: [2]}", "eval.sei_ways"),
                            ("train: {epochs: many}", "train.epochs"), ("bogus: {a: 1}", "bogus"),
                            ("model: {widht: 8}", "model.widht"), ("data: {train: x.mcld, rotations: 3}", "data.rotations")] {
            XCTAssertThrowsError(try RunConfig.parse(yaml: yaml.hasPrefix("data:") ? yaml : base + yaml)) { e in
                XCTAssertTrue("\(e)".contains(key), "\(yaml): \(e)")
            }
        }
        let (c, text) = try RunConfig.parse(yaml: base + "train: {batch_size: 512}", overrides: ["loss.similarity_floor=none", "model.width=8"])
        XCTAssertEqual(c.baseLR, 0.6, accuracy: 1e-12)
        XCTAssertNil(c.loss.floor)
        XCTAssertEqual(c.model.width, 8)
        XCTAssertTrue(c.loss.useAux)
        // The resolved YAML parses back to the same configuration.
        let (c2, text2) = try RunConfig.parse(yaml: text)
        XCTAssertEqual(text, text2)
        XCTAssertEqual(c2.trainingHash, c.trainingHash)
    }
}

/// Configuration YAML a hostile or careless user can write: each is an error naming the key or
/// the problem, quoting at most ~200 characters of a value, never a trap or a runaway allocation.
final class ConfigLimitTests: XCTestCase {
    let base = "data: {train: x.mcld}\n"

    func expectError(_ yaml: String, mentions words: [String], maxLength: Int = 2000, line: UInt = #line) {
        XCTAssertThrowsError(try RunConfig.parse(yaml: yaml, source: "c.yaml"), line: line) { e in
            let m = "\(e)"
            for w in words { XCTAssertTrue(m.contains(w), "'\(m.prefix(300))' lacks '\(w)'", line: line) }
            XCTAssertLessThanOrEqual(m.utf8.count, maxLength, "message of \(m.utf8.count) bytes", line: line)
        }
    }

    func testDuplicateKeysAndSections() {
        expectError(base + "train: {lr: 0.1, seed: 3}\ntrain: {epochs: 2}\n", mentions: ["duplicate key 'train'"])
        expectError(base + "train:\n  lr: 0.1\n  lr: 0.2\n", mentions: ["duplicate key 'train.lr'", "line 4"])
    }

    func testAliasBombAndNesting() {
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for k in 1...9 { bomb += "b\(k): &b\(k) [" + Array(repeating: k == 1 ? "*a" : "*b\(k - 1)", count: 10).joined(separator: ", ") + "]\n" }
        expectError(bomb, mentions: ["100000 YAML nodes"])
        expectError(base + "x: " + String(repeating: "[", count: 5000), mentions: ["nested 5000 deep"])
        expectError(String(repeating: "#", count: (1 << 20) + 1), mentions: ["at most 1048576 bytes"])
    }

    func testValuesAreBoundedAndQuotedShort() {
        expectError(base + "model: {width: 100000}", mentions: ["model.width: expected an integer from 1 to 1024, got '100000'"])
        expectError(base + "train: {epochs: 9223372036854775807}", mentions: ["train.epochs", "1000000"])
        expectError(base + "train: {momentum: -5}", mentions: ["train.momentum"])
        expectError(base + "train: {momentum: 1}", mentions: ["train.momentum", "below 1"])
        expectError(base + "train: {weight_decay: -3}", mentions: ["train.weight_decay"])
        expectError(base + "eval: {ridge: -1}", mentions: ["eval.ridge"])
        expectError(base + "model: {arch: " + String(repeating: "r", count: 600_000) + "}", mentions: ["model.arch", "(600000 bytes)"], maxLength: 600)
        expectError(base + "train: {epochs: '" + String(repeating: "9", count: 500_000) + "'}", mentions: ["train.epochs"], maxLength: 600)
        XCTAssertThrowsError(try RunConfig.parse(yaml: base, overrides: ["train.seed=" + String(repeating: "x", count: 100_000)])) { e in
            XCTAssertLessThan("\(e)".utf8.count, 600, "\("\(e)".prefix(200))")
        }
    }

    /// Which keys may change when a run is continued, and the hash that ignores them.
    func testContinuationKeys() throws {
        let (a, _) = try RunConfig.parse(yaml: base + "train: {epochs: 2, lr: 0.1}")
        let (b, _) = try RunConfig.parse(yaml: "train: {epochs: 5, lr: 0.1, max_steps: 7}\neval: {ridge: 0.01}\ndata: {train: x.mcld, test: t.mcld}")
        let (c, _) = try RunConfig.parse(yaml: base + "train: {epochs: 2, lr: 0.2}")
        XCTAssertEqual(a.trainingHash, b.trainingHash)
        XCTAssertNotEqual(a.trainingHash, c.trainingHash)
        let changes = RunConfig.changes(from: a.flatValues, to: c.flatValues)
        XCTAssertEqual(changes.map { "\($0)" }, ["train.lr: 0.1 -> 0.2"])
        XCTAssertEqual(RunConfig.changes(from: a.flatValues, to: b.flatValues).filter { !RunConfig.isContinuationKey($0.key) }.count, 0)
    }
}
