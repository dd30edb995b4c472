import XCTest
import MCLCore
@testable import MCLNet

/// Golden tests against PyTorch: every `model-*` file and `optim-sgd-nesterov-cosine`.
final class GoldenModelTests: XCTestCase {
    /// Every listed `model-*` case, checked with three engines and reported on one line (the
    /// worst of the three): the default (Winograd for 3x3 stride-1 convolutions with at least
    /// `Winograd.minChannels` inputs, which the width-8 golden models do not reach), Winograd on
    /// every stride-1 3x3 layer with 8 or more inputs, and the deterministic im2col path.
    func testGoldenModels() throws {
        let savedMin = Winograd.minChannels
        defer { Conv2d.deterministic = false; Winograd.minChannels = savedMin }
        let failures = GoldenSet().run("model-") { c in
            var worst = 0.0
            for (det, minChannels, engine) in [(false, savedMin, "default"), (false, 8, "winograd"), (true, savedMin, "deterministic")] {
                Conv2d.deterministic = det
                Winograd.minChannels = minChannels
                let err = try checkModel(c)
                guard err.worst <= 1e-3 else { throw GoldenMismatch("\(engine) engine: \(err.what)") }
                worst = max(worst, err.worst)
            }
            return worst
        }
        XCTAssertTrue(failures.isEmpty, "golden failures: \(failures)")
    }

    func checkModel(_ c: GoldenCase) throws -> (worst: Double, what: String) {
        let f = c.file
        let cfg = ModelConfig(arch: try c.string("arch"), width: try c.int("width"),
                              projectorHidden: try c.int("projector_hidden"), projectionDim: try c.int("projection_dim"))
        let model = try ResNetModel(cfg)
        for bn in model.batchNorms {
            guard Double(bn.eps) == Double(Float(try c.double("bn_eps"))),
                  Double(bn.momentum) == Double(Float(try c.double("bn_momentum"))) else {
                throw GoldenMismatch("bn_eps \(try c.string("bn_eps")) / bn_momentum \(try c.string("bn_momentum")) differ from the engine's \(bn.eps) / \(bn.momentum)")
            }
        }
        try model.store.load(from: f, prefix: "param.")
        let n = try c.int("batch")
        let input = try f.floats("input", shape: [n, 3, 32, 32])
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
        let failures = GoldenSet().run("optim-") { c in
            let f = c.file
            let p0 = try f.floats("param0")
            let count = p0.count
            let steps = try c.int("total_steps")
            let grads = try f.floats("grads", shape: [steps, count]), want = try f.floats("params", shape: [steps, count])
            let lrs = try f.doubles("lr", shape: [steps])
            let sched = CosineSchedule(baseLR: try c.double("base_lr"), totalSteps: steps, etaMin: try c.double("eta_min"))
            let opt = SGD(count: count, momentum: Float(try c.double("momentum")),
                          weightDecay: Float(try c.double("weight_decay")), nesterov: try c.bool("nesterov"))
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
            guard worst <= 1e-5 else { throw GoldenMismatch("max rel err \(worst)") }
            return worst
        }
        XCTAssertTrue(failures.isEmpty, "\(failures)")
    }
}
