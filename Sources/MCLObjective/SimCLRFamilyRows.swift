/// Row losses of the SimCLR family: NT-Xent, SupCon (L_out) and CCM (SPEC 3).
///
/// Each function returns `l(i)` for one view and adds `weight / 2N * dl(i)/ds_ik` to `g`;
/// `m` and `e` are scratch rows, `s` is row `i` of the raw similarity matrix.
extension RowContext {
    /// SimCLR NT-Xent:
    ///
    ///     l(i) = -s_ip / tau + log sum_{k != i} exp(s_ik / tau),     p = partner(i)
    ///     dl(i)/ds_ik = (softmax_k - [k = p]) / tau
    @inline(__always)
    func simclr(_ i: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, e: UnsafeMutablePointer<Float>,
                g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        fill(m, invTau)
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: i, i + 1, scale: scale, e: e, g: g)
        let p = i ^ 1
        let t = Double(invTau)
        g[p] -= Float(scale * t)
        return lse - t * sim(s, p)
    }

    /// SupCon, Khosla et al.'s L_out, with `P(i) = {k != i : y_k = y_i}` (the partner included):
    ///
    ///     l(i) = -(1/|P(i)|) sum_{p in P(i)} s_ip / tau + log sum_{k != i} exp(s_ik / tau)
    ///     dl(i)/ds_ik = (softmax_k - [k in P(i)] / |P(i)|) / tau
    @inline(__always)
    func supcon(_ i: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, e: UnsafeMutablePointer<Float>,
                g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        fill(m, invTau)
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: i, i + 1, scale: scale, e: e, g: g)
        // `e` is free again: reuse it for the positive mask.
        let (count, sum) = markPositives(i, s, sameAux: false, into: e)
        // The partner shares the label, so |P(i)| >= 1.
        let t = Double(invTau), n = Double(count)
        let dg = Float(scale * t / n)
        for k in 0..<views { g[k] -= dg * e[k] }
        return lse - t * sum / n
    }

    /// CCM (paper eq. 4-6), NT-Xent with the multipliers `M(i,k)` (`m` must hold them):
    ///
    ///     l(i) = -s_ip M(i,p) + log sum_{k != i} exp(s_ik M(i,k)),    M(i,p) = 1/tau
    ///     dl(i)/ds_ik = M(i,k) softmax_k - [k = p] / tau
    @inline(__always)
    func ccm(_ i: Int, _ s: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, e: UnsafeMutablePointer<Float>,
             g: UnsafeMutablePointer<Float>, weight: Double) -> Double {
        let scale = weight * invViews
        let lse = logSumExp(s, m, excluding: i, i + 1, scale: scale, e: e, g: g)
        let p = i ^ 1
        let t = Double(invTau)
        g[p] -= Float(scale * t)
        return lse - t * sim(s, p)
    }
}
