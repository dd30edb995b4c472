import MCLCore

/// Stochastic positive attraction (SPA, SPEC 3): row losses and target sampling.
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

/// The tag mixed into the SPA generator, so that its stream differs from other users of the same
/// (seed, step).
public let spaStreamTag: UInt64 = 0x5350_4100  // "SPA"

/// Draws the SPA targets of a global batch, identically on every rank.
///
/// The generator is `SplitMix64(seed: seed, step, spaStreamTag)`; draws are taken in view (or
/// image) order and only where there is a candidate, each with `nextInt`.
/// - `official` (image level): image `n` takes the labels of its view `2n`; it draws an image `m`
///   uniformly among the other images with the same `(y, r)` (same `y` when `useAux` is off) and
///   sets `t(2n) = 2m`, `t(2n+1) = 2m+1`; both are -1 when there is no such image.
/// - `paper-sample`: each view `i` draws `t(i)` uniformly from `B+(i)`, -1 when it is empty.
/// - `paper-expectation` needs no targets: every entry is -1.
///
/// - Parameters:
///   - main: main label per view (2N, views interleaved).
///   - aux: auxiliary label per view (ignored, and may be empty, when `useAux` is off).
public func sampleSPATargets(main: [Int32], aux: [Int32], useAux: Bool, mode: SPAMode,
                             seed: UInt64, step: UInt64) -> [Int32] {
    let views = main.count
    precondition(views % 2 == 0, "sampleSPATargets: \(views) views, expected an even count (interleaved pairs)")
    precondition(!useAux || aux.count == views, "sampleSPATargets: \(aux.count) auxiliary labels for \(views) views")
    var targets = [Int32](repeating: -1, count: views)
    if mode == .paperExpectation || views == 0 { return targets }
    @inline(__always) func key(_ v: Int) -> Int64 {
        (Int64(main[v]) << 32) | Int64(UInt32(bitPattern: useAux ? aux[v] : 0))
    }
    var rng = SplitMix64(seed: seed, step, spaStreamTag)
    switch mode {
    case .official:
        let images = views / 2
        // Images of each (y, r), in increasing order, and each image's position in its group.
        var groups: [Int64: [Int]] = [:]
        var position = [Int](repeating: 0, count: images)
        for n in 0..<images {
            let k = key(2 * n)
            position[n] = groups[k, default: []].count
            groups[k, default: []].append(n)
        }
        for n in 0..<images {
            let members = groups[key(2 * n)]!
            let candidates = members.count - 1
            if candidates == 0 { continue }
            let j = rng.nextInt(candidates)
            let m = members[j < position[n] ? j : j + 1]
            targets[2 * n] = Int32(2 * m)
            targets[2 * n + 1] = Int32(2 * m + 1)
        }
    case .paperSample:
        var groups: [Int64: [Int]] = [:]
        var position = [Int](repeating: 0, count: views)
        for v in 0..<views {
            let k = key(v)
            position[v] = groups[k, default: []].count
            groups[k, default: []].append(v)
        }
        for v in 0..<views {
            let members = groups[key(v)]!
            // The group is sorted by view index, so the views of v's parent (v and possibly its
            // partner) sit next to each other: skip that block.
            let partner = v ^ 1
            let partnerIn = key(partner) == key(v)
            let first = (partnerIn && partner < v) ? position[partner] : position[v]
            let own = partnerIn ? 2 : 1
            let candidates = members.count - own
            if candidates == 0 { continue }
            let j = rng.nextInt(candidates)
            targets[v] = Int32(members[j < first ? j : j + own])
        }
    case .paperExpectation:
        break
    }
    return targets
}
