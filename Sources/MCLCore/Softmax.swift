import Foundation

/// Softmax of one row of logits, in double precision with the maximum subtracted first:
///
///     p_k = exp(l_k - m) / sum_j exp(l_j - m),   m = max_j l_j,
///     log p_k = l_k - m - log sum_j exp(l_j - m).
///
/// Shared by the cross-entropy objectives and the post-hoc scorers (MSP, ODIN, rotation).
public enum Softmax {
    /// `log sum_j exp(l_j / temperature)` of `count` logits.
    public static func logSumExp(_ l: UnsafePointer<Float>, count: Int, temperature: Double = 1) -> Double {
        var m = -Double.infinity
        for k in 0..<count { m = max(m, Double(l[k]) / temperature) }
        var s = 0.0
        for k in 0..<count { s += Foundation.exp(Double(l[k]) / temperature - m) }
        return m + Foundation.log(s)
    }

    /// The probabilities `softmax(l / temperature)` of one row.
    public static func probabilities(_ l: UnsafePointer<Float>, count: Int, temperature: Double = 1) -> [Double] {
        let lse = logSumExp(l, count: count, temperature: temperature)
        return (0..<count).map { Foundation.exp(Double(l[$0]) / temperature - lse) }
    }

    /// The index of the largest logit (the first on ties).
    public static func argmax(_ l: UnsafePointer<Float>, count: Int) -> Int {
        var best = 0
        for k in 1..<max(count, 1) where l[k] > l[best] { best = k }
        return best
    }
}
