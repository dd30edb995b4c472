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
                            ("model: {widht: 8}", "model.widht"), ("data: {rotations: 3}", "data.rotations")] {
            XCTAssertThrowsError(try RunConfig.parse(yaml: base + yaml)) { e in
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
