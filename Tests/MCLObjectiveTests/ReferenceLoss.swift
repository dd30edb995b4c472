import Foundation
@testable import MCLObjective

/// A straightforward double-precision transcription of SPEC 2-3, independent of the optimised
/// kernels: explicit index sets, one log-softmax per view, a dense G and naive products.
struct ReferenceLoss {
    var loss = 0.0, ccm = 0.0, spa = 0.0
    /// dL/dz for the requested rows (all rows when none were named), [views, dim]; other rows 0.
    var grad: [Double] = []

    init(z: [Double], views v: Int, dim d: Int, main: [Int32], aux: [Int32], targets: [Int32]?,
         config c: LossConfig, gradRows: [Int]? = nil) {
        let y = main.map(Int.init)
        let r = c.useAux ? aux.map(Int.init) : [Int](repeating: 0, count: v)
        var norm = [Double](repeating: 0, count: v)
        var u = [Double](repeating: 0, count: v * d)
        for i in 0..<v {
            var ss = 0.0
            for q in 0..<d { ss += z[i * d + q] * z[i * d + q] }
            norm[i] = ss.squareRoot()
            for q in 0..<d { u[i * d + q] = z[i * d + q] / max(norm[i], 1e-12) }
        }
        var sim = [Double](repeating: 0, count: v * v)
        u.withUnsafeBufferPointer { ub in
            sim.withUnsafeMutableBufferPointer { sb in
                for i in 0..<v {
                    for k in 0...i {
                        var dot = 0.0
                        for q in 0..<d { dot += ub[i * d + q] * ub[k * d + q] }
                        sb[i * v + k] = dot
                        sb[k * v + i] = dot
                    }
                }
            }
        }
        func s(_ i: Int, _ k: Int) -> Double {
            if let f = c.floor { return max(sim[i * v + k], f) }
            return sim[i * v + k]
        }
        func parent(_ k: Int) -> Int { k / 2 }
        func partner(_ k: Int) -> Int { k % 2 == 0 ? k + 1 : k - 1 }
        func multiplier(_ i: Int, _ k: Int) -> Double {
            if parent(k) == parent(i) { return 1 / c.tau }
            if y[k] == y[i] { return (c.useAux && r[k] != r[i]) ? c.beta : c.alpha }
            return 1 / c.tau
        }
        var g = [Double](repeating: 0, count: v * v)  // dL/ds
        // Row i's loss: l = -sum_k pos_k s_ik + log sum_{k : coef_k not NaN} exp(coef_k s_ik);
        // dl/ds_ik = coef_k softmax_k - pos_k. `coef` (NaN = not in the sum) and `pos` are dense.
        var coef = [Double](repeating: .nan, count: v)
        var pos = [Double](repeating: 0, count: v)
        var sRow = [Double](repeating: 0, count: v)
        func term(_ i: Int, weight: Double) -> Double {
            coef.withUnsafeBufferPointer { cb in
            pos.withUnsafeBufferPointer { pb in
            sRow.withUnsafeBufferPointer { sb in
            g.withUnsafeMutableBufferPointer { gb in
                var mx = -Double.infinity
                for k in 0..<v where !cb[k].isNaN { mx = max(mx, cb[k] * sb[k]) }
                var sum = 0.0
                for k in 0..<v where !cb[k].isNaN { sum += exp(cb[k] * sb[k] - mx) }
                var l = mx + log(sum)
                for k in 0..<v {
                    if !cb[k].isNaN { gb[i * v + k] += weight * cb[k] * exp(cb[k] * sb[k] - mx) / sum }
                    l -= pb[k] * sb[k]
                    gb[i * v + k] -= weight * pb[k]
                }
                return l
            }}}}
        }
        func reset() {
            for k in 0..<v { coef[k] = .nan; pos[k] = 0 }
        }
        let w = 1 / Double(v)
        let lambda = c.kind == .mcl ? c.spaWeight : 1
        var ccmSum = 0.0, spaSum = 0.0
        for i in 0..<v {
            for k in 0..<v { sRow[k] = s(i, k) }
            let p = partner(i)
            switch c.kind {
            case .ce, .ceRotation, .ceSimCLR:
                preconditionFailure("the reference contrastive loss has no \(c.kind.rawValue)")
            case .simclr:
                reset()
                for k in 0..<v where k != i { coef[k] = 1 / c.tau }
                pos[p] = 1 / c.tau
                ccmSum += term(i, weight: w)
            case .supcon:
                reset()
                var count = 0
                for k in 0..<v where k != i { coef[k] = 1 / c.tau; if y[k] == y[i] { count += 1 } }
                for k in 0..<v where k != i && y[k] == y[i] { pos[k] = 1 / (c.tau * Double(count)) }
                ccmSum += term(i, weight: w)
            case .ccm, .spa, .mcl:
                if c.kind != .spa {
                    reset()
                    for k in 0..<v where k != i { coef[k] = multiplier(i, k) }
                    pos[p] = multiplier(i, p)
                    ccmSum += term(i, weight: w)
                }
                if c.kind == .ccm { break }
                reset()
                switch c.spa {
                case .official:
                    let t = Int(targets![i])
                    if t < 0 { break }
                    for k in 0..<v where k != i { coef[k] = k == t ? 1 / c.tau : k == p ? 0 : multiplier(i, k) }
                    pos[t] = 1 / c.tau
                    spaSum += term(i, weight: w * lambda)
                case .paperSample:
                    let t = Int(targets![i])
                    if t < 0 { break }
                    for k in 0..<v where parent(k) != parent(i) { coef[k] = multiplier(i, k) }
                    pos[t] = 1 / c.tau
                    spaSum += term(i, weight: w * lambda)
                case .paperExpectation:
                    // B+(i) = {k : same y, same r (aux on), parent(k) != parent(i)}.
                    var count = 0
                    for k in 0..<v where y[k] == y[i] && r[k] == r[i] && k / 2 != i / 2 { count += 1 }
                    if count == 0 { break }
                    for k in 0..<v where k / 2 != i / 2 {
                        coef[k] = multiplier(i, k)
                        if y[k] == y[i] && r[k] == r[i] { pos[k] = 1 / (c.tau * Double(count)) }
                    }
                    spaSum += term(i, weight: w * lambda)
                }
            }
        }
        ccm = ccmSum * w
        spa = spaSum * w
        switch c.kind {
        case .simclr, .supcon, .ccm, .ce, .ceRotation, .ceSimCLR: loss = ccm
        case .spa: loss = spa
        case .mcl: loss = ccm + c.spaWeight * spa
        }
        // dL/dS = dL/ds where the floor is inactive; S symmetric: dL/du_j = sum_k (G_jk + G_kj) u_k.
        if let f = c.floor {
            for i in 0..<(v * v) where sim[i] < f { g[i] = 0 }
        }
        grad = [Double](repeating: 0, count: v * d)
        for j in gradRows ?? Array(0..<v) {
            var du = [Double](repeating: 0, count: d)
            for k in 0..<v where k != j {
                let h = g[j * v + k] + g[k * v + j]
                for q in 0..<d { du[q] += h * u[k * d + q] }
            }
            var dot = 0.0
            for q in 0..<d { dot += du[q] * u[j * d + q] }
            for q in 0..<d { grad[j * d + q] = (du[q] - dot * u[j * d + q]) / norm[j] }
        }
    }
}

/// A deterministic test batch: interleaved views with per-image labels.
struct TestBatch {
    var views: Int
    var dim: Int
    var z: [Float]
    var main: [Int32]
    var aux: [Int32]

    /// `imageLabels[n] = (y, r)` of image n; z standard normal from `seed`.
    init(imageLabels: [(Int32, Int32)], dim: Int, seed: UInt64) {
        views = 2 * imageLabels.count
        self.dim = dim
        main = imageLabels.flatMap { [$0.0, $0.0] }
        aux = imageLabels.flatMap { [$0.1, $0.1] }
        var rng = SplitMixForTests(seed: seed)
        z = (0..<(views * dim)).map { _ in Float(rng.gaussian()) }
    }
}

/// Small Gaussian source for test data (kept separate from the library's generator on purpose).
struct SplitMixForTests {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var x = state
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992.0 }
    mutating func gaussian() -> Double {
        (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform())
    }
}
