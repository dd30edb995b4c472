import XCTest
import MCLCore
import MCLNet
import MCLEval
@testable import MCLTrain

/// `train.init` (fine-tuning from a checkpoint's encoder), the scorer checks, and ODIN's step.
final class BaselineJobTests: XCTestCase {
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "mcl-baseline-\(getpid())-\(name)" }

    func write(_ model: ResNetModel, to path: String, skipping prefix: String? = nil) throws {
        var w = SafeTensorsWriter()
        var all = SafeTensorsWriter()
        model.store.addTensors(to: &all)
        if let prefix {
            for p in model.store.params where !p.name.hasPrefix(prefix) {
                w.add(p.name, shape: p.shape, floats: UnsafeBufferPointer(start: model.store.values.ptr + p.offset, count: p.count))
            }
        } else { w = all }
        try w.write(to: path)
    }

    func testInitLoadsTheEncoderAndKeepsFreshHeads() throws {
        let source = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5))
        source.initialise(seed: 1)
        let path = tmp("src.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try write(source, to: path)
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 3))
        model.initialise(seed: 2)
        let fresh = model.store.values.array
        let count = try InitialWeights.load(path, into: model, projector: false)
        XCTAssertEqual(count, source.store.params.filter { $0.name.hasPrefix("enc.") }.count + source.store.stats.count)
        for p in model.store.params {
            let got = Array(model.store.values.array[p.offset..<(p.offset + p.count)])
            if p.name.hasPrefix("enc.") {
                let q = try XCTUnwrap(source.store.param(p.name))
                XCTAssertEqual(got, Array(source.store.values.array[q.offset..<(q.offset + q.count)]), p.name)
            } else {
                XCTAssertEqual(got, Array(fresh[p.offset..<(p.offset + p.count)]), "\(p.name) keeps its fresh initialisation")
            }
        }
        // With the projector (joint fine-tuning) it is read too.
        _ = try InitialWeights.load(path, into: model, projector: true)
        let q = try XCTUnwrap(model.store.param("projector.0.weight")), s = try XCTUnwrap(source.store.param("projector.0.weight"))
        XCTAssertEqual(Array(model.store.values.array[q.offset..<(q.offset + q.count)]), Array(source.store.values.array[s.offset..<(s.offset + s.count)]))
    }

    func testInitRefusesAnotherArchitectureOrWidthNamingTensorAndFile() throws {
        let wide = try ResNetModel(ModelConfig(arch: "resnet18", width: 8, projectorHidden: 8, projectionDim: 5))
        let path = tmp("wide.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try write(wide, to: path)
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 10))
        XCTAssertThrowsError(try InitialWeights.load(path, into: model, projector: false)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("'enc.conv1.weight'") && m.contains(path) && m.contains("[8, 3, 3, 3]") && m.contains("width"), m)
        }
        let deep = try ResNetModel(ModelConfig(arch: "resnet34", width: 4, projectorHidden: 8, projectionDim: 5, classes: 10))
        let r18 = tmp("r18.safetensors")
        defer { try? FileManager.default.removeItem(atPath: r18) }
        try write(model, to: r18)
        XCTAssertThrowsError(try InitialWeights.load(r18, into: deep, projector: false)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("has no tensor 'enc.layer1.2.") && m.contains(r18), m)
        }
        XCTAssertThrowsError(try InitialWeights.load(tmp("missing.safetensors"), into: model, projector: false)) { e in
            XCTAssertTrue("\(e)".contains("train.init") && "\(e)".contains("missing.safetensors"), "\(e)")
        }
    }

    func testScorersNeedingAClassifierNameScorerAndCheckpoint() throws {
        let mcl = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5))
        for s in [Scorer.msp, .odin, .rotation] {
            XCTAssertThrowsError(try checkScorers([.sei, s], model: mcl, checkpoint: "runs/a/step-7.safetensors")) { e in
                XCTAssertTrue("\(e)".contains("'\(s.rawValue)'") && "\(e)".contains("runs/a/step-7.safetensors"), "\(e)")
            }
        }
        XCTAssertNoThrow(try checkScorers([.sei, .mahalanobis], model: mcl, checkpoint: "x"))
        let ce = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 3))
        XCTAssertNoThrow(try checkScorers([.msp, .odin, .mahalanobis], model: ce, checkpoint: "x"))
        XCTAssertThrowsError(try checkScorers([.rotation], model: ce, checkpoint: "runs/b.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("'rotation'") && "\(e)".contains("rotation head") && "\(e)".contains("runs/b.safetensors"), "\(e)")
        }
    }

    /// ODIN with epsilon = 0 is the log of the tempered maximum softmax probability; a small step
    /// against the gradient of -log S_y raises S_y, so the score of every image goes up.
    func testODINStep() throws {
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 4))
        model.initialise(seed: 4)
        var rng = SplitMix64(seed: 8)
        let n = 5
        let x = (0..<(n * 3072)).map { _ in rng.nextFloat() }
        for _ in 0..<2 { _ = x.withUnsafeBufferPointer { model.forward($0.baseAddress!, n: n, train: true, updateRunning: true) } }
        for T in [1.0, 1000.0] {
            let (s0, p0) = x.withUnsafeBufferPointer { odinScores(model: model, images: $0.baseAddress!, count: n, temperature: T, epsilon: 0) }
            x.withUnsafeBufferPointer { _ = model.forward($0.baseAddress!, n: n, train: false, updateRunning: false) }
            let logits = Array(UnsafeBufferPointer(start: model.logits!, count: n * 4))
            let (msp, pred) = maxSoftmaxScores(logits: logits, count: n, classes: 4, temperature: T)
            for i in 0..<n { XCTAssertEqual(s0[i], log(msp[i]), accuracy: 1e-9) }
            XCTAssertEqual(p0, pred)
            let (s1, _) = x.withUnsafeBufferPointer { odinScores(model: model, images: $0.baseAddress!, count: n, temperature: T, epsilon: 1e-3) }
            for i in 0..<n { XCTAssertGreaterThan(s1[i], s0[i], "T=\(T) image \(i)") }
        }
    }

    /// `checkpoint weights`: a CE-rotation checkpoint's model tensors without the optimizer state,
    /// the heads named in the metadata, the same values, readable like the checkpoint.
    func testExportWeightsDropsTheOptimizerState() throws {
        let dir = tmp("run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 4, classes: 3, rotationHead: true)
        let model = try ResNetModel(config)
        model.initialise(seed: 6)
        let opt = SGD(count: model.store.paramCount)
        let state = TrainState(step: 5, epoch: 0, stepInEpoch: 5, totalSteps: 10, optimizerSteps: 5, seed: 1,
                               configHash: "h", worldSize: 1, weights: "", lastLoss: 1, createdAt: "now")
        let ckpt = try Checkpoints.save(model: model, optimizer: opt, state: state, runDir: dir, keep: 2)
        let out = dir + "/weights.safetensors"
        let summary = try Checkpoints.exportWeights(from: ckpt, to: out)
        XCTAssertEqual(summary.model, config, "the heads come back from the checkpoint's metadata")
        let f = try SafeTensorsFile(path: out)
        XCTAssertFalse(f.names.contains { $0.hasPrefix("optimizer.") })
        XCTAssertEqual(f.names.count, model.store.params.count + model.store.stats.count)
        XCTAssertEqual(f.metadata["classes"], "3"); XCTAssertEqual(f.metadata["rotation_head"], "true")
        let back = try ResNetModel(config)
        try Checkpoints.load(weights: out, model: back, optimizer: nil)
        XCTAssertEqual(back.store.values.array, model.store.values.array)
        XCTAssertEqual(back.store.state.array, model.store.state.array)
        XCTAssertTrue(try Checkpoints.verify(path: out).text.contains("classifier 3 classes, rotation head"))
    }
}
