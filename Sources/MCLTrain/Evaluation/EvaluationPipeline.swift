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
