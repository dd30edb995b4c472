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
/// Every rank encodes its contiguous shard of whole forward passes (`evalShard(align:)`) of each data set's images (after
/// `trainLimit` / `testLimit`) in eval mode: the training set at every rotation r in 0..<R, the
/// test and OOD sets under the `options.encodedViews` SEI views. The features are gathered in
/// rank order (the features are bitwise those of one rank); rank 0 fits the Gaussians,
/// runs SEI (`evaluateFeatures`), builds the report and, with `outDir`, writes it with the
/// figures and score files (`writeEvalOutputs`). Returns the report on rank 0, nil elsewhere; an
/// error on rank 0 is thrown on every rank.
public func runEvaluation(model: ResNetModel, comm: Communicator, train: PackedDataset, test: PackedDataset,
                          ood: [(name: String, data: PackedDataset)], options: EvalOptions, outDir: String?,
                          checkpoint: String, configText: String, log: (String) -> Void) throws -> EvalReport? {
    try checkEvalInputs(model: model, train: train, test: test, ood: ood, options: options)
    try checkScorers(options.scorers, model: model, checkpoint: checkpoint)
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

    // Training set at every rotation (without the images held out for the detector's threshold).
    let evaluatedTrain = evalSubset(labels: train.labels, limit: options.trainLimit)
    let (trainIdx, heldIdx) = calibrationSplit(indices: evaluatedTrain, labels: train.labels, fraction: options.calibrationFraction)
    let trainMine = evalShard(count: trainIdx.count, rank: rank, size: size,
                              align: imagesPerForward(batch: options.batch, viewsPerImage: R * F))
    say("eval: \(kind.rawValue) features (dim \(dim)), R = \(R), SEI ways \(options.ways.map(String.init).joined(separator: ",")) from \(V)-view encodings, \(size) rank(s), batch \(options.batch)")
    let trainFeatures = timed("training set \(train.path)", images: trainIdx.count, views: R * F) {
        encodeTrainingFeatures(model: model, dataset: train, indices: trainIdx[trainMine], rotations: R,
                               flipped: options.trainFlipped, kind: kind, batch: options.batch)
    }
    // Test and OOD sets under the SEI views.
    func encodeSet(_ what: String, _ d: PackedDataset, _ idx: [Int]? = nil) -> ViewFeatures {
        let idx = idx ?? evalSubset(labels: d.labels, limit: options.testLimit)
        let mine = evalShard(count: idx.count, rank: rank, size: size, align: imagesPerForward(batch: options.batch, viewsPerImage: V))
        let f = timed(what, images: idx.count, views: V) {
            encodeViewFeatures(model: model, dataset: d, indices: idx[mine], ways: V, kind: kind, batch: options.batch)
        }
        return ViewFeatures(features: f, count: idx.count, views: V, dim: dim)
    }
    let testIdx = evalSubset(labels: test.labels, limit: options.testLimit)
    let testViews = encodeSet("test set \(test.path)", test)
    let oodViews = ood.map { (name: $0.name, views: encodeSet("OOD set '\($0.name)' \($0.data.path)", $0.data)) }
    let heldViews = heldIdx.isEmpty ? nil : encodeSet("\(heldIdx.count) held-out training images (detector threshold)", train, heldIdx)

    // The post-hoc scorers (MSP, ODIN, Mahalanobis, rotation) on the upright images, each rank's
    // shard whole scoring passes (and the Mahalanobis training features whole upright forwards),
    // so that every score is bitwise a single rank's.
    let posthoc = options.scorers.filter { $0 != .sei }
    var scored: (test: ScoredSet, ood: [(name: String, set: ScoredSet)], train: [Float])? = nil
    if !posthoc.isEmpty {
        let width = ScorerColumns(featureDim: model.config.featureDim).width
        func scoreSet(_ what: String, _ d: PackedDataset) -> ScoredSet {
            let idx = evalSubset(labels: d.labels, limit: options.testLimit)
            let mine = evalShard(count: idx.count, rank: rank, size: size, align: scoringImagesPerPass(batch: options.batch))
            let t0 = ProcessStats.now()
            let local = scoreImages(model: model, dataset: d, indices: idx[mine], scorers: posthoc,
                                    odinTemperature: options.odinTemperature, odinEpsilon: options.odinEpsilon, batch: options.batch)
            let all = comm.allgatherv(local)
            say(String(format: "eval: scored %@ (%d images) with %@ in %.2f s", what, idx.count,
                       posthoc.map(\.rawValue).joined(separator: ", "), ProcessStats.now() - t0))
            return ScoredSet(values: all, count: idx.count, width: width)
        }
        let testSet = scoreSet("test set \(test.path)", test)
        let oodSets = ood.map { (name: $0.name, set: scoreSet("OOD set '\($0.name)'", $0.data)) }
        var trainBackbone: [Float] = []
        if posthoc.contains(.mahalanobis) {
            let upright = evalShard(count: trainIdx.count, rank: rank, size: size,
                                    align: imagesPerForward(batch: options.batch, viewsPerImage: 1))
            let local = encodeTrainingFeatures(model: model, dataset: train, indices: trainIdx[upright], rotations: 1,
                                               flipped: false, kind: .backbone, batch: options.batch)
            trainBackbone = comm.allgatherv(local)
        }
        scored = (testSet, oodSets, trainBackbone)
    }

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
            var r = makeEvalReport(outcome, checkpoint: checkpoint, configText: configText,
                                   inDistribution: options.inDistributionName ?? datasetName(test, fallback: "test"),
                                   feature: kind, extraWarnings: extra)
            var scorerScores: [ScorerScores] = []
            if let scored {
                let (rows, warnings, scores) = try scorerRows(posthoc, test: scored.test, testLabels: testIdx.map { Int(test.labels[$0]) },
                                                      ood: scored.ood, trainFeatures: scored.train,
                                                      trainLabels: trainIdx.map { Int(train.labels[$0]) }, numClasses: train.numClasses,
                                                      featureDim: model.config.featureDim, ridge: options.ridge,
                                                      odinTemperature: options.odinTemperature, odinEpsilon: options.odinEpsilon)
                r.rows += rows
                r.warnings += warnings
                scorerScores = scores
            }
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
                var files = try writeEvalOutputs(outcome, report: r, directory: outDir)
                files += try writeScorerScoreFiles(scorerScores, oodNames: outcome.oodNames, directory: outDir)
                if let heldViews {
                    if FileManager.default.fileExists(atPath: checkpoint) {
                        let detector = try fitDetector(outcome, heldOut: heldViews, options: options, checkpoint: checkpoint,
                                                       configText: configText, classNames: train.classNames)
                        let path = outDir + "/detector.safetensors"
                        try detector.write(to: path)
                        files += [path, Detector.jsonPath(path)]
                        say(detectorSummary(detector, path: path))
                    } else {
                        say("eval: no detector written: the checkpoint \(checkpoint) is not a file")
                    }
                }
                let galleryPath = outDir + "/gallery.png"
                try writeGallery(outcome, train: train, trainIdx: trainIdx, trainFeatures: trainFeatures, rowsPerImage: R * F,
                                 test: test, testIdx: testIdx, testViews: testViews,
                                 ood: zip(ood, oodViews).map { ($0.name, $0.data, evalSubset(labels: $0.data.labels, limit: options.testLimit), $1.views) },
                                 classNames: train.classNames, path: galleryPath)
                files.append(galleryPath)
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

/// The detector of an evaluation: its Gaussians and default SEI row (way, aggregation), and the
/// threshold keeping `options.targetTPR` of the held-out training images (scored like test
/// images); what that threshold gives on the test set and each OOD set is kept in `measured`.
func fitDetector(_ outcome: EvalOutcome, heldOut: ViewFeatures, options: EvalOptions, checkpoint: String,
                 configText: String, classNames: [String]) throws -> Detector {
    let row = outcome.defaultResult.row
    let g = outcome.gaussians
    guard let keep = seiViewSubset(way: row.views, available: heldOut.views) else {
        throw EvalError("detector: the held-out features have \(heldOut.views) views, \(row.views)-way SEI needs others")
    }
    let all = seiDistances(gaussians: g, testViews: heldOut.features, tests: heldOut.count, views: heldOut.views)
    let D = selectViews(all, tests: heldOut.count, views: heldOut.views, classes: g.numMain, keep: keep)
    let aggregation = Aggregation(rawValue: row.aggregation) ?? .avg   // 1-way ("none"): every rule gives -D
    let held = seiScores(distances: D, tests: heldOut.count, views: row.views, classes: g.numMain, aggregation: aggregation)
    let (t, kept) = try Detector.threshold(scores: held.score, tpr: options.targetTPR)
    func fractionIn(_ s: [Double]) -> Double { Double(s.filter { $0 >= t }.count) / Double(max(1, s.count)) }
    var measured = ["test_tpr": fractionIn(outcome.defaultResult.inScore)]
    for (name, scores) in zip(outcome.oodNames, outcome.defaultResult.oodScores) { measured["ood_in_fraction." + name] = fractionIn(scores) }
    return Detector(gaussians: g, classNames: classNames, feature: options.feature.rawValue, way: row.views,
                    aggregation: aggregation, threshold: t, targetTPR: options.targetTPR, calibrationImages: heldOut.count,
                    calibrationTPR: kept, checkpointFingerprint: try fingerprintFile(checkpoint), checkpoint: checkpoint,
                    config: configText, measured: measured)
}

/// One log line on a written detector.
func detectorSummary(_ d: Detector, path: String) -> String {
    var s = String(format: "eval: detector %@: %d-way %@, threshold %.6g keeps %.2f%% of %d held-out training images (target %.0f%%); test set %.2f%% in",
                   path, d.way, d.aggregation.rawValue, d.threshold, 100 * d.calibrationTPR, d.calibrationImages,
                   100 * d.targetTPR, 100 * (d.measured["test_tpr"] ?? .nan))
    for (k, v) in d.measured.sorted(by: { $0.key < $1.key }) where k.hasPrefix("ood_in_fraction.") {
        s += String(format: ", OOD '%@' %.2f%% in", String(k.dropFirst("ood_in_fraction.".count)), 100 * v)
    }
    return s
}
