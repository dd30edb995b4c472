import Foundation

/// Everything a row `i` of the similarity matrix needs besides its per-thread scratch rows: the
/// labels and the hyper-parameters as the float multipliers used in the logits.
///
/// Every per-view loss is of the form
///
///     l(i) = -sum_k w_ik s_ik + log sum_{k in K(i)} exp(m_ik s_ik)
///
/// with `s_ik` the (floored) similarity, so that
///
///     dl(i)/ds_ik = m_ik softmax_{K(i)}(m_i. s_i.)_k - w_ik.
///
/// The kernels add `weight / 2N` times this derivative to the scratch row `g`, which finally
/// becomes row `i` of `G = dL/dS` (zero where the floor is active, zero on the diagonal).
struct RowContext {
    let views: Int
    /// Main labels.
    let y: UnsafePointer<Int32>
    /// Auxiliary labels, all zero when the auxiliary task is off.
    let r: UnsafePointer<Int32>
    let invTau: Float
    let alpha: Float
    let beta: Float
    /// The similarity floor, `-infinity` when there is none.
    let floor: Float
    /// 1 / (2N).
    let invViews: Double

    init(views: Int, y: UnsafePointer<Int32>, r: UnsafePointer<Int32>, config: LossConfig) {
        self.views = views
        self.y = y
        self.r = r
        invTau = Float(1 / config.tau)
        alpha = Float(config.alpha)
        beta = Float(config.beta)
        floor = config.floor.map { Float($0) } ?? -Float.infinity
        invViews = 1 / Double(views)
    }

    /// The floored similarity.
    @inline(__always) func sim(_ s: UnsafePointer<Float>, _ k: Int) -> Double {
        Double(Swift.max(s[k], floor))
    }

    /// Fills `m` with a constant multiplier.
    @inline(__always) func fill(_ m: UnsafeMutablePointer<Float>, _ value: Float) {
        for k in 0..<views { m[k] = value }
    }

    /// Fills `m[k] = M(i,k)` (SPEC 2); `m[i]` is set too but is never used.
    @inline(__always) func fillMultipliers(_ i: Int, _ m: UnsafeMutablePointer<Float>) {
        let yi = y[i], ri = r[i]
        let a = alpha, b = beta, t = invTau
        for k in 0..<views {
            m[k] = y[k] == yi ? (r[k] == ri ? a : b) : t
        }
        let lo = i & ~1
        m[lo] = t
        m[lo + 1] = t
    }

    /// `log sum_{k in K} exp(m_k s_k)` over `K = [0, views) \ [exLo, exHi)`, computed with the
    /// maximum logit subtracted and the sum accumulated in double; adds `scale * m_k * p_k` to
    /// `g[k]` for `k in K`, `p` the softmax over `K`. `e` is scratch.
    @inline(__always)
    func logSumExp(_ s: UnsafePointer<Float>, _ m: UnsafePointer<Float>, excluding exLo: Int, _ exHi: Int,
                   scale: Double, e: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>) -> Double {
        let fl = floor
        var mx = -Float.infinity
        mx = Swift.max(mx, rangeMax(s, m, fl, 0, exLo))
        mx = Swift.max(mx, rangeMax(s, m, fl, exHi, views))
        var sum = rangeExpSum(s, m, fl, mx, e, 0, exLo)
        sum += rangeExpSum(s, m, fl, mx, e, exHi, views)
        let c = Float(scale / sum)
        rangeAccumulate(m, e, c, g, 0, exLo)
        rangeAccumulate(m, e, c, g, exHi, views)
        return Double(mx) + Foundation.log(sum)
    }

    /// Writes row `i` of `G = dL/dS` over the similarity row: `g_k` where the floor is inactive
    /// (`s_ik >= floor`), else 0; 0 on the diagonal.
    @inline(__always)
    func storeGradient(_ i: Int, _ row: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>) {
        if floor == -Float.infinity {
            row.update(from: g, count: views)
        } else {
            let fl = floor
            var k = 0
            while k + 4 <= views {
                let sv = UnsafeRawPointer(row + k).loadUnaligned(as: SIMD4<Float>.self)
                let gv = UnsafeRawPointer(g + k).loadUnaligned(as: SIMD4<Float>.self)
                UnsafeMutableRawPointer(row + k).storeBytes(of: gv.replacing(with: 0, where: sv .< fl), as: SIMD4<Float>.self)
                k += 4
            }
            while k < views { row[k] = row[k] >= fl ? g[k] : 0; k += 1 }
        }
        row[i] = 0
    }

    /// Marks the views `k` of `B+(i)` (or, with `sameAux` false, `{k != i : y_k = y_i}`) in `w` with
    /// 1 (others 0); returns their count and the sum of their floored similarities.
    @inline(__always)
    func markPositives(_ i: Int, _ s: UnsafePointer<Float>, sameAux: Bool, into w: UnsafeMutablePointer<Float>) -> (count: Int, sum: Double) {
        let yi = y[i], ri = r[i], fl = floor
        for k in 0..<views {
            w[k] = (y[k] == yi && (!sameAux || r[k] == ri)) ? 1 : 0
        }
        if sameAux {
            let lo = i & ~1
            w[lo] = 0
            w[lo + 1] = 0
        } else {
            w[i] = 0
        }
        var count: Float = 0
        var s0 = 0.0, s1 = 0.0
        var k = 0
        while k + 2 <= views {
            count += w[k] + w[k + 1]
            s0 += Double(w[k] * Swift.max(s[k], fl))
            s1 += Double(w[k + 1] * Swift.max(s[k + 1], fl))
            k += 2
        }
        while k < views { count += w[k]; s0 += Double(w[k] * Swift.max(s[k], fl)); k += 1 }
        return (Int(count), s0 + s1)
    }
}

@inline(__always)
private func rangeMax(_ s: UnsafePointer<Float>, _ m: UnsafePointer<Float>, _ fl: Float, _ a: Int, _ b: Int) -> Float {
    var mx = -Float.infinity
    var k = a
    while k < b { mx = Swift.max(mx, m[k] * Swift.max(s[k], fl)); k += 1 }
    return mx
}

@inline(__always)
private func rangeExpSum(_ s: UnsafePointer<Float>, _ m: UnsafePointer<Float>, _ fl: Float, _ mx: Float,
                         _ e: UnsafeMutablePointer<Float>, _ a: Int, _ b: Int) -> Double {
    var k = a
    while k < b { e[k] = fastExp(m[k] * Swift.max(s[k], fl) - mx); k += 1 }
    // Four accumulators break the dependency chain of the double additions.
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    k = a
    while k + 4 <= b {
        s0 += Double(e[k]); s1 += Double(e[k + 1]); s2 += Double(e[k + 2]); s3 += Double(e[k + 3])
        k += 4
    }
    while k < b { s0 += Double(e[k]); k += 1 }
    return (s0 + s1) + (s2 + s3)
}

/// `exp(x)` in single precision, written so that loops over it vectorise (no calls, no
/// float-to-integer conversion): Cephes' `expf`, `exp(x) = 2^n exp(r)` with
/// `n = round(x / ln 2)` (by adding 1.5 * 2^23), `r = x - n ln 2` (ln 2 split in two parts) and a
/// degree-7 polynomial for `exp(r)`, `|r| <= ln(2)/2`. Relative error about 2e-7 for
/// `x` in [-87, 88]; `x` is clamped to that range (`exp(-87)` ~ 1.6e-38 stands in for smaller values).
@inline(__always)
func fastExp(_ x: Float) -> Float {
    let xc = Swift.min(Swift.max(x, -87), 88)
    let shifted = xc * 1.442_695_04 + 12_582_912  // 1.5 * 2^23: rounds to an integer, to nearest
    let n = shifted - 12_582_912
    let r = (xc - n * 0.693_359_375) + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    let er = (p * r) * r + r + 1
    // The low bits of `shifted` hold n + 2^22 + 2^23 offset: 0x4B40_0000 + n.
    let bits = shifted.bitPattern &- 0x4B40_0000 &+ 127
    return er * Float(bitPattern: bits &<< 23)
}

@inline(__always)
private func rangeAccumulate(_ m: UnsafePointer<Float>, _ e: UnsafePointer<Float>, _ c: Float,
                             _ g: UnsafeMutablePointer<Float>, _ a: Int, _ b: Int) {
    var k = a
    while k < b { g[k] += c * m[k] * e[k]; k += 1 }
}
