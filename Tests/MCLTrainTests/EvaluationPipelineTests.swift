import XCTest
import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval
@testable import MCLTrain

/// The evaluation pipeline: golden SEI cases through `evaluateFeatures`, an end-to-end run on a
/// tiny random ResNet, rank-count invariance over an in-process 2-rank communicator, and the
/// data/model mismatch errors.
final class EvaluationPipelineTests: XCTestCase {

    // MARK: golden

    static func check(_ a: [Double], _ b: [Double]) -> (Bool, Double) {
        let r = Compare.relOrAbs(a, b, rel: 1e-5, abs: 1e-9)
        return (r.ok, r.worst)
    }

    /// Every listed `sei-*` case through `evaluateFeatures`. The case's own `golden` line comes
    /// from GoldenEvalTests; this test reports through XCTest only.
    func testGoldenSEIThroughPipeline() throws {
        let set = GoldenSet()
        let names = try set.cases("sei-")
        XCTAssertFalse(names.isEmpty, "no sei-* case listed in \(set.manifestPath)")
        for name in names {
            let problems = try checkGolden(try set.open(name))
            XCTAssertTrue(problems.isEmpty, "\(name) through the pipeline: \(problems.joined(separator: "; "))")
        }
    }

    /// Feeds one golden case's features through `evaluateFeatures` (the post-encoding part of
    /// `runEvaluation`); returns what disagrees.
    func checkGolden(_ c: GoldenCase) throws -> [String] {
        let f = c.file
        let C = try c.int("num_main"), R = try c.int("num_aux"), d = try c.int("dim"), V = try c.int("views")
        let ridge = try c.double("ridge")
        let feats = try f.floats("train_features")
        let n = feats.count / d
        let T = try f.shape("test_views")[0]
        let test = ViewFeatures(features: try f.floats("test_views", shape: [T, V, d]), count: T, views: V, dim: d)
        let labels = try f.ints("test_main", shape: [T])
        let options = EvalOptions(seiWays: [V], aggregations: Aggregation.allCases, rotations: R, ridge: ridge)
        let out = try evaluateFeatures(trainFeatures: feats, trainMain: try f.ints("train_main", shape: [n]),
                                       trainAux: try f.ints("train_aux", shape: [n]), dim: d, numClasses: C,
                                       test: test, testLabels: labels, ood: [], options: options)
        var problems: [String] = []
        if !out.warnings.isEmpty { problems.append("unexpected warnings: \(out.warnings)") }
        for agg in Aggregation.allCases {
            // 1-way has the single row "none" (every aggregation coincides for one view).
            let rowAgg = V == 1 ? "none" : agg.rawValue
            guard let r = out.results.first(where: { $0.row.views == V && $0.row.aggregation == rowAgg }) else {
                problems.append("no \(V)-way \(rowAgg) row"); continue
            }
            let refPred = try f.ints("\(agg.rawValue).pred", shape: [T])
            let bad = (0..<T).filter { r.inPred[$0] != refPred[$0] }
            if !bad.isEmpty {
                problems.append("\(agg.rawValue).pred differs at \(bad.count) tests (first \(bad[0]): \(r.inPred[bad[0]]) vs \(refPred[bad[0]]))")
            }
            let (ok, e) = Self.check(r.inScore, try f.doubles("\(agg.rawValue).score", shape: [T]))
            if !ok { problems.append("\(agg.rawValue).score rel err \(e)") }
            let acc = accuracy(pred: refPred, labels: labels)
            if r.row.accuracy != acc { problems.append("\(agg.rawValue) accuracy \(r.row.accuracy) vs \(acc) from the golden predictions") }
        }
        return problems
    }

    // MARK: tiny data and model

    static let classNames = ["red", "green", "blue"]

    /// Class c: channel c bright with a random pattern; other channels dim.
    static func inDistribution(perClass: Int, seed: UInt64, names: [String] = classNames) -> PackedDataset {
        var rng = SplitMix64(seed: seed)
        var images: [UInt8] = [], labels: [Int32] = []
        for k in 0..<(perClass * names.count) {
            let c = k % names.count
            for ch in 0..<3 {
                for _ in 0..<1024 {
                    let base = ch == c ? 150.0 : 40.0
                    images.append(UInt8(min(255, base + 100 * rng.nextDouble())))
                }
            }
            labels.append(Int32(c))
        }
        return PackedDataset(RawDataset(images: images, labels: labels, classNames: names))
    }

    /// Unlabelled images: uniform noise (`flat` false) or nearly flat grey (`flat` true).
    static func outOfDistribution(count: Int, seed: UInt64, flat: Bool) -> PackedDataset {
        var rng = SplitMix64(seed: seed)
        var images: [UInt8] = []
        for _ in 0..<count {
            let g = 60 + 120 * rng.nextDouble()
            for _ in 0..<3072 { images.append(UInt8(flat ? g + 8 * rng.nextDouble() : 255 * rng.nextDouble())) }
        }
        return PackedDataset(RawDataset(images: images, labels: [Int32](repeating: -1, count: count), classNames: []))
    }

    static func tinyModel() throws -> ResNetModel {
        let m = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 16, projectionDim: 8))
        m.initialise(seed: 11)
        return m
    }

    struct Fixture {
        let train: PackedDataset, test: PackedDataset
        let ood: [(name: String, data: PackedDataset)]
    }

    static func fixture() -> Fixture {
        Fixture(train: inDistribution(perClass: 12, seed: 1), test: inDistribution(perClass: 5, seed: 2),
                ood: [(name: "noise", data: outOfDistribution(count: 10, seed: 3, flat: false)),
                      (name: "flat", data: outOfDistribution(count: 9, seed: 4, flat: true))])
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "mcl-evalpipe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    // MARK: end to end

    func testEndToEndTinyModel() throws {
        let fx = Self.fixture()
        let model = try Self.tinyModel()
        let dir = try tempDir() + "/out"
        var lines: [String] = []
        let report = try runEvaluation(model: model, comm: LocalCommunicator(), train: fx.train, test: fx.test, ood: fx.ood,
                                       options: EvalOptions(batch: 64, inDistributionName: "rgb"), outDir: dir,
                                       checkpoint: "/tmp/tiny.safetensors", configText: "model: tiny\n",
                                       log: { lines.append($0) })
        for l in lines { print(l) }
        let r = try XCTUnwrap(report)
        XCTAssertTrue(lines.contains { $0.contains("inputs/s over 1 rank(s)") }, "no encoding rate in the log")
        XCTAssertEqual(r.checkpoint, "/tmp/tiny.safetensors")
        XCTAssertEqual(r.config, "model: tiny\n")
        XCTAssertEqual(r.feature, "projection")
        XCTAssertEqual(r.inDistribution, "rgb")
        XCTAssertEqual(r.oodSets, ["noise", "flat"])
        XCTAssertEqual(r.rows.map(\.label), ["1-way", "4-way avg", "4-way max", "4-way wavg", "8-way avg", "8-way max", "8-way wavg"])
        for row in r.rows {
            XCTAssertTrue(row.accuracy.isFinite, "\(row.label) accuracy")
            XCTAssertEqual(row.ood.map(\.name), ["noise", "flat"])
            for e in row.ood {
                let m = e.metrics
                XCTAssertTrue([m.auroc, m.auprIn, m.auprOut, m.fpr95].allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 100 },
                              "\(row.label) \(e.name): \(m)")
            }
        }
        // report.json / report.md
        let decoded = try EvalReport.decode(json: try Data(contentsOf: URL(fileURLWithPath: dir + "/report.json")))
        XCTAssertEqual(decoded, r)
        let md = try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
        for row in ["| 1-way | - |", "| 4-way | avg |", "| 4-way | max |", "| 4-way | wavg |",
                    "| 8-way | avg |", "| 8-way | max |", "| 8-way | wavg |"] {
            XCTAssertTrue(md.contains(row), "report.md lacks the row \(row)")
        }
        XCTAssertTrue(md.contains("noise AUROC") && md.contains("flat FPR@95"))
        // figures
        let pngs = ["roc-1way", "roc-4way-avg", "roc-4way-max", "roc-4way-wavg", "roc-8way-avg", "roc-8way-max",
                    "roc-8way-wavg", "hist-noise", "hist-flat"].map { dir + "/" + $0 + ".png" }
        for p in pngs {
            let data = try Data(contentsOf: URL(fileURLWithPath: p))
            XCTAssertEqual(Array(data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] as [UInt8], p)
            XCTAssertGreaterThan(data.count, 1000, p)
        }
        // score files of the default row (8-way wavg) reproduce its metrics
        let inScores = try readScoreFile(dir + "/scores-8way-wavg-in.txt")
        XCTAssertEqual(inScores.count, fx.test.count)
        let def = try XCTUnwrap(r.rows.first { $0.label == "8-way wavg" })
        for (k, name) in ["noise", "flat"].enumerated() {
            let s = try readScoreFile(dir + "/scores-8way-wavg-\(name).txt")
            XCTAssertEqual(s.count, fx.ood[k].data.count)
            XCTAssertEqual(oodMetrics(inScores: inScores, oodScores: s), def.ood[k].metrics, name)
        }
    }

    /// The same evaluation over 1 and 2 ranks (threads with an in-process communicator) gives the
    /// same report; batch 4 makes every forward one image's views, so features are bitwise equal.
    func testRankCountInvariance() throws {
        let fx = Self.fixture()
        let options = EvalOptions(seiWays: [1, 4], aggregations: [.wavg, .avg], feature: .backbone, batch: 4,
                                  trainLimit: 30, testLimit: 8)
        let one = try XCTUnwrap(try runEvaluation(model: try Self.tinyModel(), comm: LocalCommunicator(), train: fx.train,
                                                  test: fx.test, ood: fx.ood, options: options, outDir: nil,
                                                  checkpoint: "c", configText: "", log: { _ in }))
        let group = ThreadGroup(size: 2)
        let results = LockedBox<[Int: Result<EvalReport?, Error>]>([:])
        let models = [try Self.tinyModel(), try Self.tinyModel()]
        let done = DispatchGroup()
        for rank in 0..<2 {
            done.enter()
            let comm = ThreadCommunicator(group: group, rank: rank)
            let model = models[rank]
            let thread = Thread {
                let r = Result { try runEvaluation(model: model, comm: comm, train: fx.train, test: fx.test, ood: fx.ood,
                                                   options: options, outDir: nil, checkpoint: "c", configText: "", log: { _ in }) }
                results.update { $0[rank] = r }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        let all = results.value
        let two = try XCTUnwrap(try all[0]!.get())
        XCTAssertNil(try all[1]!.get())
        XCTAssertEqual(two.rows, one.rows)
        XCTAssertEqual(one.rows.map(\.label), ["1-way", "4-way wavg", "4-way avg"])
        XCTAssertEqual(one.feature, "backbone")
        XCTAssertTrue(one.warnings.contains { $0.contains("training set limited to 30 of 36") }, "\(one.warnings)")
        // backbone features: 32 dimensions, 10 images per (class, rotation) -> degenerate groups, reported.
        XCTAssertTrue(one.warnings.contains { $0.contains("class 2 (blue) rotation 3") && $0.contains("ridge raised") }, "\(one.warnings)")
    }

    // MARK: errors and helpers

    func testMismatchedClassesNameTheFiles() throws {
        let dir = try tempDir()
        let trainPath = dir + "/train.mcld", testPath = dir + "/test.mcld"
        let t = Self.inDistribution(perClass: 2, seed: 1)
        try PackedFormat.write(RawDataset(images: (0..<t.count).flatMap { Array(t.image($0)) }, labels: t.labels,
                                          classNames: t.classNames), to: trainPath)
        let other = Self.inDistribution(perClass: 2, seed: 2, names: ["cat", "dog", "ship"])
        try PackedFormat.write(RawDataset(images: (0..<other.count).flatMap { Array(other.image($0)) }, labels: other.labels,
                                          classNames: other.classNames), to: testPath)
        let model = try Self.tinyModel()
        XCTAssertThrowsError(try runEvaluation(model: model, comm: LocalCommunicator(), train: try PackedDataset(path: trainPath),
                                               test: try PackedDataset(path: testPath), ood: [], options: EvalOptions(),
                                               outDir: nil, checkpoint: "c", configText: "", log: { _ in })) { error in
            let s = "\(error)"
            XCTAssertTrue(s.contains(trainPath) && s.contains(testPath), s)
            XCTAssertTrue(s.contains("cat") && s.contains("red"), s)
        }
        // Unlabelled training set, bad options.
        let noise = Self.outOfDistribution(count: 2, seed: 1, flat: false)
        XCTAssertThrowsError(try runEvaluation(model: model, comm: LocalCommunicator(), train: noise, test: t, ood: [],
                                               options: EvalOptions(), outDir: nil, checkpoint: "c", configText: "", log: { _ in }))
        for bad in [EvalOptions(seiWays: [2]), EvalOptions(rotations: 2), EvalOptions(batch: 0), EvalOptions(seiWays: [])] {
            XCTAssertThrowsError(try bad.validate())
        }
        XCTAssertThrowsError(try runEvaluation(model: model, comm: LocalCommunicator(), train: t, test: t,
                                               ood: [(name: "x", data: noise), (name: "x", data: noise)],
                                               options: EvalOptions(), outDir: nil, checkpoint: "c", configText: "", log: { _ in }))
    }

    func testShardsSubsetsAndDefaultRow() {
        for count in [0, 1, 5, 17, 45] {
            for size in 1...4 {
                let shards = (0..<size).map { evalShard(count: count, rank: $0, size: size) }
                XCTAssertEqual(shards.flatMap { Array($0) }, Array(0..<count))
                // Aligned: whole blocks of `align` (a rank's forwards are a single rank's forwards).
                for align in [1, 3, 32] {
                    let aligned = (0..<size).map { evalShard(count: count, rank: $0, size: size, align: align) }
                    XCTAssertEqual(aligned.flatMap { Array($0) }, Array(0..<count), "count \(count) size \(size) align \(align)")
                    for r in aligned where !r.isEmpty { XCTAssertEqual(r.lowerBound % align, 0, "count \(count) size \(size) align \(align)") }
                }
            }
        }
        XCTAssertEqual(evalShard(count: 45, rank: 0, size: 2, align: 32), 0..<32)
        XCTAssertEqual(evalShard(count: 45, rank: 1, size: 2, align: 32), 32..<45)
        XCTAssertEqual(evalShard(count: 100, rank: 1, size: 3, align: 10), 30..<60)
        XCTAssertEqual(imagesPerForward(batch: 256, viewsPerImage: 8), 32)
        XCTAssertEqual(imagesPerForward(batch: 4, viewsPerImage: 8), 1)
        XCTAssertEqual(evalSubset(count: 10, limit: 4), [0, 2, 5, 7])
        XCTAssertEqual(evalSubset(count: 3, limit: 5), [0, 1, 2])
        // Labelled: classes take turns (sorted file: 0 0 0 0 1 1 2), a class that runs out yields.
        XCTAssertEqual(evalSubset(labels: [0, 0, 0, 0, 1, 1, 2], limit: 5), [0, 1, 4, 5, 6])
        XCTAssertEqual(evalSubset(labels: [0, 0, 0, 0, 1, 1, 2], limit: 6), [0, 1, 2, 4, 5, 6])
        XCTAssertEqual(evalSubset(labels: [2, 1, 0, 2, 1, 0], limit: 3), [0, 1, 2])
        XCTAssertEqual(consecutiveRuns([1, 2, 3, 7, 9, 10][...]), [1..<4, 7..<8, 9..<11])
        XCTAssertEqual(consecutiveRuns([Int]()[...]), [])
        func res(_ v: Int, _ a: String) -> EvalRow { EvalRow(views: v, aggregation: a, accuracy: 0, ood: []) }
        XCTAssertEqual(defaultRowIndex(rows: [res(1, "none"), res(8, "avg"), res(8, "wavg")]), 2)
        XCTAssertEqual(defaultRowIndex(rows: [res(1, "none"), res(4, "wavg"), res(4, "max")]), 1)
        XCTAssertEqual(defaultRowIndex(rows: [res(1, "none"), res(4, "max")]), 1)
        XCTAssertEqual(defaultRowIndex(rows: [res(1, "none")]), 0)
        XCTAssertEqual(uniqueFileNames(["a b", "a_b", "in"]), ["a_b", "a_b-2", "ood-in"])
    }
}

// MARK: - An in-process multi-rank communicator (threads), for rank-count invariance

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
    func update(_ f: (inout T) -> Void) { lock.lock(); f(&v); lock.unlock() }
}

/// Cyclic exchange: every rank deposits a payload and receives all payloads in rank order.
final class ThreadGroup: @unchecked Sendable {
    let size: Int
    private let cond = NSCondition()
    private var slots: [[Float]]
    private var arrived = 0
    private var generation = 0
    private var result: [[Float]] = []

    init(size: Int) {
        self.size = size
        slots = Array(repeating: [], count: size)
    }

    func exchange(rank: Int, _ payload: [Float]) -> [[Float]] {
        cond.lock()
        defer { cond.unlock() }
        let gen = generation
        slots[rank] = payload
        arrived += 1
        if arrived == size {
            result = slots
            arrived = 0
            generation += 1
            cond.broadcast()
        } else {
            while generation == gen { cond.wait() }
        }
        // The next generation cannot complete before this rank deposits into it, so `result` is ours.
        return result
    }
}

final class ThreadCommunicator: Communicator, @unchecked Sendable {
    let group: ThreadGroup
    let rank: Int
    var size: Int { group.size }
    init(group: ThreadGroup, rank: Int) { self.group = group; self.rank = rank }

    func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) {
        let all = group.exchange(rank: rank, Array(UnsafeBufferPointer(start: buf, count: count)))
        for i in 0..<count { buf[i] = all.reduce(0) { $0 + $1[i] } }
    }
    func allreduceSum(_ values: inout [Double]) {
        let all = group.exchange(rank: rank, values.map { Float($0) })
        values = (0..<values.count).map { i in all.reduce(0.0) { $0 + Double($1[i]) } }
    }
    func allreduceMax(_ values: inout [Double]) {
        let all = group.exchange(rank: rank, values.map { Float($0) })
        values = (0..<values.count).map { i in all.map { Double($0[i]) }.max()! }
    }
    func reduceScatterSum(_ send: UnsafePointer<Float>, countPerRank: Int, into recv: UnsafeMutablePointer<Float>) {
        let all = group.exchange(rank: rank, Array(UnsafeBufferPointer(start: send, count: countPerRank * size)))
        for i in 0..<countPerRank { recv[i] = all.reduce(0) { $0 + $1[rank * countPerRank + i] } }
    }
    func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        let all = group.exchange(rank: rank, Array(UnsafeBufferPointer(start: send, count: count))).flatMap { $0 }
        for i in 0..<all.count { recv[i] = all[i] }
    }
    func allgatherv(_ send: UnsafePointer<Float>, counts: [Int], into recv: UnsafeMutablePointer<Float>) {
        let all = group.exchange(rank: rank, Array(UnsafeBufferPointer(start: send, count: counts[rank]))).flatMap { $0 }
        precondition(all.count == counts.reduce(0, +))
        for i in 0..<all.count { recv[i] = all[i] }
    }
    func allgather(_ send: [Int32]) -> [Int32] {
        group.exchange(rank: rank, send.map { Float(bitPattern: UInt32(bitPattern: $0)) }).flatMap { $0 }
            .map { Int32(bitPattern: $0.bitPattern) }
    }
    func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        let all = group.exchange(rank: rank, Array(UnsafeBufferPointer(start: buf, count: count)))
        for i in 0..<count { buf[i] = all[root][i] }
    }
    func broadcast(_ bytes: inout [UInt8], root: Int) {
        let all = group.exchange(rank: rank, bytes.map { Float($0) })
        bytes = all[root].map { UInt8($0) }
    }
    func barrier() { _ = group.exchange(rank: rank, []) }
    func abort(_ message: String, code: Int32) -> Never { fatalError("rank \(rank): \(message)") }
}
