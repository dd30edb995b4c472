import Foundation
import MCLCore

/// Fully connected layer on row-major [N, in] inputs: `y = x W^T + b`, W is PyTorch's [out, in].
/// Backward: `dW += dy^T x`, `db += sum_n dy`, `dx = dy W`.
public final class Linear: @unchecked Sendable {
    public let inFeatures: Int, outFeatures: Int
    let store: ParameterStore
    let wOffset: Int, bOffset: Int

    public init(_ store: ParameterStore, _ name: String, inFeatures: Int, outFeatures: Int) {
        self.store = store; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        wOffset = store.addParam(name + ".weight", [outFeatures, inFeatures])
        bOffset = store.addParam(name + ".bias", [outFeatures])
    }

    public func flops(n: Int) -> Double { 2.0 * Double(n * inFeatures * outFeatures) }

    public func forward(_ x: UnsafePointer<Float>, n: Int, _ y: UnsafeMutablePointer<Float>) {
        let b = store.values.ptr + bOffset
        let o = outFeatures
        for r in 0..<n { (y + r * o).update(from: b, count: o) }
        if Conv2d.deterministic {
            for r in 0..<n {
                sgemmCall(false, true, 1, o, inFeatures, 1, x + r * inFeatures, inFeatures,
                          store.values.ptr + wOffset, inFeatures, 1, y + r * o, o)
            }
            return
        }
        sgemm(transA: false, transB: true, m: n, n: o, k: inFeatures, a: x, lda: inFeatures,
              b: store.values.ptr + wOffset, ldb: inFeatures, beta: 1, c: y, ldc: o)
    }

    /// `dx = dy W` (or `+=` with `accumulate`) without touching the parameter gradients.
    public func backwardInput(n: Int, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, accumulate: Bool = true) {
        sgemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures,
              b: store.values.ptr + wOffset, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
    }

    public func backward(_ x: UnsafePointer<Float>, n: Int, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false) {
        let o = outFeatures
        sgemm(transA: true, transB: false, m: o, n: inFeatures, k: n, a: dy, lda: o, b: x, ldb: inFeatures,
              beta: 1, c: store.grads.ptr + wOffset, ldc: inFeatures)
        let gb = store.grads.ptr + bOffset
        for r in 0..<n { for j in 0..<o { gb[j] += dy[r * o + j] } }
        if let dx {
            sgemm(transA: false, transB: false, m: n, n: inFeatures, k: o, a: dy, lda: o,
                  b: store.values.ptr + wOffset, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
        }
    }
}

/// Elementwise helpers shared by the network.
enum Elementwise {
    /// y = max(x, 0)
    static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        Threads.parallelRange(n) { s, e in for i in s..<e { y[i] = max(0, x[i]) } }
    }

    /// d[i] = 0 where out[i] <= 0 (ReLU backward in place, given the ReLU's output).
    static func reluMask(_ d: UnsafeMutablePointer<Float>, _ out: UnsafePointer<Float>, _ n: Int) {
        Threads.parallelRange(n) { s, e in for i in s..<e where out[i] <= 0 { d[i] = 0 } }
    }

    /// y = max(y + x, 0)
    static func addRelu(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        Threads.parallelRange(n) { s, e in for i in s..<e { y[i] = max(0, y[i] + x[i]) } }
    }

    /// y += x
    static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        Threads.parallelRange(n) { s, e in for i in s..<e { y[i] += x[i] } }
    }

    /// NCHW -> CNHW
    static func toCNHW(_ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0..<n { for ch in 0..<c { (y + (ch * n + b) * hw).update(from: x + (b * c + ch) * hw, count: hw) } }
    }

    /// Global average pool: feature[n][c] = mean_hw x[c][n][hw].
    static func avgPool(_ x: UnsafePointer<Float>, c: Int, n: Int, hw: Int, _ f: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(hw)
        for ch in 0..<c {
            for b in 0..<n {
                let p = x + (ch * n + b) * hw
                var s: Float = 0
                for i in 0..<hw { s += p[i] }
                f[b * c + ch] = s * inv
            }
        }
    }

    /// dx[c][n][hw] = df[n][c] / hw
    static func avgPoolBackward(_ df: UnsafePointer<Float>, c: Int, n: Int, hw: Int, _ dx: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(hw)
        for ch in 0..<c {
            for b in 0..<n {
                let v = df[b * c + ch] * inv
                let p = dx + (ch * n + b) * hw
                for i in 0..<hw { p[i] = v }
            }
        }
    }
}
