import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// The evaluation pipeline (SPEC 8-9): encode the training set at every rotation and the test and
// OOD sets under the SEI views (every rank its contiguous shard), gather the features on rank 0
// in rank order, fit the C x R class Gaussians, run Self-Ensemble Inference for every way x
// aggregation, and write the report, figures and score files.

/// Which features the Gaussians are fitted to (SPEC 8).
public enum EvalFeature: String, Sendable, Codable, CaseIterable {
    /// The L2-normalised projection-head output u = z / max(||z||, 1e-12) (official).
    case projection
    /// The encoder feature after global average pooling (8w values).
    case backbone
}

/// Options of `runEvaluation` / `evaluateFeatures`.
public struct EvalOptions: Sendable {
    /// SEI ways to report, a subset of {1, 4, 8}. The test and OOD sets are encoded once under
    /// the largest requested layout (8 if requested, else 4, else 1); smaller ways use its views.
    public var seiWays: [Int]
    /// Aggregations of the multi-view ways (1-way has the single row "none").
    public var aggregations: [Aggregation]
    public var feature: EvalFeature
    /// R: 4 when the model was trained with the rotation task, 1 otherwise.
    public var rotations: Int
    /// Ridge added to every covariance (SPEC 8).
    public var ridge: Double
    /// Images (network inputs, i.e. views) per forward pass.
    public var batch: Int
    /// Use only this many training images (evenly spaced over the file, so class-sorted files
    /// keep every class); nil = all.
    public var trainLimit: Int?
    /// Use only this many images of the test set and of each OOD set (evenly spaced); nil = all.
    public var testLimit: Int?
    /// Also feed each training image horizontally flipped (in its original frame) at every
    /// rotation, as the authors' code does; off by default (SPEC 8: un-augmented images).
    public var trainFlipped: Bool
    /// Name of the in-distribution set in the report; nil = the test file's base name.
    public var inDistributionName: String?

    public init(seiWays: [Int] = [1, 4, 8], aggregations: [Aggregation] = Aggregation.allCases,
                feature: EvalFeature = .projection, rotations: Int = 4, ridge: Double = 1e-6,
                batch: Int = 256, trainLimit: Int? = nil, testLimit: Int? = nil,
                trainFlipped: Bool = false, inDistributionName: String? = nil) {
        self.seiWays = seiWays
        self.aggregations = aggregations
        self.feature = feature
        self.rotations = rotations
        self.ridge = ridge
        self.batch = batch
        self.trainLimit = trainLimit
        self.testLimit = testLimit
        self.trainFlipped = trainFlipped
        self.inDistributionName = inDistributionName
    }

    /// The requested ways, sorted ascending without duplicates.
    public var ways: [Int] { Array(Set(seiWays)).sorted() }

    /// The SEI layout the test and OOD sets are encoded under: 8 if requested, else 4, else 1.
    public var encodedViews: Int { ways.last ?? 1 }

    /// Throws an `EvalError` describing the first invalid option.
    public func validate() throws {
        guard !seiWays.isEmpty else { throw EvalError("evaluation: no SEI ways requested (choose from 1, 4, 8)") }
        for w in seiWays where ![1, 4, 8].contains(w) {
            throw EvalError("evaluation: SEI way \(w) is not supported (choose from 1, 4, 8)")
        }
        if seiWays.contains(where: { $0 > 1 }) && aggregations.isEmpty {
            throw EvalError("evaluation: no aggregations requested for the multi-view SEI ways (choose from avg, max, wavg)")
        }
        guard rotations == 1 || rotations == 4 else {
            throw EvalError("evaluation: rotations must be 4 (model trained with the rotation task) or 1 (without), got \(rotations)")
        }
        guard ridge >= 0, ridge.isFinite else { throw EvalError("evaluation: ridge must be a finite number >= 0, got \(ridge)") }
        guard batch >= 1 else { throw EvalError("evaluation: batch must be at least 1, got \(batch)") }
        if let l = trainLimit, l < 1 { throw EvalError("evaluation: train limit must be at least 1, got \(l)") }
        if let l = testLimit, l < 1 { throw EvalError("evaluation: test limit must be at least 1, got \(l)") }
    }
}

// MARK: - Sharding and subsets

/// The contiguous shard of positions 0..<count that `rank` of `size` encodes:
/// [count*rank/size, count*(rank+1)/size). Concatenating the shards in rank order gives 0..<count.
public func evalShard(count: Int, rank: Int, size: Int) -> Range<Int> {
    precondition(size >= 1 && rank >= 0 && rank < size && count >= 0)
    return (count * rank / size)..<(count * (rank + 1) / size)
}

/// The images evaluated when a limit applies, ascending. Without a limit (or limit >= count):
/// all. Labelled sets (every label >= 0): classes take turns, each contributing its next image in
/// file order, until `limit` images are chosen (balanced whatever the file order; a class that
/// runs out leaves its turn to the others). Unlabelled sets: `limit` evenly spaced images
/// (i * count / limit).
public func evalSubset(labels: [Int32], limit: Int?) -> [Int] {
    let count = labels.count
    guard let limit, limit < count else { return Array(0..<count) }
    guard limit > 0 else { return [] }
    guard let maxLabel = labels.max(), labels.allSatisfy({ $0 >= 0 }) else {
        return (0..<limit).map { $0 * count / limit }
    }
    var byClass = [[Int]](repeating: [], count: Int(maxLabel) + 1)
    for (i, l) in labels.enumerated() { byClass[Int(l)].append(i) }
    var next = [Int](repeating: 0, count: byClass.count)
    var chosen: [Int] = []
    chosen.reserveCapacity(limit)
    while chosen.count < limit {
        for c in 0..<byClass.count where chosen.count < limit && next[c] < byClass[c].count {
            chosen.append(byClass[c][next[c]])
            next[c] += 1
        }
    }
    return chosen.sorted()
}

/// `limit` evenly spaced indices of 0..<count (i * count / limit), or all of them.
public func evalSubset(count: Int, limit: Int?) -> [Int] {
    evalSubset(labels: [Int32](repeating: -1, count: count), limit: limit)
}

// MARK: - Encoding

/// Writes the evaluation features of the last forward (n rows) into `out` (n * dim values).
func copyFeatures(_ out: UnsafeMutablePointer<Float>, model: ResNetModel, feature: UnsafeMutablePointer<Float>,
                  z: UnsafeMutablePointer<Float>, n: Int, kind: EvalFeature) {
    switch kind {
    case .backbone:
        out.update(from: feature, count: n * model.config.featureDim)
    case .projection:
        let d = model.config.projectionDim
        for i in 0..<n {
            let src = z + i * d, dst = out + i * d
            var s: Float = 0
            for j in 0..<d { s += src[j] * src[j] }
            let inv = 1 / max(s.squareRoot(), 1e-12)
            for j in 0..<d { dst[j] = src[j] * inv }
        }
    }
}

/// The feature dimension of `kind` for `model`.
public func evalFeatureDim(_ model: ResNetModel, _ kind: EvalFeature) -> Int {
    kind == .backbone ? model.config.featureDim : model.config.projectionDim
}

/// Splits `indices` into runs of consecutive values (so the Range-based view builders apply).
func consecutiveRuns(_ indices: ArraySlice<Int>) -> [Range<Int>] {
    var runs: [Range<Int>] = []
    var start = indices.first ?? 0, prev = start - 1
    for i in indices {
        if i != prev + 1 { if prev >= start { runs.append(start..<(prev + 1)) }; start = i }
        prev = i
    }
    if !indices.isEmpty { runs.append(start..<(prev + 1)) }
    return runs
}

/// Encodes images `indices` of `dataset`, each seen in `viewsPerImage` network inputs built by
/// `makeViews(range)` ([range.count * viewsPerImage, 3, side, side]), in eval mode, at most
/// `batch` inputs per forward. Returns [indices.count * viewsPerImage, dim] features.
func encode(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>, viewsPerImage: Int,
            kind: EvalFeature, batch: Int, makeViews: (Range<Int>) -> [Float]) -> [Float] {
    let dim = evalFeatureDim(model, kind)
    let side = dataset.height, per = 3 * side * side
    var out = [Float](repeating: 0, count: indices.count * viewsPerImage * dim)
    let imagesPerForward = max(1, batch / viewsPerImage)
    var pos = indices.startIndex
    var row = 0
    var input = [Float]()
    while pos < indices.endIndex {
        let end = min(pos + imagesPerForward, indices.endIndex)
        input.removeAll(keepingCapacity: true)
        for run in consecutiveRuns(indices[pos..<end]) { input += makeViews(run) }
        let n = input.count / per
        precondition(n == (end - pos) * viewsPerImage)
        input.withUnsafeBufferPointer { ip in
            let (f, z) = model.forward(ip.baseAddress!, n: n, h: side, w: side, train: false, updateRunning: false)
            out.withUnsafeMutableBufferPointer { op in
                copyFeatures(op.baseAddress! + row * dim, model: model, feature: f, z: z, n: n, kind: kind)
            }
        }
        row += n
        pos = end
    }
    return out
}

/// Training features of images `indices` at every rotation r in 0..<rotations (and flipped, when
/// `flipped`), rows ordered image, rotation[, plain/flipped]: [indices.count * R * F, dim].
public func encodeTrainingFeatures(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>,
                                   rotations: Int, flipped: Bool, kind: EvalFeature, batch: Int) -> [Float] {
    encode(model: model, dataset: dataset, indices: indices, viewsPerImage: rotations * (flipped ? 2 : 1),
           kind: kind, batch: batch) { range in
        rotatedTrainingViews(dataset: dataset, indices: range, rotations: rotations, includeFlipped: flipped).views
    }
}

/// SEI view features of images `indices` ([indices.count, ways, dim] row-major, `evalViews`).
public func encodeViewFeatures(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>,
                               ways: Int, kind: EvalFeature, batch: Int) -> [Float] {
    encode(model: model, dataset: dataset, indices: indices, viewsPerImage: ways, kind: kind, batch: batch) { range in
        evalViews(dataset: dataset, indices: range, ways: ways)
    }
}

// MARK: - Post-encoding evaluation

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

// MARK: - The distributed pipeline

/// A data set's display name: the file's base name without extension ("<memory>" -> fallback).
func datasetName(_ d: PackedDataset, fallback: String) -> String {
    if d.path.hasPrefix("<") { return fallback }
    return ((d.path as NSString).lastPathComponent as NSString).deletingPathExtension
}

/// Checks that the data sets fit the model and each other; throws an `EvalError` naming files.
func checkEvalInputs(model: ResNetModel, train: PackedDataset, test: PackedDataset,
                     ood: [(name: String, data: PackedDataset)], options: EvalOptions) throws {
    try options.validate()
    guard train.isLabelled else {
        throw EvalError("evaluation: the training set \(train.path) is unlabelled; the class Gaussians need labels")
    }
    guard train.count > 0 else { throw EvalError("evaluation: the training set \(train.path) is empty") }
    guard test.isLabelled else {
        throw EvalError("evaluation: the in-distribution test set \(test.path) is unlabelled; accuracy needs the classes of the training set \(train.path)")
    }
    guard test.classNames == train.classNames else {
        throw EvalError("evaluation: the test set \(test.path) has \(test.numClasses) classes [\(test.classNames.joined(separator: ", "))] but the training set \(train.path) has \(train.numClasses) [\(train.classNames.joined(separator: ", "))]; they must be the same classes in the same order")
    }
    if let i = test.labels.firstIndex(where: { $0 < 0 }) {
        throw EvalError("evaluation: image \(i) of the test set \(test.path) is unlabelled")
    }
    guard test.count > 0 else { throw EvalError("evaluation: the test set \(test.path) is empty") }
    var seen = Set<String>()
    for o in ood {
        guard !o.name.isEmpty else { throw EvalError("evaluation: the OOD set \(o.data.path) has an empty name") }
        guard seen.insert(o.name).inserted else { throw EvalError("evaluation: OOD set name '\(o.name)' given twice") }
        guard o.data.count > 0 else { throw EvalError("evaluation: the OOD set '\(o.name)' (\(o.data.path)) is empty") }
    }
    let side = train.height
    for (what, d) in [("training set", train), ("test set", test)] + ood.map({ ("OOD set '\($0.name)'", $0.data) }) {
        guard d.channels == 3, d.height == d.width, d.height == side else {
            throw EvalError("evaluation: the \(what) \(d.path) has images of [\(d.channels), \(d.height), \(d.width)], expected [3, \(side), \(side)] like the training set \(train.path)")
        }
    }
    guard side >= 8 else { throw EvalError("evaluation: images of \(side)x\(side) are too small for the network (training set \(train.path))") }
    _ = model
}

/// The full evaluation over `comm` (call on every rank with the same arguments).
///
/// Every rank encodes its contiguous shard (`evalShard`) of each data set's images (after
/// `trainLimit` / `testLimit`) in eval mode: the training set at every rotation r in 0..<R, the
/// test and OOD sets under the `options.encodedViews` SEI views. The features are gathered in
/// rank order (the result does not depend on the number of ranks); rank 0 fits the Gaussians,
/// runs SEI (`evaluateFeatures`), builds the report and, with `outDir`, writes it with the
/// figures and score files (`writeEvalOutputs`). Returns the report on rank 0, nil elsewhere; an
/// error on rank 0 is thrown on every rank.
public func runEvaluation(model: ResNetModel, comm: Communicator, train: PackedDataset, test: PackedDataset,
                          ood: [(name: String, data: PackedDataset)], options: EvalOptions, outDir: String?,
                          checkpoint: String, configText: String, log: (String) -> Void) throws -> EvalReport? {
    try checkEvalInputs(model: model, train: train, test: test, ood: ood, options: options)
    let rank = comm.rank, size = comm.size
    let kind = options.feature
    let dim = evalFeatureDim(model, kind)
    let R = options.rotations, F = options.trainFlipped ? 2 : 1
    let V = options.encodedViews
    func say(_ s: String) { if rank == 0 { log(s) } }

    /// Encodes this rank's share, gathers every rank's, and reports what was measured: the
    /// inputs (images x views) encoded by all ranks over the slowest rank's time, and rank 0's own.
    func timed(_ what: String, images: Int, views: Int, _ body: () -> [Float]) -> [Float] {
        let t0 = ProcessStats.now()
        let local = body()
        let t1 = ProcessStats.now()
        var slowest = [t1 - t0]
        comm.allreduceMax(&slowest)
        let all = comm.allgatherv(local)
        let t2 = ProcessStats.now()
        let inputs = images * views
        say("eval: encoded \(what): \(images) images x \(views) views = \(inputs) inputs in "
            + String(format: "%.2f s (%.1f inputs/s over %d rank(s); rank 0: %d inputs in %.2f s); gather %.2f s",
                     slowest[0], Double(inputs) / max(slowest[0], 1e-9), size, local.count / max(dim, 1), t1 - t0, t2 - t1))
        return all
    }

    // Training set at every rotation.
    let trainIdx = evalSubset(labels: train.labels, limit: options.trainLimit)
    let trainMine = evalShard(count: trainIdx.count, rank: rank, size: size)
    say("eval: \(kind.rawValue) features (dim \(dim)), R = \(R), SEI ways \(options.ways.map(String.init).joined(separator: ",")) from \(V)-view encodings, \(size) rank(s), batch \(options.batch)")
    let trainFeatures = timed("training set \(train.path)", images: trainIdx.count, views: R * F) {
        encodeTrainingFeatures(model: model, dataset: train, indices: trainIdx[trainMine], rotations: R,
                               flipped: options.trainFlipped, kind: kind, batch: options.batch)
    }
    // Test and OOD sets under the SEI views.
    func encodeSet(_ what: String, _ d: PackedDataset) -> ViewFeatures {
        let idx = evalSubset(labels: d.labels, limit: options.testLimit)
        let mine = evalShard(count: idx.count, rank: rank, size: size)
        let f = timed(what, images: idx.count, views: V) {
            encodeViewFeatures(model: model, dataset: d, indices: idx[mine], ways: V, kind: kind, batch: options.batch)
        }
        return ViewFeatures(features: f, count: idx.count, views: V, dim: dim)
    }
    let testIdx = evalSubset(labels: test.labels, limit: options.testLimit)
    let testViews = encodeSet("test set \(test.path)", test)
    let oodViews = ood.map { (name: $0.name, views: encodeSet("OOD set '\($0.name)' \($0.data.path)", $0.data)) }

    var report: EvalReport? = nil
    var failure = ""
    var caught: Error? = nil
    if rank == 0 {
        do {
            var main: [Int] = [], aux: [Int] = []
            main.reserveCapacity(trainIdx.count * R * F); aux.reserveCapacity(trainIdx.count * R * F)
            for i in trainIdx {
                for r in 0..<R { for _ in 0..<F { main.append(Int(train.labels[i])); aux.append(r) } }
            }
            guard trainFeatures.count == main.count * dim else {
                throw EvalError("evaluation: gathered \(trainFeatures.count / max(dim, 1)) training features, expected \(main.count)")
            }
            let t0 = ProcessStats.now()
            let outcome = try evaluateFeatures(trainFeatures: trainFeatures, trainMain: main, trainAux: aux, dim: dim,
                                               numClasses: train.numClasses, test: testViews,
                                               testLabels: testIdx.map { Int(test.labels[$0]) }, ood: oodViews,
                                               options: options, classNames: train.classNames)
            say(String(format: "eval: Gaussians (%d classes x %d rotations) and SEI in %.2f s", train.numClasses, R, ProcessStats.now() - t0))
            var extra: [String] = []
            if options.trainLimit != nil && trainIdx.count < train.count {
                extra.append("training set limited to \(trainIdx.count) of \(train.count) images")
            }
            if options.testLimit != nil {
                for (n, d) in [("test", test)] + ood.map({ ($0.name, $0.data) }) where options.testLimit! < d.count {
                    extra.append("\(n) set limited to \(options.testLimit!) of \(d.count) images")
                }
            }
            let r = makeEvalReport(outcome, checkpoint: checkpoint, configText: configText,
                                   inDistribution: options.inDistributionName ?? datasetName(test, fallback: "test"),
                                   feature: kind, extraWarnings: extra)
            for row in r.rows {
                var line = "eval: " + row.label.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: " acc %6.2f", row.accuracy)
                for e in row.ood {
                    line += " | \(e.name) " + String(format: "AUROC %.2f FPR95 %.2f", e.metrics.auroc, e.metrics.fpr95)
                }
                say(line)
            }
            for w in outcome.warnings { say("eval: warning: \(w)") }
            say("eval: default row \(outcome.defaultResult.row.label)")
            if let outDir {
                let files = try writeEvalOutputs(outcome, report: r, directory: outDir)
                say("eval: wrote \(files.count) files to \(outDir)")
            }
            report = r
        } catch {
            caught = error
            failure = "\(error)"
            if failure.isEmpty { failure = "evaluation failed" }
        }
    }
    let status = size > 1 ? comm.broadcast(failure, root: 0) : failure
    if let caught { throw caught }
    if !status.isEmpty { throw EvalError("rank 0: \(status)") }
    return report
}
