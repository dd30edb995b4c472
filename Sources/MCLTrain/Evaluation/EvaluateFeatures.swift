import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// From encoded features to results: the class Gaussians, SEI rows, the default row and the report.
/// What `evaluateFeatures` computed: the Gaussians, every SEI row with its predictions and
/// scores, and which row is the default one (figures, score files).
public struct EvalOutcome: Sendable {
    public var gaussians: ClassGaussians
    /// One result per (way, aggregation): 1-way first ("none"), then each larger way with the
    /// aggregations in the order requested.
    public var results: [SEIResult]
    /// Index into `results` of the default row (`defaultRowIndex`).
    public var defaultIndex: Int
    public var testLabels: [Int]
    public var oodNames: [String]
    public var warnings: [String]

    public var defaultResult: SEIResult { results[defaultIndex] }
}

/// The default SEI row, the paper's main configuration (Table 4/6: 8-way SEI, weighted average):
/// the largest way with `wavg`; without `wavg`, the largest way's first row.
public func defaultRowIndex(rows: [EvalRow]) -> Int {
    precondition(!rows.isEmpty)
    let maxWay = rows.map(\.views).max()!
    if let i = rows.firstIndex(where: { $0.views == maxWay && $0.aggregation == Aggregation.wavg.rawValue }) { return i }
    return rows.firstIndex(where: { $0.views == maxWay })!
}

public func defaultRowIndex(_ results: [SEIResult]) -> Int { defaultRowIndex(rows: results.map(\.row)) }

/// The post-encoding part of the evaluation (rank 0 of `runEvaluation`): fits the C x R
/// Gaussians (R = options.rotations) to the training features ([n, dim], labels main 0..<C and
/// aux 0..<R), then runs SEI on the test view features ([T, V, dim], V = options.encodedViews
/// or any layout containing the requested ways) for every requested way x aggregation, with
/// accuracy against `testLabels` and the OOD metrics of every OOD set.
public func evaluateFeatures(trainFeatures: [Float], trainMain: [Int], trainAux: [Int], dim: Int,
                             numClasses: Int, test: ViewFeatures, testLabels: [Int],
                             ood: [(name: String, views: ViewFeatures)], options: EvalOptions,
                             classNames: [String]? = nil, printWarnings: Bool = false) throws -> EvalOutcome {
    try options.validate()
    guard test.dim == dim else { throw EvalError("evaluation: test features have dimension \(test.dim), training features \(dim)") }
    guard test.count > 0 else { throw EvalError("evaluation: the in-distribution test set is empty") }
    for w in options.ways where seiViewSubset(way: w, available: test.views) == nil {
        throw EvalError("evaluation: \(w)-way SEI needs views that the \(test.views)-view test features do not have")
    }
    var names = Set<String>()
    for o in ood {
        guard !o.name.isEmpty else { throw EvalError("evaluation: an OOD set has an empty name") }
        guard names.insert(o.name).inserted else { throw EvalError("evaluation: OOD set name '\(o.name)' given twice") }
        guard o.views.count > 0 else { throw EvalError("evaluation: OOD set '\(o.name)' is empty") }
    }
    let g = try ClassGaussians(features: trainFeatures, dim: dim, mainLabels: trainMain, auxLabels: trainAux,
                               numMain: numClasses, numAux: options.rotations, ridge: options.ridge,
                               classNames: classNames, printWarnings: printWarnings)
    let results = try evaluateSEI(gaussians: g, inDistribution: test, inLabels: testLabels, ood: ood,
                                  ways: options.ways, aggregations: options.aggregations)
    guard !results.isEmpty else { throw EvalError("evaluation: no SEI rows computed") }
    return EvalOutcome(gaussians: g, results: results, defaultIndex: defaultRowIndex(results),
                       testLabels: testLabels, oodNames: ood.map(\.name),
                       warnings: g.warnings.map { "Gaussian " + $0 })
}

/// The report of an outcome (Table 6 layout).
public func makeEvalReport(_ outcome: EvalOutcome, checkpoint: String, configText: String,
                           inDistribution: String, feature: EvalFeature, extraWarnings: [String] = []) -> EvalReport {
    EvalReport(checkpoint: checkpoint, config: configText, inDistribution: inDistribution,
               feature: feature.rawValue, oodSets: outcome.oodNames, rows: outcome.results.map(\.row),
               warnings: outcome.warnings + extraWarnings)
}
