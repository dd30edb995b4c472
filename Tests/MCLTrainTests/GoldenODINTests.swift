import XCTest
import MCLCore
import MCLNet
@testable import MCLTrain

/// ODIN against PyTorch (`odin-*` cases of make_golden.py): the eval-mode logits and the input
/// gradient to 1e-3 relative to the largest element, the perturbed logits likewise, and the score
/// (max softmax of the perturbed logits / T) to 1e-4 relative.
final class GoldenODINTests: XCTestCase {
    func testGoldenODIN() throws {
        let set = GoldenSet()
        // The shared reference set predates the scorers; the repository's set must have them.
        if set.directory != Golden.repositoryDirectory, (try? set.cases("odin-"))?.isEmpty ?? false { return }
        let failures = set.run("odin-") { c in
            let f = c.file
            let K = try c.int("classes"), n = try c.int("batch")
            let T = try c.double("temperature"), eps = try c.double("epsilon")
            let model = try ResNetModel(ModelConfig(arch: try c.string("arch"), width: try c.int("width"),
                                                    projectorHidden: try c.int("projector_hidden"),
                                                    projectionDim: try c.int("projection_dim"), classes: K))
            try model.store.load(from: f, prefix: "param.")
            for bn in model.batchNorms { bn.eps = Float(try c.double("bn_eps")) }
            let x = try f.floats("input", shape: [n, 3, 32, 32])
            x.withUnsafeBufferPointer { _ = model.forward($0.baseAddress!, n: n, train: false, updateRunning: false) }
            let logits = Array(UnsafeBufferPointer(start: model.logits!, count: n * K))
            var d = [Float](repeating: 0, count: n * K)
            for i in 0..<n {
                let y = Softmax.argmax(model.logits! + i * K, count: K)
                let p = Softmax.probabilities(model.logits! + i * K, count: K, temperature: T)
                for k in 0..<K { d[i * K + k] = Float((p[k] - (k == y ? 1 : 0)) / T) }
            }
            let grad = d.withUnsafeBufferPointer { model.inputGradient(dLogits: $0.baseAddress!) }
            let (score, _) = x.withUnsafeBufferPointer { odinScores(model: model, images: $0.baseAddress!, count: n, temperature: T, epsilon: eps) }
            let perturbed = Array(UnsafeBufferPointer(start: model.logits!, count: n * K))
            var errs: [(String, Double, Double)] = [
                ("logits", Compare.relToMax(logits, try f.floats("logits", shape: [n, K])), 1e-3),
                ("input_grad", Compare.relToMax(grad, try f.floats("input_grad", shape: [n, 3, 32, 32])), 1e-3),
                ("perturbed_logits", Compare.relToMax(perturbed, try f.floats("perturbed_logits", shape: [n, K])), 1e-3),
            ]
            let want = try f.floats("score", shape: [n]).map(Double.init)
            errs.append(("score", zip(score, want).map { abs(exp($0) - $1) / abs($1) }.max()!, 1e-4))
            for (name, e, tol) in errs where !(e <= tol) { throw GoldenMismatch("\(name) error \(e) > \(tol)") }
            return errs.map(\.1).max()!
        }
        XCTAssertTrue(failures.isEmpty, "golden ODIN cases failed: \(failures)")
    }
}
