import Foundation
import MCLCore

/// Softmax cross-entropy of rows of logits against class labels, scaled:
///
///     L = scale * sum_i l(i),    l(i) = -log softmax(logits_i)[y_i] = log sum_k exp(logits_ik) - logits_{i,y_i},
///     dL/dlogits_ik = scale * (softmax(logits_i)_k - [k = y_i]).
///
/// With `scale = 1 / (rows of the global batch)` each rank's rows give its share of the mean (the
/// shares are summed across ranks). `grad` ([rows, classes]) is written, or added to with
/// `accumulate`. Returns the scaled sum of this call's rows.
@discardableResult
public func softmaxCrossEntropy(logits: UnsafePointer<Float>, labels: [Int32], rows: Int, classes: Int, scale: Double,
                                grad: UnsafeMutablePointer<Float>?, accumulate: Bool = false) -> Double {
    precondition(labels.count == rows, "one label per row")
    var total = 0.0
    for i in 0..<rows {
        let row = logits + i * classes
        let y = Int(labels[i])
        precondition(y >= 0 && y < classes, "label \(y) outside 0..<\(classes)")
        let lse = Softmax.logSumExp(row, count: classes)
        total += lse - Double(row[y])
        if let grad {
            let g = grad + i * classes
            for k in 0..<classes {
                let d = scale * (Foundation.exp(Double(row[k]) - lse) - (k == y ? 1 : 0))
                g[k] = accumulate ? g[k] + Float(d) : Float(d)
            }
        }
    }
    return scale * total
}

/// The supervised objectives (baselines of the paper's Tables 1 and 3), on the class logits
/// `c_i`, the rotation logits `q_i` and the projections `z_i` of the global batch:
///
/// - `ce`: `L = (1/V) sum_i CE(c_i, y_i)` over the V views (one augmented view per image).
/// - `ce-rotation` (Hendrycks et al. 2019, auxiliary rotation): the batch holds the 4 rotations of
///   each image; `L = (1/V_0) sum_{i: r_i = 0} CE(c_i, y_i) + w (1/V) sum_i CE(q_i, r_i)`, the class
///   loss on the upright views (V_0 = V / 4), the rotation loss on all, `w = rotationWeight` (0.5).
/// - `ce-simclr` (joint fine-tuning, the paper's eq. 36, Winkens et al. 2020): two SimCLR views per
///   image; `L = (1/V) sum_i CE(c_i, y_i) + lambda L_SimCLR(z)`, `lambda = simclrWeight` (0.1).
///
/// This computes the cross-entropy terms of `rows` views of the global batch (of `globalViews`
/// views, `globalUpright` of them upright): their share of L and dL/dc, dL/dq of those rows.
public struct SupervisedRows {
    public var loss = 0.0
    /// The class and rotation cross-entropy shares (unweighted, in L's normalisation).
    public var classLoss = 0.0
    public var rotationLoss = 0.0
    public var gradLogits: [Float]
    public var gradRotationLogits: [Float]

    public init(kind: LossKind, logits: UnsafePointer<Float>, rotationLogits: UnsafePointer<Float>?, main: [Int32], aux: [Int32],
                rows n: Int, classes: Int, globalViews: Int, globalUpright: Int, rotationWeight: Double) {
        precondition(kind.isSupervised, "SupervisedRows is for the cross-entropy objectives")
        gradLogits = [Float](repeating: 0, count: n * classes)
        gradRotationLogits = []
        switch kind {
        case .ceRotation:
            guard let rotationLogits else { preconditionFailure("ce-rotation needs the rotation head's logits") }
            // Class loss on the upright views only: the other rows keep a zero gradient.
            let upright = (0..<n).filter { aux[$0] == 0 }
            var sub = [Float](repeating: 0, count: upright.count * classes)
            for (k, i) in upright.enumerated() { for c in 0..<classes { sub[k * classes + c] = logits[i * classes + c] } }
            var g = [Float](repeating: 0, count: upright.count * classes)
            classLoss = sub.withUnsafeBufferPointer { s in
                g.withUnsafeMutableBufferPointer { gp in
                    softmaxCrossEntropy(logits: s.baseAddress!, labels: upright.map { main[$0] }, rows: upright.count, classes: classes,
                                        scale: 1 / Double(globalUpright), grad: gp.baseAddress!)
                }
            }
            for (k, i) in upright.enumerated() { for c in 0..<classes { gradLogits[i * classes + c] = g[k * classes + c] } }
            gradRotationLogits = [Float](repeating: 0, count: n * 4)
            rotationLoss = gradRotationLogits.withUnsafeMutableBufferPointer { gp in
                softmaxCrossEntropy(logits: rotationLogits, labels: aux, rows: n, classes: 4,
                                    scale: 1 / Double(globalViews), grad: gp.baseAddress!)
            }
            let w = Float(rotationWeight)
            for k in gradRotationLogits.indices { gradRotationLogits[k] *= w }
            loss = classLoss + rotationWeight * rotationLoss
        default:
            classLoss = gradLogits.withUnsafeMutableBufferPointer { gp in
                softmaxCrossEntropy(logits: logits, labels: main, rows: n, classes: classes, scale: 1 / Double(globalViews),
                                    grad: gp.baseAddress!)
            }
            loss = classLoss
        }
    }
}
