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

/// `scores-<scorer>-in.txt` and `scores-<scorer>-<ood>.txt` of every post-hoc scorer (msp, odin,
/// mahalanobis, rotation), as the SEI score files: one score per line, higher = more
/// in-distribution. Returns the paths written.
func writeScorerScoreFiles(_ scores: [ScorerScores], oodNames: [String], directory: String) throws -> [String] {
    let fileNames = uniqueFileNames(oodNames)
    var written: [String] = []
    for s in scores {
        let inPath = directory + "/scores-\(s.tag)-in.txt"
        try writeScoreFile(s.inScores, to: inPath)
        written.append(inPath)
        for (k, o) in s.ood.enumerated() {
            let path = directory + "/scores-\(s.tag)-\(fileNames[k]).txt"
            try writeScoreFile(o, to: path)
            written.append(path)
        }
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

/// Chooses and draws the decision gallery (`gallery.png`, the paper's Figure 4) of an outcome:
/// the OOD images the default row scores most in-distribution (over all OOD sets) and the
/// in-distribution test images it misclassifies with the highest scores, `perSection` each, every
/// one with its `neighbours` nearest training images by cosine similarity of the features the
/// Gaussians use (view 0: the image as is; training images at rotation 0).
/// `trainFeatures` are the fitted rows (image, rotation[, flip]) of `trainIdx`, `rowsPerImage`
/// rows per image.
func writeGallery(_ outcome: EvalOutcome, train: PackedDataset, trainIdx: [Int], trainFeatures: [Float], rowsPerImage: Int,
                  test: PackedDataset, testIdx: [Int], testViews: ViewFeatures,
                  ood: [(name: String, data: PackedDataset, idx: [Int], views: ViewFeatures)],
                  classNames: [String], path: String, perSection: Int = 6, neighbours: Int = 5) throws {
    let d = testViews.dim
    func unit(_ p: UnsafePointer<Float>) -> [Float] {
        var s: Float = 0
        for j in 0..<d { s += p[j] * p[j] }
        let inv = 1 / max(s.squareRoot(), 1e-12)
        return (0..<d).map { p[$0] * inv }
    }
    let bank: [[Float]] = trainFeatures.withUnsafeBufferPointer { tp in
        (0..<trainIdx.count).map { unit(tp.baseAddress! + $0 * rowsPerImage * d) }
    }
    func nearest(_ v: ViewFeatures, _ i: Int) -> [(image: [UInt8], caption: String)] {
        let q = v.features.withUnsafeBufferPointer { unit($0.baseAddress! + i * v.views * d) }
        let sims = bank.map { b in zip(b, q).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        let top = sims.indices.sorted { sims[$0] > sims[$1] }.prefix(neighbours)
        return top.map { k in
            let img = Array(train.image(trainIdx[k]))
            return (img, "\(classNames[Int(train.labels[trainIdx[k]])]) \(String(format: "%.3f", sims[k]))")
        }
    }
    let r = outcome.defaultResult
    var oodEntries: [(score: Double, entry: GalleryEntry)] = []
    for (k, o) in ood.enumerated() {
        let scores = r.oodScores[k]
        // The OOD images of this set scored highest: candidates for the section's top overall.
        for i in scores.indices.sorted(by: { scores[$0] > scores[$1] }).prefix(perSection) {
            let e = GalleryEntry(image: Array(o.data.image(o.idx[i])),
                                 caption: ["\(o.name) #\(o.idx[i])", "as \(classNames[r.oodPred[k][i]])", String(format: "score %.3g", scores[i])],
                                 neighbours: nearest(o.views, i))
            oodEntries.append((scores[i], e))
        }
    }
    let wrong = r.inScore.indices.filter { r.inPred[$0] != outcome.testLabels[$0] }.sorted { r.inScore[$0] > r.inScore[$1] }
    let inEntries = wrong.prefix(perSection).map { i in
        GalleryEntry(image: Array(test.image(testIdx[i])),
                     caption: ["\(classNames[outcome.testLabels[i]]) #\(testIdx[i])", "as \(classNames[r.inPred[i]])", String(format: "score %.3g", r.inScore[i])],
                     neighbours: nearest(testViews, i))
    }
    let cv = galleryFigure(title: "What fools the detector (\(r.row.label) SEI; nearest training images by feature, cosine)",
                           sections: [("OOD images scored most in-distribution", oodEntries.sorted { $0.score > $1.score }.prefix(perSection).map(\.entry)),
                                      ("In-distribution images misclassified with the highest scores", Array(inEntries))],
                           side: test.height)
    try cv.writePNG(to: path)
}
