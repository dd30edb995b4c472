import Foundation

/// Error measures used by the golden tests.
public enum Compare {
    /// max_i |a_i - b_i| / max(max_i |b_i|, tiny): error relative to the largest reference element.
    public static func relToMax(_ a: [Float], _ b: [Float]) -> Double {
        relToMax(a.map(Double.init), b.map(Double.init))
    }

    public static func relToMax(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
        var scale = 0.0, err = 0.0
        for i in 0..<a.count {
            scale = max(scale, abs(b[i]))
            err = max(err, abs(a[i] - b[i]))
        }
        if a.contains(where: { !$0.isFinite }) { return .infinity }
        return err / max(scale, 1e-30)
    }

    /// The golden rule for scores and metrics: a pair passes when |a-b| <= `abs` or
    /// |a-b| <= `rel` |b| (non-finite values must match exactly). Returns whether all pass and the
    /// worst relative error among the pairs above the absolute floor.
    public static func relOrAbs(_ a: [Double], _ b: [Double], rel: Double = 1e-5, abs absTol: Double = 1e-9) -> (ok: Bool, worst: Double) {
        precondition(a.count == b.count)
        var ok = true, worst = 0.0
        for i in 0..<a.count {
            if !a[i].isFinite || !b[i].isFinite {
                if !(a[i] == b[i] || (a[i].isNaN && b[i].isNaN)) { ok = false; worst = .infinity }
                continue
            }
            let e = Swift.abs(a[i] - b[i])
            let r = e <= absTol ? 0 : e / Swift.max(Swift.abs(b[i]), 1e-300)
            worst = Swift.max(worst, r)
            if e > absTol && e > rel * Swift.abs(b[i]) { ok = false }
        }
        return (ok, worst)
    }
}
