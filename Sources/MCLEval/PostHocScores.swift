import Foundation
import COpenBLAS
import MCLCore

// The post-hoc OOD scorers of a model with a classifier (the baselines of the paper's Table 1).
// Every score is "higher = more in-distribution", like SEI's.

/// Maximum softmax probability (Hendrycks & Gimpel 2016, the "Baseline"): for logits l_i of n
/// images (`[n, classes]`), score_i = max_k softmax(l_i / T)_k and the prediction argmax_k l_ik.
/// ODIN's score is this at its temperature on the perturbed images.
/// With `log`, the score is log max_k softmax(l_i / T)_k (computed directly, so that confident
/// images are not all rounded to a probability of exactly 1).
public func maxSoftmaxScores(logits: [Float], count n: Int, classes: Int, temperature: Double = 1,
                             log: Bool = false) -> (score: [Double], pred: [Int]) {
    precondition(logits.count == n * classes)
    var score = [Double](repeating: 0, count: n), pred = [Int](repeating: 0, count: n)
    logits.withUnsafeBufferPointer { lp in
        for i in 0..<n {
            let row = lp.baseAddress! + i * classes
            let k = Softmax.argmax(row, count: classes)
            // max softmax = exp(l_k / T - logsumexp(l / T)).
            let logP = Double(row[k]) / temperature - Softmax.logSumExp(row, count: classes, temperature: temperature)
            score[i] = log ? logP : Foundation.exp(logP)
            pred[i] = k
        }
    }
    return (score, pred)
}

/// The auxiliary-rotation score (Hendrycks et al. 2019, section 4.2): for image i with class
/// logits c_i (upright image) and rotation-head logits q_{i,r} of the image rotated by r,
///
///     score_i = KL(U || softmax(c_i)) - (1/4) sum_r CE(q_{i,r}, r),
///     KL(U || p) = sum_k (1/K) log((1/K) / p_k) = -log K - (1/K) sum_k log p_k.
///
/// A confident class prediction and well-predicted rotations both make an image look
/// in-distribution. `rotationLogits` is `[n, 4, 4]` (image, rotation r, head output).
public func rotationScores(classLogits: [Float], rotationLogits: [Float], count n: Int, classes: Int) -> [Double] {
    precondition(classLogits.count == n * classes && rotationLogits.count == n * 16)
    var out = [Double](repeating: 0, count: n)
    classLogits.withUnsafeBufferPointer { cp in
        rotationLogits.withUnsafeBufferPointer { qp in
            for i in 0..<n {
                let c = cp.baseAddress! + i * classes
                let lse = Softmax.logSumExp(c, count: classes)
                var meanLog = 0.0
                for k in 0..<classes { meanLog += Double(c[k]) - lse }
                let kl = -Foundation.log(Double(classes)) - meanLog / Double(classes)
                var rot = 0.0
                for r in 0..<4 {
                    let q = qp.baseAddress! + (i * 4 + r) * 4
                    rot += Softmax.logSumExp(q, count: 4) - Double(q[r])
                }
                out[i] = kl - rot / 4
            }
        }
    }
    return out
}

/// Class-conditional Gaussians with one covariance shared by all classes (Lee et al. 2018), on
/// the encoder feature: mu_c = the mean of class c's n_c training features,
///
///     Sigma = (1/n) sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T + ridge I   (the pooled,
///     maximum-likelihood estimate, as sklearn's empirical covariance of the centred features),
///
/// and score(x) = -min_c (x - mu_c)^T Sigma^{-1} (x - mu_c), the prediction the arg min.
public struct TiedGaussian: Sendable {
    public let gaussians: ClassGaussians

    /// Fits to `features` ([n, dim]) with labels in 0..<numClasses.
    public init(features: [Float], labels: [Int], numClasses: Int, dim: Int, ridge: Double) throws {
        let n = labels.count
        guard n > 0, features.count == n * dim else {
            throw EvalError("Mahalanobis: \(features.count) feature values for \(n) training samples of dimension \(dim)")
        }
        guard labels.allSatisfy({ $0 >= 0 && $0 < numClasses }) else { throw EvalError("Mahalanobis: a label outside 0..<\(numClasses)") }
        var means = [Double](repeating: 0, count: numClasses * dim)
        var counts = [Int](repeating: 0, count: numClasses)
        for i in 0..<n {
            counts[labels[i]] += 1
            for j in 0..<dim { means[labels[i] * dim + j] += Double(features[i * dim + j]) }
        }
        for c in 0..<numClasses where counts[c] > 0 { for j in 0..<dim { means[c * dim + j] /= Double(counts[c]) } }
        var x = [Double](repeating: 0, count: n * dim)
        for i in 0..<n { for j in 0..<dim { x[i * dim + j] = Double(features[i * dim + j]) - means[labels[i] * dim + j] } }
        var s = [Double](repeating: 0, count: dim * dim)
        x.withUnsafeBufferPointer { xp in
            s.withUnsafeMutableBufferPointer { sp in
                cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, Int32(dim), Int32(n), 1.0 / Double(n), xp.baseAddress, Int32(dim),
                            0.0, sp.baseAddress, Int32(dim))
            }
        }
        var trace = 0.0
        for j in 0..<dim { trace += s[j * dim + j] }
        var lambda = ridge
        var warnings: [String] = []
        var chol = s
        while true {
            chol = s
            for j in 0..<dim { chol[j * dim + j] += lambda }
            let info = chol.withUnsafeMutableBufferPointer { LAPACKE_dpotrf(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(dim), $0.baseAddress, Int32(dim)) }
            if info == 0 { break }
            let next = max(lambda * 10, 1e-12 * max(trace / Double(dim), 1e-300))
            guard next.isFinite, next < 1e300 else { throw EvalError("Mahalanobis: no ridge makes the tied covariance positive definite (features not finite?)") }
            lambda = next
        }
        if lambda != ridge { warnings.append(String(format: "Mahalanobis tied covariance: ridge raised from %g to %.3g", ridge, lambda)) }
        for i in 0..<dim { for j in (i + 1)..<dim { chol[i * dim + j] = 0 } }
        var all = [Double](); all.reserveCapacity(numClasses * dim * dim)
        for _ in 0..<numClasses { all += chol }
        gaussians = try ClassGaussians(numMain: numClasses, numAux: 1, dim: dim, ridge: ridge, means: means, cholesky: all,
                                       counts: counts, ridges: [Double](repeating: lambda, count: numClasses), warnings: warnings)
    }

    /// Scores (minus the smallest squared distance) and predictions of `count` feature rows.
    public func scores(_ features: [Float], count n: Int) -> (score: [Double], pred: [Int]) {
        let C = gaussians.numMain
        let d = gaussians.distances(features, count: n, rotation: 0)
        var score = [Double](repeating: 0, count: n), pred = [Int](repeating: 0, count: n)
        for i in 0..<n {
            var best = 0
            for c in 1..<C where d[i * C + c] < d[i * C + best] { best = c }
            pred[i] = best
            score[i] = -d[i * C + best] * d[i * C + best]
        }
        return (score, pred)
    }
}
