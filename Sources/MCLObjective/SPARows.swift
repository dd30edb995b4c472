import MCLCore

/// Stochastic positive attraction (SPA, SPEC 3): the row losses (targets: `sampleSPATargets`).
///
/// The positive batch of view `i` is
///
///     B+(i) = {k : y_k = y_i, (r_k = r_i when the auxiliary task is on), parent(k) != parent(i)}.
///
/// A view whose `B+` is empty (target -1) contributes 0; the mean still divides by 2N.
extension RowContext {
    /// Official SPA (the released code), target `t = t(i)`, partner `p`:
    ///
    ///     M'(i,t) = 1/tau,  M'(i,p) = 0 (logit 0, still in the sum),  M'(i,k) = M(i,k) otherwise
    ///     l(i) = -s_it / tau + log sum_{k != i} exp(s_ik M'(i,k))
    ///     dl(i)/ds_ik = M'(i,k) softmax_k - [k = t] / tau
    ///
    /// `m` must hold `M(i, .)`; it is restored on return.
    @inline(__always)
    func spaOfficial(_ i: Int, target t: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                     e: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        if t < 0 { return 0 }
        let p = i ^ 1
        let savedT = m[t], savedP = m[p]
        m[t] = invTau
        m[p] = 0
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: i, i + 1, scale: scale, e: e, g: g)
        m[t] = savedT
        m[p] = savedP
        let tt = Double(invTau)
        g[t] -= Float(scale * tt)
        return lse - tt * sim(s, t)
    }

    /// Paper SPA with a sampled target (eq. 8-9); the target's own term in the sum keeps
    /// `M(i,t) = alpha`:
    ///
    ///     l(i) = -s_it / tau + log sum_{parent(k) != parent(i)} exp(s_ik M(i,k))
    ///     dl(i)/ds_ik = M(i,k) softmax_k - [k = t] / tau
    @inline(__always)
    func spaPaperSample(_ i: Int, target t: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                        e: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        if t < 0 { return 0 }
        let lo = i & ~1
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: lo, lo + 2, scale: scale, e: e, g: g)
        let tt = Double(invTau)
        g[t] -= Float(scale * tt)
        return lse - tt * sim(s, t)
    }

    /// Paper SPA in expectation (eq. 22), the paper-sample term averaged over `t in B+(i)`:
    ///
    ///     l(i) = -(1/|B+(i)|) sum_{t in B+(i)} s_it / tau + log sum_{parent(k) != parent(i)} exp(s_ik M(i,k))
    ///     dl(i)/ds_ik = M(i,k) softmax_k - [k in B+(i)] / (tau |B+(i)|)
    @inline(__always)
    func spaExpectation(_ i: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                        e: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        // Count B+ first: an empty B+ contributes nothing. `e` is reused for the mask afterwards.
        var count = 0
        let yi = y[i], ri = r[i], lo = i & ~1
        for k in 0..<views where y[k] == yi && r[k] == ri { count += 1 }
        if y[lo] == yi && r[lo] == ri { count -= 1 }
        if y[lo + 1] == yi && r[lo + 1] == ri { count -= 1 }
        if count == 0 { return 0 }
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: lo, lo + 2, scale: scale, e: e, g: g)
        let (n, sum) = markPositives(i, s, sameAux: true, into: e)
        let tt = Double(invTau)
        let dg = Float(scale * tt / Double(n))
        for k in 0..<views { g[k] -= dg * e[k] }
        return lse - tt * sum / Double(n)
    }
}
