import XCTest
import MCLCore
@testable import MCLNet

/// The classifier and rotation heads in the training backward, and the eval-mode input gradient
/// ODIN perturbs along, against finite differences on a tiny ResNet-18 (width 4) at 32x32.
final class HeadsGradientTests: XCTestCase {
    var rng = SplitMix64(seed: 11)
    func randn(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float(rng.nextGaussian()) * scale } }
    func dot(_ y: UnsafePointer<Float>, _ r: [Float]) -> Double {
        var s = 0.0
        for i in r.indices { s += Double(y[i]) * Double(r[i]) }
        return s
    }

    func testHeadsBackwardFiniteDifferences() throws {
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 3, rotationHead: true))
        model.initialise(seed: 5)
        let n = 6
        let input = FloatBuffer(count: n * 3 * 32 * 32); input.copy(from: randn(input.count))
        let a = randn(n * 3), b = randn(n * 4)
        let loss: () -> Double = {
            model.forward(input.ptr, n: n, train: true, updateRunning: false)
            return self.dot(model.logits!, a) + self.dot(model.rotationLogits!, b)
        }
        model.forward(input.ptr, n: n, train: true, updateRunning: false)
        model.store.zeroGrads()
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            model.backward(dZ: nil, dLogits: ap.baseAddress!, dRotationLogits: bp.baseAddress!)
        } }
        let grads = model.store.grads.array
        // Without dL/dz the projector gets no gradient.
        for name in ["projector.0.weight", "projector.2.bias"] {
            let p = try XCTUnwrap(model.store.param(name))
            XCTAssertTrue(grads[p.offset..<(p.offset + p.count)].allSatisfy { $0 == 0 }, name)
        }
        for name in ["classifier.weight", "classifier.bias", "rotation_head.weight", "rotation_head.bias",
                     "enc.conv1.weight", "enc.layer2.0.downsample.0.weight", "enc.layer4.1.bn2.weight"] {
            let p = try XCTUnwrap(model.store.param(name))
            let g = Array(grads[p.offset..<(p.offset + p.count)])
            let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertGreaterThan(norm, 0, name)
            let base = model.store.values.ptr + p.offset
            let saved = Array(UnsafeBufferPointer(start: base, count: p.count))
            func shifted(_ eps: Double) -> Double {
                for i in 0..<p.count { base[i] = saved[i] + Float(eps * Double(g[i]) / norm) }
                defer { for i in 0..<p.count { base[i] = saved[i] } }
                return loss()
            }
            let eps = 1e-3
            let num = (shifted(eps) - shifted(-eps)) / (2 * eps)
            XCTAssertEqual(num, norm, accuracy: 3e-2 * norm, "\(name): directional FD \(num) vs |g| \(norm)")
        }
    }

    /// ODIN's gradient: f(x) = -log softmax(logits(x) / T)_y in eval mode (running statistics made
    /// non-trivial by a few train-mode forwards), through every conv algorithm the network uses
    /// (direct, Winograd, im2col) and through im2col alone (deterministic mode).
    func testInputGradientFiniteDifferences() throws {
        for deterministic in [false, true] {
            Conv2d.deterministic = deterministic
            defer { Conv2d.deterministic = false }
            let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5, classes: 4))
            model.initialise(seed: 9)
            let n = 3
            for _ in 0..<3 {
                let warm = FloatBuffer(count: n * 3 * 32 * 32); warm.copy(from: randn(warm.count))
                model.forward(warm.ptr, n: n, train: true, updateRunning: true)
            }
            let input = FloatBuffer(count: n * 3 * 32 * 32); input.copy(from: randn(input.count, scale: 0.5).map { $0 + 0.5 })
            for T in [1.0, 1000.0] {
                var labels = [Int](repeating: 0, count: n)
                let f: () -> Double = {
                    model.forward(input.ptr, n: n, train: false, updateRunning: false)
                    var s = 0.0
                    for i in 0..<n {
                        let row = model.logits! + i * 4
                        s += Softmax.logSumExp(row, count: 4, temperature: T) - Double(row[labels[i]]) / T
                    }
                    return s
                }
                model.forward(input.ptr, n: n, train: false, updateRunning: false)
                var d = [Float](repeating: 0, count: n * 4)
                for i in 0..<n {
                    let row = model.logits! + i * 4
                    labels[i] = Softmax.argmax(row, count: 4)
                    let p = Softmax.probabilities(row, count: 4, temperature: T)
                    for k in 0..<4 { d[i * 4 + k] = Float((p[k] - (k == labels[i] ? 1 : 0)) / T) }
                }
                let g = d.withUnsafeBufferPointer { model.inputGradient(dLogits: $0.baseAddress!) }
                XCTAssertEqual(g.count, input.count)
                let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                XCTAssertGreaterThan(norm, 0)
                let saved = input.array
                func shifted(_ eps: Double) -> Double {
                    for i in 0..<input.count { input.ptr[i] = saved[i] + Float(eps * Double(g[i]) / norm) }
                    defer { input.copy(from: saved) }
                    return f()
                }
                // Eval mode is piecewise linear in x (BN affine), so only ReLU kinks and the
                // softmax curvature bend f: the difference quotient converges to |g| as the step
                // shrinks (seen: 9%, 2%, 0.5%, 0.1% off at steps 1e-1, 1e-2, 3e-3, 3e-4).
                let eps = 3e-4
                let num = (shifted(eps) - shifted(-eps)) / (2 * eps)
                XCTAssertEqual(num, norm, accuracy: 1e-2 * norm, "T=\(T) deterministic=\(deterministic): directional FD \(num) vs |g| \(norm)")
                // And the largest single coordinates.
                let top = g.indices.sorted { abs(g[$0]) > abs(g[$1]) }.prefix(3)
                for j in top {
                    let h: Float = 1e-3
                    input.ptr[j] = saved[j] + h; let up = f()
                    input.ptr[j] = saved[j] - h; let down = f()
                    input.ptr[j] = saved[j]
                    let c = (up - down) / (2 * Double(h))
                    XCTAssertEqual(c, Double(g[j]), accuracy: 0.03 * abs(Double(g[j])) + 1e-3 * norm,
                                   "T=\(T) coordinate \(j): FD \(c) vs \(g[j])")
                }
            }
        }
    }
}
