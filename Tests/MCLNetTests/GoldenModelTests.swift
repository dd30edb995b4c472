import XCTest
import MCLCore
@testable import MCLNet

/// Golden tests against PyTorch: every `model-*` file and `optim-sgd-nesterov-cosine`.
final class GoldenModelTests: XCTestCase {
    /// Three engines on every case: the default (Winograd for 3x3 stride-1 convolutions with at
    /// least `Winograd.minChannels` inputs, which the width-8 golden models do not reach), Winograd on
    /// every stride-1 3x3 layer with 8 or more inputs, and the deterministic im2col path.
    func testGoldenModels() throws {
        let savedMin = Winograd.minChannels
        defer { Conv2d.deterministic = false; Winograd.minChannels = savedMin }
        for (det, minChannels, label) in [(false, savedMin, ""), (false, 8, " (winograd)"), (true, savedMin, " (deterministic)")] {
            Conv2d.deterministic = det
            Winograd.minChannels = minChannels
            try goldenModels(label: label)
        }
    }

    func goldenModels(label: String) throws {
        let cases = Golden.cases(prefix: "model-")
        XCTAssertFalse(cases.isEmpty, "no model-* golden files in \(Golden.directory)")
        var failures: [String] = []
        for name in cases {
            do {
                let err = try checkModel(name)
                if err.worst <= 1e-3 { Golden.report(name + label, maxRelErr: err.worst) }
                else { Golden.reportFailure(name + label, err.what); failures.append(name) }
            } catch {
                Golden.reportFailure(name, "\(error)"); failures.append(name)
            }
        }
        XCTAssertTrue(failures.isEmpty, "golden failures: \(failures)")
    }

    func checkModel(_ name: String) throws -> (worst: Double, what: String) {
        let f = try Golden.open(name)
        let md = f.metadata
        let cfg = ModelConfig(arch: md["arch"] ?? "resnet18", width: Int(md["width"] ?? "") ?? 8,
                              projectorHidden: Int(md["projector_hidden"] ?? "") ?? 32,
                              projectionDim: Int(md["projection_dim"] ?? "") ?? 16)
        let model = try ResNetModel(cfg)
        try model.store.load(from: f, prefix: "param.")
        let inShape = try f.shape("input")
        let n = inShape[0]
        let input = try f.floats("input")
        var worst = 0.0, what = ""
        func check(_ label: String, _ got: [Float], _ want: [Float]) {
            let e = Compare.relToMax(got, want)
            if e > worst || e.isNaN { worst = e.isNaN ? .infinity : e; what = "\(label) rel err \(e)" }
        }
        // Eval mode first (running statistics untouched).
        let eval = input.withUnsafeBufferPointer { model.forward($0.baseAddress!, n: n, train: false) }
        check("eval.feature", Array(UnsafeBufferPointer(start: eval.feature, count: n * cfg.featureDim)), try f.floats("eval.feature"))
        check("eval.z", Array(UnsafeBufferPointer(start: eval.z, count: n * cfg.projectionDim)), try f.floats("eval.z"))
        // Train mode forward + backward of sum(z * dloss_dz) + 0.1 sum(feature^2).
        model.store.zeroGrads()
        let out = input.withUnsafeBufferPointer { model.forward($0.baseAddress!, n: n, train: true) }
        let feature = Array(UnsafeBufferPointer(start: out.feature, count: n * cfg.featureDim))
        check("train.feature", feature, try f.floats("train.feature"))
        check("train.z", Array(UnsafeBufferPointer(start: out.z, count: n * cfg.projectionDim)), try f.floats("train.z"))
        let dz = try f.floats("dloss_dz")
        let dfeat = feature.map { 0.2 * $0 }
        dz.withUnsafeBufferPointer { d in dfeat.withUnsafeBufferPointer { df in model.backward(dZ: d.baseAddress!, dFeature: df.baseAddress!) } }
        for p in model.store.params {
            let got = Array(UnsafeBufferPointer(start: model.store.grads.ptr + p.offset, count: p.count))
            check("grad." + p.name, got, try f.floats("grad." + p.name, shape: p.shape))
        }
        for s in model.store.stats {
            let got = Array(UnsafeBufferPointer(start: model.store.state.ptr + s.offset, count: s.count))
            check("after." + s.name, got, try f.floats("after." + s.name, shape: s.shape))
        }
        return (worst, what)
    }

    func testGoldenOptimizer() throws {
        let cases = Golden.cases(prefix: "optim-")
        XCTAssertFalse(cases.isEmpty, "no optim-* golden files")
        var failures: [String] = []
        for name in cases {
            let f = try Golden.open(name)
            let p0 = try f.floats("param0")
            let count = p0.count
            let grads = try f.floats("grads"), want = try f.floats("params"), lrs = try f.doubles("lr")
            let steps = lrs.count
            let sched = CosineSchedule(baseLR: try f.metaDouble("base_lr"), totalSteps: Int(try f.metaDouble("total_steps")),
                                       etaMin: try f.metaDouble("eta_min"))
            let opt = SGD(count: count, momentum: Float(try f.metaDouble("momentum")),
                          weightDecay: Float(try f.metaDouble("weight_decay")), nesterov: f.metadata["nesterov"] == "true")
            let params = FloatBuffer(count: count)
            params.copy(from: p0)
            var worst = 0.0
            for t in 0..<steps {
                let lr = sched.lr(at: t)
                worst = max(worst, abs(lr - lrs[t]) / lrs[t])
                grads.withUnsafeBufferPointer { g in
                    opt.step(params: params.ptr, grads: g.baseAddress! + t * count, count: count, lr: Float(lr))
                }
                worst = max(worst, Compare.relToMax(params.array, Array(want[(t * count)..<((t + 1) * count)])))
            }
            if worst <= 1e-5 { Golden.report(name, maxRelErr: worst) }
            else { Golden.reportFailure(name, "max rel err \(worst)"); failures.append(name) }
        }
        XCTAssertTrue(failures.isEmpty, "\(failures)")
    }
}
