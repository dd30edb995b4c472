import Foundation
import MCLCore

// Self-Ensemble Inference (SPEC 8). Views of a test image: 1-way (as is), 4-way (rotations 0..3),
// 8-way (rotation v/2; odd v horizontally flipped before rotating). View v is scored only against
// the Gaussians of its rotation, giving D[v][c]; lower distance = more in-distribution.

/// How the per-view distances D[v][c] of one test image are combined (SPEC 8).
public enum Aggregation: String, CaseIterable, Codable, Sendable {
    /// A[c] = (1/V) sum_v D[v][c]; pred = argmin_c A[c]; score = -A[pred].
    case avg
    /// (v*, pred) = argmin_{v,c} D[v][c]; score = -D[v*][pred] (the highest in-distribution score).
    case max
    /// A[c] = V / sum_v (1 / D[v][c]) (harmonic mean over views, the official weighted average);
    /// pred = argmin_c A[c]; score = -A[pred].
    case wavg
}

/// The rotation (auxiliary label) whose Gaussians score view v of a V-way SEI, the golden rule
/// 'v // (views / num_aux)': r = floor(v / (V / R)) = floor(v R / V) (exact in integers).
/// 1-way uses rotation 0. With R = 4: 4-way view v -> v; 8-way view v -> v / 2 (odd views are the
/// flipped ones). With R = 1 (no auxiliary task) every view uses rotation 0.
public func seiRotation(view v: Int, views: Int, numAux: Int) -> Int {
    precondition(v >= 0 && v < views && numAux >= 1, "view \(v) outside 0..<\(views) (numAux \(numAux))")
    return (v * numAux) / views
}

/// Distances D [T, V, C] of test views [T, V, d] (float, row-major): view v of every test image is
/// scored against the Gaussians of rotation `seiRotation(v, V, R)` by `ClassGaussians.distances`.
public func seiDistances(gaussians: ClassGaussians, testViews: [Float], tests: Int, views: Int) -> [Double] {
    let d = gaussians.dim, C = gaussians.numMain
    precondition(testViews.count == tests * views * d,
                 "seiDistances: \(testViews.count) values for [\(tests), \(views), \(d)]")
    var out = [Double](repeating: 0, count: tests * views * C)
    testViews.withUnsafeBufferPointer { xp in
        for v in 0..<views {
            let r = seiRotation(view: v, views: views, numAux: gaussians.numAux)
            let dv = gaussians.distances(rows: xp.baseAddress! + v * d, count: tests, stride: views * d, rotation: r)
            for t in 0..<tests {
                for c in 0..<C { out[(t * views + v) * C + c] = dv[t * C + c] }
            }
        }
    }
    return out
}

/// Predictions and scores of SEI from distances D [T, V, C] (see `Aggregation` for the rules).
/// Ties in argmin go to the first index (lowest v, then lowest c), like torch.argmin.
public func seiScores(distances D: [Double], tests: Int, views: Int, classes: Int,
                      aggregation: Aggregation) -> (pred: [Int], score: [Double]) {
    let V = views, C = classes
    precondition(D.count == tests * V * C, "seiScores: \(D.count) distances for [\(tests), \(V), \(C)]")
    var pred = [Int](repeating: 0, count: tests)
    var score = [Double](repeating: 0, count: tests)
    var a = [Double](repeating: 0, count: C)
    for t in 0..<tests {
        let base = t * V * C
        switch aggregation {
        case .max:
            var best = Double.infinity, bc = 0, found = false
            for v in 0..<V {
                for c in 0..<C {
                    let x = D[base + v * C + c]
                    if !found || x < best { best = x; bc = c; found = true }
                }
            }
            pred[t] = bc
            score[t] = -best
            continue
        case .avg:
            for c in 0..<C {
                var s = 0.0
                for v in 0..<V { s += D[base + v * C + c] }
                a[c] = s / Double(V)
            }
        case .wavg:
            for c in 0..<C {
                var s = 0.0
                for v in 0..<V { s += 1 / D[base + v * C + c] }  // D = 0 gives +inf, so A = 0
                a[c] = Double(V) / s
            }
        }
        var bc = 0
        for c in 1..<max(C, 1) where a[c] < a[bc] { bc = c }
        pred[t] = bc
        score[t] = -a[bc]
    }
    return (pred, score)
}

/// Keeps views `keep` of D [T, V, C]: the result is [T, keep.count, C].
public func selectViews(_ D: [Double], tests: Int, views: Int, classes: Int, keep: [Int]) -> [Double] {
    precondition(D.count == tests * views * classes)
    var out = [Double](repeating: 0, count: tests * keep.count * classes)
    for t in 0..<tests {
        for (k, v) in keep.enumerated() {
            precondition(v >= 0 && v < views)
            for c in 0..<classes { out[(t * keep.count + k) * classes + c] = D[(t * views + v) * classes + c] }
        }
    }
    return out
}

/// The views of an `available`-way layout that form a `way`-way SEI, or nil if they are not
/// contained in it: 1 of any -> [0]; 4 of 4 or 8 of 8 -> all; 4 of 8 -> [0, 2, 4, 6] (the
/// unflipped rotations, whose rotation v/2 equals the 4-way rule's rotation).
public func seiViewSubset(way: Int, available: Int) -> [Int]? {
    if way == available { return Array(0..<way) }
    if way == 1 && available >= 1 { return [0] }
    if way == 4 && available == 8 { return [0, 2, 4, 6] }
    return nil
}

/// Test features of T images seen in V views each: [T, V, d] row-major.
public struct ViewFeatures: Sendable {
    public var features: [Float]
    public var count: Int
    public var views: Int
    public var dim: Int
    public init(features: [Float], count: Int, views: Int, dim: Int) {
        precondition(features.count == count * views * dim, "ViewFeatures: \(features.count) values for [\(count), \(views), \(dim)]")
        self.features = features
        self.count = count
        self.views = views
        self.dim = dim
    }
}

/// One SEI configuration's predictions and scores, for reports and figures.
public struct SEIResult: Sendable {
    public var row: EvalRow
    /// In-distribution predictions and scores (score = -aggregated distance).
    public var inPred: [Int]
    public var inScore: [Double]
    /// Scores of each OOD set, in the order of `row.ood`.
    public var oodScores: [[Double]]
    /// The class each OOD image is taken for, per OOD set.
    public var oodPred: [[Int]] = []
}

/// Evaluates every requested SEI way x aggregation from test view features.
///
/// Distances are computed once for the largest layout given (`inDistribution.views`, usually 8)
/// and the smaller ways take the contained views (`seiViewSubset`). A 1-way SEI has a single row
/// labelled aggregation "none" (all aggregations coincide for V = 1). Accuracy is pred vs
/// `inLabels`; each OOD set gets `oodMetrics(in scores, OOD scores)`.
public func evaluateSEI(gaussians: ClassGaussians, inDistribution: ViewFeatures, inLabels: [Int],
                        ood: [(name: String, views: ViewFeatures)], ways: [Int] = [1, 4, 8],
                        aggregations: [Aggregation] = Aggregation.allCases) throws -> [SEIResult] {
    let C = gaussians.numMain
    guard inLabels.count == inDistribution.count else {
        throw EvalError("evaluateSEI: \(inLabels.count) labels for \(inDistribution.count) in-distribution images")
    }
    for (name, v) in ood where v.views != inDistribution.views || v.dim != gaussians.dim {
        throw EvalError("evaluateSEI: OOD set \(name) has \(v.views) views of dimension \(v.dim), expected \(inDistribution.views) of \(gaussians.dim)")
    }
    guard inDistribution.dim == gaussians.dim else {
        throw EvalError("evaluateSEI: test features have dimension \(inDistribution.dim), the Gaussians \(gaussians.dim)")
    }
    let V = inDistribution.views
    let dIn = seiDistances(gaussians: gaussians, testViews: inDistribution.features, tests: inDistribution.count, views: V)
    let dOod = ood.map { seiDistances(gaussians: gaussians, testViews: $0.views.features, tests: $0.views.count, views: V) }
    var results: [SEIResult] = []
    for way in ways {
        guard let keep = seiViewSubset(way: way, available: V) else {
            throw EvalError("evaluateSEI: \(way)-way SEI needs views the \(V)-view test features do not have")
        }
        // The subset's rotations must agree with the way's own rule.
        for (k, v) in keep.enumerated() where seiRotation(view: k, views: way, numAux: gaussians.numAux)
            != seiRotation(view: v, views: V, numAux: gaussians.numAux) {
            throw EvalError("evaluateSEI: view \(v) of the \(V)-way layout is not view \(k) of \(way)-way SEI for \(gaussians.numAux) auxiliary labels")
        }
        let inD = selectViews(dIn, tests: inDistribution.count, views: V, classes: C, keep: keep)
        let oodD = zip(ood, dOod).map { selectViews($1, tests: $0.views.count, views: V, classes: C, keep: keep) }
        for agg in (way == 1 ? [Aggregation.avg] : aggregations) {
            let (pred, score) = seiScores(distances: inD, tests: inDistribution.count, views: way, classes: C, aggregation: agg)
            var oodScores: [[Double]] = [], oodPred: [[Int]] = []
            var entries: [OODEntry] = []
            for (k, set) in ood.enumerated() {
                let (p, s) = seiScores(distances: oodD[k], tests: set.views.count, views: way, classes: C, aggregation: agg)
                oodScores.append(s)
                oodPred.append(p)
                entries.append(OODEntry(name: set.name, metrics: oodMetrics(inScores: score, oodScores: s)))
            }
            let row = EvalRow(views: way, aggregation: way == 1 ? "none" : agg.rawValue,
                              accuracy: accuracy(pred: pred, labels: inLabels), ood: entries)
            results.append(SEIResult(row: row, inPred: pred, inScore: score, oodScores: oodScores, oodPred: oodPred))
        }
    }
    return results
}
