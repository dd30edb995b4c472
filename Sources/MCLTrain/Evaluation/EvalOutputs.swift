import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// The files an evaluation writes: report, ROC and histogram figures, score files.
/// The file-name tag of an SEI row: "1way", "4way-avg", "8way-wavg", ...
public func seiRowTag(_ row: EvalRow) -> String {
    row.aggregation == "none" ? "\(row.views)way" : "\(row.views)way-\(row.aggregation)"
}

/// A data-set name made safe for a file name (letters, digits, '-', '_', '.'; others -> '_').
public func fileSafeName(_ s: String) -> String {
    let t = String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") ? $0 : "_" })
    return t.isEmpty ? "_" : t
}

/// Writes `report.md`, `report.json` and the figures and score files into `directory`:
/// - `roc-<tag>.png` for every SEI row (tag from `seiRowTag`: `1way`, `4way-avg`, `8way-wavg`, ...),
///   one ROC curve per OOD set;
/// - `hist-<ood>.png` for every OOD set: score histograms (IND correct / IND misclassified / OOD)
///   of the default row;
/// - `scores-<tag>-in.txt` and `scores-<tag>-<ood>.txt` of the default row, one score per line,
///   higher = more in-distribution (`mcl-dist metrics --in ... --ood ...` recomputes the metrics).
/// Returns the paths written.
@discardableResult
public func writeEvalOutputs(_ outcome: EvalOutcome, report: EvalReport, directory: String) throws -> [String] {
    try report.write(directory: directory)
    var written = [directory + "/report.md", directory + "/report.json"]
    let ood = outcome.oodNames
    let fileNames = uniqueFileNames(ood)
    if !ood.isEmpty {
        for r in outcome.results {
            let curves = zip(ood, r.oodScores).map { ROCCurveData(name: $0, inScores: r.inScore, oodScores: $1) }
            let path = directory + "/roc-\(seiRowTag(r.row)).png"
            try rocFigure(curves: curves, title: "ROC, \(r.row.label) SEI, \(report.inDistribution) vs OOD").writePNG(to: path)
            written.append(path)
        }
    }
    let d = outcome.defaultResult
    let tag = seiRowTag(d.row)
    for (k, name) in ood.enumerated() {
        let path = directory + "/hist-\(fileNames[k]).png"
        try scoreHistogramFigure(inScores: d.inScore, inPred: d.inPred, inLabels: outcome.testLabels,
                                 oodScores: d.oodScores[k], oodName: name,
                                 title: "Scores, \(d.row.label) SEI: \(report.inDistribution) vs \(name)").writePNG(to: path)
        written.append(path)
    }
    let inPath = directory + "/scores-\(tag)-in.txt"
    try writeScoreFile(d.inScore, to: inPath)
    written.append(inPath)
    for (k, _) in ood.enumerated() {
        let path = directory + "/scores-\(tag)-\(fileNames[k]).txt"
        try writeScoreFile(d.oodScores[k], to: path)
        written.append(path)
    }
    return written
}

/// File-safe, pairwise distinct names for the OOD sets, none equal to "in".
func uniqueFileNames(_ names: [String]) -> [String] {
    var used: Set<String> = ["in"]
    return names.map { n in
        var base = fileSafeName(n)
        if base == "in" { base = "ood-in" }
        var cand = base, k = 2
        while used.contains(cand) { cand = "\(base)-\(k)"; k += 1 }
        used.insert(cand)
        return cand
    }
}
