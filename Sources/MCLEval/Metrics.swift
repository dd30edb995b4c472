import Foundation
import MCLCore

// Out-of-distribution metrics (SPEC 9). In-distribution samples are the positive class and a
// higher score means "more in-distribution". All four numbers are percentages.

/// The four OOD detection metrics of SPEC 9, in percent.
///
/// - `auroc`: area under the ROC curve (TPR against FPR), ties counting one half; equal to the
///   Mann-Whitney probability P(s_in > s_ood) + 0.5 P(s_in = s_ood) (sklearn `roc_auc_score`).
/// - `auprIn`: average precision with in-distribution positive, score s
///   (sklearn `average_precision_score`): AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds.
/// - `auprOut`: average precision with OOD positive and score -s.
/// - `fpr95`: FPR at the first point of the full ROC curve (no points dropped) whose TPR >= 0.95,
///   i.e. at the largest threshold that keeps 95% of the in-distribution samples.
///
/// A metric that is undefined (no in-distribution or no OOD samples) is NaN.
public struct OODMetrics: Codable, Sendable, Equatable {
    public var auroc: Double
    public var auprIn: Double
    public var auprOut: Double
    public var fpr95: Double

    public init(auroc: Double, auprIn: Double, auprOut: Double, fpr95: Double) {
        self.auroc = auroc
        self.auprIn = auprIn
        self.auprOut = auprOut
        self.fpr95 = fpr95
    }

    enum CodingKeys: String, CodingKey {
        case auroc, auprIn = "aupr_in", auprOut = "aupr_out", fpr95
    }
}

/// Cumulative counts of a binary classifier at every distinct threshold, highest first
/// (scikit-learn's `_binary_clf_curve`): `tps[k]` positives and `fps[k]` negatives have a score
/// >= the k-th largest distinct score. Ties share one point, so the curves treat them exactly.
/// NaN scores are ordered as -infinity (least positive). Cost: one O(n log n) sort.
struct BinaryCurve {
    var tps: [Int] = []
    var fps: [Int] = []
    var thresholds: [Double] = []
    var positives: Int { tps.last ?? 0 }
    var negatives: Int { fps.last ?? 0 }

    init(positive: [Double], negative: [Double]) {
        var all: [(s: Double, pos: Bool)] = []
        all.reserveCapacity(positive.count + negative.count)
        for s in positive { all.append((s.isNaN ? -.infinity : s, true)) }
        for s in negative { all.append((s.isNaN ? -.infinity : s, false)) }
        all.sort { $0.s > $1.s }
        var tp = 0, fp = 0
        var i = 0
        while i < all.count {
            let s = all[i].s
            while i < all.count && all[i].s == s {
                if all[i].pos { tp += 1 } else { fp += 1 }
                i += 1
            }
            tps.append(tp)
            fps.append(fp)
            thresholds.append(s)
        }
    }

    /// Trapezoidal area under (FPR, TPR) starting at (0, 0): sum_k (F_k - F_{k-1})(T_k + T_{k-1}) / 2
    /// over the integer counts, divided once by P*N. A tied block of p positives and n negatives
    /// contributes p*n/2, which is the "ties count one half" rule.
    var auc: Double {
        let p = positives, n = negatives
        guard p > 0, n > 0 else { return .nan }
        var twiceArea = 0  // exact integer arithmetic: sum (dF)(T + T_prev)
        var pt = 0, pf = 0
        for k in 0..<tps.count {
            twiceArea += (fps[k] - pf) * (tps[k] + pt)
            pt = tps[k]
            pf = fps[k]
        }
        return Double(twiceArea) / (2 * Double(p) * Double(n))
    }

    /// Average precision: sum_k (R_k - R_{k-1}) P_k with R_k = tps_k / P, P_k = tps_k / (tps_k + fps_k),
    /// R_0 = 0 (scikit-learn `average_precision_score`; no interpolation).
    var averagePrecision: Double {
        let p = positives
        guard p > 0 else { return .nan }
        var ap = 0.0
        var prev = 0
        for k in 0..<tps.count where tps[k] != prev {
            ap += Double(tps[k] - prev) / Double(p) * (Double(tps[k]) / Double(tps[k] + fps[k]))
            prev = tps[k]
        }
        return ap
    }
}

/// ROC curve as scikit-learn's `roc_curve(drop_intermediate=False)`: the point (0, 0) first, then
/// one point per distinct score from the highest down, ending at (1, 1). Fractions, not percent.
/// In-distribution is positive; `threshold[k]` is the score at point k (+infinity for the first).
public func rocCurve(inScores: [Double], oodScores: [Double]) -> (fpr: [Double], tpr: [Double], thresholds: [Double]) {
    let c = BinaryCurve(positive: inScores, negative: oodScores)
    let p = Double(c.positives), n = Double(c.negatives)
    var fpr = [0.0], tpr = [0.0], thr = [Double.infinity]
    for k in 0..<c.tps.count {
        fpr.append(n > 0 ? Double(c.fps[k]) / n : .nan)
        tpr.append(p > 0 ? Double(c.tps[k]) / p : .nan)
        thr.append(c.thresholds[k])
    }
    return (fpr, tpr, thr)
}

/// The four metrics of SPEC 9 in percent, in O(n log n) with exact handling of ties.
///
/// AUROC = 100 * [#{(i, o): s_i > s_o} + 0.5 #{(i, o): s_i = s_o}] / (N_in N_ood);
/// AUPR-In = 100 * AP(in positive, s); AUPR-Out = 100 * AP(OOD positive, -s);
/// FPR@95 = 100 * FPR_k at the smallest k with TPR_k >= 0.95 on the `rocCurve` points.
public func oodMetrics(inScores: [Double], oodScores: [Double]) -> OODMetrics {
    let c = BinaryCurve(positive: inScores, negative: oodScores)
    let out = BinaryCurve(positive: oodScores.map { -$0 }, negative: inScores.map { -$0 })
    var fpr95 = Double.nan
    let p = c.positives, n = c.negatives
    if p > 0 && n > 0 {
        // The prepended (0, 0) point has TPR 0 < 0.95, so only the threshold points can match.
        for k in 0..<c.tps.count where Double(c.tps[k]) / Double(p) >= 0.95 {
            fpr95 = Double(c.fps[k]) / Double(n)
            break
        }
    }
    return OODMetrics(auroc: 100 * c.auc,
                      auprIn: n > 0 ? 100 * c.averagePrecision : .nan,
                      auprOut: p > 0 ? 100 * out.averagePrecision : .nan,
                      fpr95: 100 * fpr95)
}

/// Classification accuracy in percent: 100 * #{pred_i == label_i} / n (NaN for n = 0).
public func accuracy(pred: [Int], labels: [Int]) -> Double {
    precondition(pred.count == labels.count, "accuracy: \(pred.count) predictions for \(labels.count) labels")
    guard !pred.isEmpty else { return .nan }
    var hit = 0
    for i in 0..<pred.count where pred[i] == labels[i] { hit += 1 }
    return 100 * Double(hit) / Double(pred.count)
}
