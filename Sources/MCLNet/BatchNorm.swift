import Foundation
import MCLCore
import CDirectConv

/// Sums a small vector of doubles across ranks in place (sync BatchNorm); nil = per-rank statistics.
public typealias StatReducer = (inout [Double]) -> Void

/// BatchNorm2d on CNHW activations, optionally fused with a following ReLU.
///
/// Train mode normalises channel c with the batch mean and biased variance over its M = N*H*W
/// values: `xhat = (x - mean) / sqrt(var + eps)`, `y = gamma * xhat + beta`, and updates the running
/// statistics with momentum m: `rm = (1-m) rm + m mean`, `rv = (1-m) rv + m var * M/(M-1)`.
/// Backward: `dbeta = sum dy`, `dgamma = sum dy xhat`,
/// `dx = gamma/sqrt(var+eps) * (dy - dbeta/M - xhat dgamma/M)`.
/// With a `StatReducer` (sync BatchNorm) the sums run over the global batch; dgamma and dbeta stay
/// rank-local sums, because the gradient allreduce adds them up afterwards.
/// `num_batches_tracked` is not stored: PyTorch's BatchNorm fills it in when a checkpoint lacks it.
public final class BatchNorm2d: @unchecked Sendable {
    public let channels: Int
    public let name: String
    public var eps: Float = 1e-5
    public var momentum: Float = 0.1
    let store: ParameterStore
    let gOffset: Int, bOffset: Int, rmOffset: Int, rvOffset: Int
    var mean: [Float]
    var invstd: [Float]

    public init(_ store: ParameterStore, _ name: String, channels: Int) {
        self.store = store; self.name = name; self.channels = channels
        gOffset = store.addParam(name + ".weight", [channels])
        bOffset = store.addParam(name + ".bias", [channels])
        rmOffset = store.addStat(name + ".running_mean", [channels])
        rvOffset = store.addStat(name + ".running_var", [channels])
        mean = [Float](repeating: 0, count: channels)
        invstd = [Float](repeating: 0, count: channels)
    }

    func initialise() {
        for c in 0..<channels {
            store.values.ptr[gOffset + c] = 1
            store.values.ptr[bOffset + c] = 0
            store.state.ptr[rmOffset + c] = 0
            store.state.ptr[rvOffset + c] = 1
        }
    }

    /// Train-mode forward over x[C][M]; writes y (may alias x only if `relu` is false and x is not
    /// needed later: the network keeps x for backward, so it never aliases).
    public func forwardTrain(_ x: UnsafePointer<Float>, m: Int, _ y: UnsafeMutablePointer<Float>, relu: Bool,
                             reducer: StatReducer?, updateRunning: Bool = true, residual: UnsafePointer<Float>? = nil) {
        let C = channels
        if reducer == nil {
            // Per-rank statistics in one pass: shifted sums S1 = sum(x - K), S2 = sum((x - K)^2)
            // with K = the channel's first value, var = (S2 - S1^2 / M) / M (no cancellation
            // because K is close to the mean in scale).
            var st = [Double](repeating: 0, count: 2 * C)
            st.withUnsafeMutableBufferPointer { s in
                let sp = s.baseAddress!
                Threads.parallelFor(C) { c in
                    let k = x[c * m]
                    var a1 = 0.0, a2 = 0.0
                    mcl_bn_shifted_sums(x + c * m, m, k, &a1, &a2)
                    let mu = a1 / Double(m)
                    sp[2 * c] = Double(k) + mu
                    sp[2 * c + 1] = max(0, a2 / Double(m) - mu * mu)
                }
            }
            finishTrain(means: (0..<C).map { st[2 * $0] }, vars: (0..<C).map { st[2 * $0 + 1] }, count: Double(m),
                        x, m: m, y, relu: relu, updateRunning: updateRunning, residual: residual)
            return
        }
        var sums = [Double](repeating: 0, count: C)
        sums.withUnsafeMutableBufferPointer { s in
            let sp = s.baseAddress!
            Threads.parallelFor(C) { c in
                let xc = x + c * m
                var acc = 0.0
                var i = 0
                // A float sum per block of 64 values (vectorised), accumulated in double across blocks.
                while i + 64 <= m {
                    var f = SIMD8<Float>()
                    for t in stride(from: 0, to: 64, by: 8) { f += load8(xc + i + t) }
                    acc += Double(f.sum()); i += 64
                }
                while i < m { acc += Double(xc[i]); i += 1 }
                sp[c] = acc
            }
        }
        var count = Double(m)
        if let reducer {
            var v = sums + [count]
            reducer(&v)
            sums = Array(v[0..<C]); count = v[C]
        }
        let meanD = sums.map { $0 / count }
        var sq = [Double](repeating: 0, count: C)
        sq.withUnsafeMutableBufferPointer { s in
            let sp = s.baseAddress!
            Threads.parallelFor(C) { c in
                let xc = x + c * m
                let mu = Float(meanD[c])
                var acc = 0.0
                var i = 0
                let muv = SIMD8<Float>(repeating: mu)
                while i + 64 <= m {
                    var f = SIMD8<Float>()
                    for t in stride(from: 0, to: 64, by: 8) { let d = load8(xc + i + t) - muv; f += d * d }
                    acc += Double(f.sum()); i += 64
                }
                while i < m { let d = Double(xc[i]) - meanD[c]; acc += d * d; i += 1 }
                sp[c] = acc
            }
        }
        if let reducer { reducer(&sq) }
        finishTrain(means: meanD, vars: sq.map { $0 / count }, count: count, x, m: m, y, relu: relu,
                    updateRunning: updateRunning, residual: residual)
    }

    /// Stores mean and 1/sqrt(var + eps), updates the running statistics, applies the affine map.
    func finishTrain(means meanD: [Double], vars: [Double], count: Double, _ x: UnsafePointer<Float>, m: Int,
                     _ y: UnsafeMutablePointer<Float>, relu: Bool, updateRunning: Bool, residual: UnsafePointer<Float>?) {
        let C = channels
        let g = store.values.ptr + gOffset, b = store.values.ptr + bOffset
        for c in 0..<C {
            let v = vars[c]
            mean[c] = Float(meanD[c])
            invstd[c] = Float(1.0 / (v + Double(eps)).squareRoot())
            if updateRunning {
                let rm = store.state.ptr + rmOffset, rv = store.state.ptr + rvOffset
                rm[c] = (1 - momentum) * rm[c] + momentum * Float(meanD[c])
                let unbiased = count > 1 ? v * count / (count - 1) : v
                rv[c] = (1 - momentum) * rv[c] + momentum * Float(unbiased)
            }
        }
        apply(x, m: m, y, relu: relu, residual: residual, scale: { c in g[c] * self.invstd[c] }, shift: { c in b[c] - self.mean[c] * g[c] * self.invstd[c] })
    }

    /// Eval-mode forward with the running statistics.
    public func forwardEval(_ x: UnsafePointer<Float>, m: Int, _ y: UnsafeMutablePointer<Float>, relu: Bool,
                            residual: UnsafePointer<Float>? = nil) {
        let g = store.values.ptr + gOffset, b = store.values.ptr + bOffset
        let rm = store.state.ptr + rmOffset, rv = store.state.ptr + rvOffset
        let eps = self.eps
        apply(x, m: m, y, relu: relu, residual: residual,
              scale: { c in g[c] / (rv[c] + eps).squareRoot() },
              shift: { c in b[c] - rm[c] * g[c] / (rv[c] + eps).squareRoot() })
    }

    /// y = [relu](x * scale + shift [+ residual]) per channel, in one pass.
    @inline(__always)
    func apply(_ x: UnsafePointer<Float>, m: Int, _ y: UnsafeMutablePointer<Float>, relu: Bool,
               residual: UnsafePointer<Float>? = nil, scale: (Int) -> Float, shift: (Int) -> Float) {
        let C = channels
        let sc = (0..<C).map(scale), sh = (0..<C).map(shift)
        Threads.parallelFor(C) { c in
            mcl_bn_apply(x + c * m, y + c * m, residual.map { $0 + c * m }, m, sc[c], sh[c], relu ? 1 : 0)
        }
    }

    /// Input gradient of eval-mode BN (running statistics), in place: dy is masked by
    /// `reluOut > 0` when the forward was fused with ReLU, then scaled by gamma / sqrt(var + eps).
    public func backwardEval(dy: UnsafeMutablePointer<Float>, m: Int, reluOut: UnsafePointer<Float>?) {
        let g = store.values.ptr + gOffset, rv = store.state.ptr + rvOffset
        let eps = self.eps
        Threads.parallelFor(channels) { c in
            let k = g[c] / (rv[c] + eps).squareRoot()
            let dc = dy + c * m
            if let reluOut {
                let r = reluOut + c * m
                for i in 0..<m { dc[i] = r[i] > 0 ? dc[i] * k : 0 }
            } else {
                for i in 0..<m { dc[i] *= k }
            }
        }
    }

    /// Backward of train-mode BN (after `forwardTrain` on the same x). If `reluOut` is given, the
    /// forward was fused with ReLU and dy is first masked by `reluOut > 0` (in place).
    /// Writes dx (may alias dy); accumulates dgamma and dbeta.
    public func backward(_ x: UnsafePointer<Float>, m: Int, dy: UnsafeMutablePointer<Float>, reluOut: UnsafePointer<Float>?,
                         dx: UnsafeMutablePointer<Float>, reducer: StatReducer?) {
        let C = channels
        var sums = [Double](repeating: 0, count: 2 * C + 1)
        let meanL = mean, invL = invstd
        sums.withUnsafeMutableBufferPointer { s in
            let sp = s.baseAddress!
            Threads.parallelFor(C) { c in
                let mu = meanL[c], inv = invL[c]
                var sd = 0.0, sdx = 0.0
                mcl_bn_backward_sums(x + c * m, dy + c * m, reluOut.map { $0 + c * m }, m, mu, &sd, &sdx)
                sp[2 * c] = sd
                sp[2 * c + 1] = sdx * Double(inv)
            }
        }
        sums[2 * C] = Double(m)
        let g = store.values.ptr + gOffset
        let gg = store.grads.ptr + gOffset, gb = store.grads.ptr + bOffset
        for c in 0..<C {
            gb[c] += Float(sums[2 * c])
            gg[c] += Float(sums[2 * c + 1])
        }
        if let reducer { reducer(&sums) }
        let count = sums[2 * C]
        Threads.parallelFor(C) { c in
            let xc = x + c * m, dc = dy + c * m, o = dx + c * m
            let mu = meanL[c], inv = invL[c]
            let k = g[c] * inv
            let mdb = Float(sums[2 * c] / count)
            let mdg = Float(sums[2 * c + 1] / count)
            mcl_bn_backward_dx(xc, dc, o, m, mu, inv, k, mdb, mdg)
        }
    }
}

/// Eight floats from an unaligned address (the reductions above sum 8 lanes at a time: Swift does
/// not reassociate a scalar float sum, which would leave it one dependent add per element).
@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
