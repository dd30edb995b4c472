import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// The post-hoc scorers of `eval.scorers` beside SEI (the paper's Table 1 baselines): maximum
// softmax probability, ODIN, Mahalanobis with a tied covariance, and the auxiliary-rotation score.
// Every rank scores its shard of each set; rank 0 turns the gathered scores into report rows.

/// The columns of one image's scorer outputs (gathered as floats). Scores are gathered as logs
/// where the probability saturates (MSP, ODIN: log of the maximum softmax probability); a log is
/// monotone, so AUROC, FPR@95 and AUPR are those of the probability.
struct ScorerColumns {
    let featureDim: Int
    static let logMSP = 0, mspPred = 1, logODIN = 2, odinPred = 3, rotation = 4, feature = 5
    var width: Int { ScorerColumns.feature + featureDim }
}

/// Checks that the model can serve every requested scorer; the message names the scorer and the checkpoint.
/// `subject` names the model in the message when it is not a checkpoint's (a run about to train).
func checkScorers(_ scorers: [Scorer], model: ResNetModel, checkpoint: String, subject: String? = nil) throws {
    let who = subject ?? "the model of checkpoint \(checkpoint)"
    for s in scorers where s.needsClassifier && !model.hasClassifier {
        throw EvalError("eval.scorers: '\(s.rawValue)' reads the classifier's logits, and \(who) has none (no classifier.weight; it was trained with a loss without a classifier, e.g. mcl or simclr): use the scorers sei or mahalanobis, or a checkpoint of loss.kind ce, ce-rotation or ce-simclr")
    }
    if scorers.contains(.rotation) && !model.hasRotationHead {
        throw EvalError("eval.scorers: 'rotation' reads the rotation head, and \(who) has none (no rotation_head.weight; train it with loss.kind ce-rotation)")
    }
}

/// ODIN (Liang et al. 2017) on n upright images (NCHW): with T the temperature and y the
/// predicted class, x' = x - epsilon sign(grad_x [-log softmax(f(x)/T)_y]) (sign(0) = +1, as
/// the authors' `torch.ge(grad, 0)`), then score = log max_k softmax(f(x')/T)_k. The inputs are
/// in [0, 1] without normalisation, so epsilon is in pixel units. Returns (log score, prediction).
func odinScores(model: ResNetModel, images: UnsafePointer<Float>, count n: Int, temperature T: Double,
                epsilon: Double) -> (score: [Double], pred: [Int]) {
    let K = model.config.classes, side = 32, per = 3 * side * side
    model.forward(images, n: n, h: side, w: side, train: false, updateRunning: false)
    let logits = model.logits!
    // d(-log softmax(l/T)_y)/dl_k = (softmax(l/T)_k - [k = y]) / T.
    var dLogits = [Float](repeating: 0, count: n * K)
    for i in 0..<n {
        let row = logits + i * K
        let y = Softmax.argmax(row, count: K)
        let p = Softmax.probabilities(row, count: K, temperature: T)
        for k in 0..<K { dLogits[i * K + k] = Float((p[k] - (k == y ? 1 : 0)) / T) }
    }
    let grad = dLogits.withUnsafeBufferPointer { model.inputGradient(dLogits: $0.baseAddress!) }
    var perturbed = [Float](repeating: 0, count: n * per)
    let e = Float(epsilon)
    for j in 0..<(n * per) { perturbed[j] = images[j] - (grad[j] >= 0 ? e : -e) }
    perturbed.withUnsafeBufferPointer { model.forward($0.baseAddress!, n: n, h: side, w: side, train: false, updateRunning: false) }
    var score = [Double](repeating: 0, count: n), pred = [Int](repeating: 0, count: n)
    let out = model.logits!
    for i in 0..<n {
        let row = out + i * K
        let k = Softmax.argmax(row, count: K)
        score[i] = Double(row[k]) / T - Softmax.logSumExp(row, count: K, temperature: T)
        pred[i] = k
    }
    return (score, pred)
}

/// Images per forward pass of `scoreImages` (the rotation scorer forwards 4 views of each):
/// ranks' shards start on multiples of it so that their passes are a single rank's.
func scoringImagesPerPass(batch: Int) -> Int { max(1, batch / 4) }

/// This rank's scorer outputs for images `indices` of `dataset`: [indices.count, columns.width],
/// in passes of `scoringImagesPerPass(batch:)` images from the first.
func scoreImages(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>, scorers: [Scorer],
                 odinTemperature: Double, odinEpsilon: Double, batch: Int) -> [Float] {
    let cols = ScorerColumns(featureDim: model.config.featureDim)
    let W = cols.width, K = model.config.classes, fd = model.config.featureDim
    var out = [Float](repeating: 0, count: indices.count * W)
    let step = scoringImagesPerPass(batch: batch)
    var pos = indices.startIndex, row = 0
    while pos < indices.endIndex {
        let end = min(pos + step, indices.endIndex)
        let runs = consecutiveRuns(indices[pos..<end])
        let upright = runs.flatMap { evalViews(dataset: dataset, indices: $0, ways: 1) }
        let n = end - pos
        var classLogits = [Float]()
        upright.withUnsafeBufferPointer { ip in
            let (f, _) = model.forward(ip.baseAddress!, n: n, train: false, updateRunning: false)
            for i in 0..<n {
                for j in 0..<fd { out[(row + i) * W + ScorerColumns.feature + j] = f[i * fd + j] }
            }
            if model.hasClassifier {
                classLogits = Array(UnsafeBufferPointer(start: model.logits!, count: n * K))
                let (s, p) = maxSoftmaxScores(logits: classLogits, count: n, classes: K, log: true)
                for i in 0..<n {
                    out[(row + i) * W + ScorerColumns.logMSP] = Float(s[i])
                    out[(row + i) * W + ScorerColumns.mspPred] = Float(p[i])
                }
            }
        }
        if scorers.contains(.rotation) {
            let four = runs.flatMap { evalViews(dataset: dataset, indices: $0, ways: 4) }
            four.withUnsafeBufferPointer { model.forward($0.baseAddress!, n: 4 * n, train: false, updateRunning: false) }
            let q = Array(UnsafeBufferPointer(start: model.rotationLogits!, count: 4 * n * 4))
            let s = rotationScores(classLogits: classLogits, rotationLogits: q, count: n, classes: K)
            for i in 0..<n { out[(row + i) * W + ScorerColumns.rotation] = Float(s[i]) }
        }
        if scorers.contains(.odin) {
            let (s, p) = upright.withUnsafeBufferPointer {
                odinScores(model: model, images: $0.baseAddress!, count: n, temperature: odinTemperature, epsilon: odinEpsilon)
            }
            for i in 0..<n {
                out[(row + i) * W + ScorerColumns.logODIN] = Float(s[i])
                out[(row + i) * W + ScorerColumns.odinPred] = Float(p[i])
            }
        }
        row += n
        pos = end
    }
    return out
}

/// Scorer outputs of one whole set, gathered in rank order: [count, width].
struct ScoredSet {
    var values: [Float]
    var count: Int
    var width: Int
    func column(_ c: Int) -> [Double] { (0..<count).map { Double(values[$0 * width + c]) } }
    func features(dim: Int) -> [Float] {
        var f = [Float](repeating: 0, count: count * dim)
        for i in 0..<count { for j in 0..<dim { f[i * dim + j] = values[i * width + ScorerColumns.feature + j] } }
        return f
    }
}

/// One post-hoc scorer's per-image scores (higher = more in-distribution): `tag` names its score
/// files (`scores-<tag>-in.txt`, `scores-<tag>-<ood>.txt`), `ood` is in the order of the OOD sets.
struct ScorerScores {
    var tag: String
    var inScores: [Double]
    var ood: [[Double]]
}

/// The report rows of the requested post-hoc scorers (besides SEI), in the order of `Scorer.allCases`:
/// accuracy of the prediction each scorer makes and the OOD metrics per set, and the scores themselves.
func scorerRows(_ scorers: [Scorer], test: ScoredSet, testLabels: [Int], ood: [(name: String, set: ScoredSet)],
                trainFeatures: [Float], trainLabels: [Int], numClasses: Int, featureDim: Int, ridge: Double,
                odinTemperature: Double, odinEpsilon: Double) throws -> (rows: [EvalRow], warnings: [String], scores: [ScorerScores]) {
    var rows: [EvalRow] = [], warnings: [String] = [], scores: [ScorerScores] = []
    func row(_ name: String, tag: String, _ inScores: [Double], _ oodScores: [[Double]], _ pred: [Int]?) {
        let entries = zip(ood, oodScores).map { OODEntry(name: $0.name, metrics: oodMetrics(inScores: inScores, oodScores: $1)) }
        let acc = pred.map { accuracy(pred: $0, labels: testLabels) } ?? .nan
        var r = EvalRow(views: 1, aggregation: "none", accuracy: acc, ood: entries)
        r.method = name
        rows.append(r)
        scores.append(ScorerScores(tag: tag, inScores: inScores, ood: oodScores))
    }
    func row(_ name: String, tag: String, _ score: (ScoredSet) -> [Double], _ pred: [Int]?) {
        row(name, tag: tag, score(test), ood.map { score($0.set) }, pred)
    }
    func preds(_ s: ScoredSet, _ c: Int) -> [Int] { s.column(c).map { Int($0) } }
    for s in scorers {
        switch s {
        case .sei: continue
        case .msp: row("msp", tag: "msp", { $0.column(ScorerColumns.logMSP) }, preds(test, ScorerColumns.mspPred))
        case .odin:
            row(String(format: "odin T=%g eps=%g", odinTemperature, odinEpsilon), tag: "odin", { $0.column(ScorerColumns.logODIN) },
                preds(test, ScorerColumns.odinPred))
        case .rotation: row("rotation", tag: "rotation", { $0.column(ScorerColumns.rotation) }, preds(test, ScorerColumns.mspPred))
        case .mahalanobis:
            let g = try TiedGaussian(features: trainFeatures, labels: trainLabels, numClasses: numClasses, dim: featureDim, ridge: ridge)
            warnings += g.gaussians.warnings
            let testScores = g.scores(test.features(dim: featureDim), count: test.count)
            let oodScores = ood.map { g.scores($0.set.features(dim: featureDim), count: $0.set.count).score }
            row("mahalanobis", tag: "mahalanobis", testScores.score, oodScores, testScores.pred)
        }
    }
    return (rows, warnings, scores)
}
