import XCTest
import Foundation
import MCLCore
@testable import MCLEval

/// Golden tests: every `metrics-*` and `sei-*` case the golden manifest lists, one line per case.
final class GoldenEvalTests: XCTestCase {
    static func check(_ a: [Double], _ b: [Double]) -> (Bool, Double) {
        let r = Compare.relOrAbs(a, b, rel: 1e-5, abs: 1e-9)
        return (r.ok, r.worst)
    }

    /// Every listed `metrics-*` case, through the score files `evaluate` writes and `metrics`
    /// reads: the golden scores written with `writeScoreFile`, read back with `readScoreFile`,
    /// then the four metrics against scikit-learn's.
    func testGoldenMetricsEveryCase() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("golden-metrics-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let failures = GoldenSet().run("metrics-") { c in
            for key in ["higher_is_in_distribution", "percent"] {
                guard try c.bool(key) else { throw GoldenMismatch("metadata \(key) = false: the metrics here are percent, higher = more in") }
            }
            let f = c.file
            try writeScoreFile(try f.doubles("ind_scores"), to: dir + "/in.txt")
            try writeScoreFile(try f.doubles("ood_scores"), to: dir + "/ood.txt")
            let m = oodMetrics(inScores: try readScoreFile(dir + "/in.txt"), oodScores: try readScoreFile(dir + "/ood.txt"))
            let keys = ["auroc", "aupr_in", "aupr_out", "fpr95"]
            let ours = [m.auroc, m.auprIn, m.auprOut, m.fpr95]
            let ref = try keys.map { try f.doubles($0, shape: [1])[0] }
            let (ok, worst) = Self.check(ours, ref)
            guard ok else {
                throw GoldenMismatch(zip(keys, zip(ours, ref)).map { "\($0) \($1.0) vs \($1.1)" }.joined(separator: ", "))
            }
            return worst
        }
        XCTAssertTrue(failures.isEmpty, "\(failures)")
    }

    func testGoldenSEIEveryCase() throws {
        let failures = GoldenSet().run("sei-") { c in try checkSEI(c) }
        XCTAssertTrue(failures.isEmpty, "\(failures)")
    }

    /// The rule by which SEI view v picks its rotation's Gaussians (SPEC 8); a case written
    /// with another rule fails.
    static let viewRotationRule = "v // (views / num_aux); 1-way uses rotation 0"

    /// Returns the largest error or throws naming what disagrees.
    func checkSEI(_ c: GoldenCase) throws -> Double {
        let f = c.file
        let C = try c.int("num_main"), R = try c.int("num_aux"), d = try c.int("dim"), V = try c.int("views")
        let ridge = try c.double("ridge")
        let rule = try c.string("view_rotation")
        guard rule == Self.viewRotationRule else { throw GoldenMismatch("unknown view_rotation rule '\(rule)'") }
        let feats = try f.floats("train_features")
        let n = feats.count / d
        let g = try ClassGaussians(features: feats, dim: d, mainLabels: try f.ints("train_main", shape: [n]),
                                   auxLabels: try f.ints("train_aux", shape: [n]), numMain: C, numAux: R,
                                   ridge: ridge, printWarnings: true)
        if !g.warnings.isEmpty { throw GoldenMismatch("unexpected warnings: \(g.warnings)") }
        var worst = 0.0
        var problems: [String] = []
        func cmp(_ what: String, _ a: [Double], _ b: [Double], relToMax: Bool = false) {
            guard a.count == b.count else { problems.append("\(what): \(a.count) values vs \(b.count)"); return }
            if relToMax {
                let e = Compare.relToMax(a, b)
                worst = max(worst, e)
                if !(e <= 1e-5) { problems.append("\(what) rel-to-max err \(e)") }
            } else {
                let (ok, e) = Self.check(a, b)
                worst = max(worst, e)
                if !ok { problems.append("\(what) rel err \(e)") }
            }
        }
        cmp("means", g.means, try f.doubles("means", shape: [C, R, d]), relToMax: true)
        cmp("covariances", g.covariances, try f.doubles("covariances", shape: [C, R, d, d]), relToMax: true)
        let T = try f.shape("test_views")[0]
        let D = seiDistances(gaussians: g, testViews: try f.floats("test_views", shape: [T, V, d]), tests: T, views: V)
        cmp("distances", D, try f.doubles("distances", shape: [T, V, C]))
        for agg in Aggregation.allCases {
            let (pred, score) = seiScores(distances: D, tests: T, views: V, classes: C, aggregation: agg)
            let refPred = try f.ints("\(agg.rawValue).pred", shape: [T])
            let bad = (0..<T).filter { pred[$0] != refPred[$0] }
            if !bad.isEmpty { problems.append("\(agg.rawValue).pred differs at \(bad.count) tests (first \(bad[0]): \(pred[bad[0]]) vs \(refPred[bad[0]]))") }
            cmp("\(agg.rawValue).score", score, try f.doubles("\(agg.rawValue).score", shape: [T]))
        }
        if !problems.isEmpty { throw GoldenMismatch(problems.joined(separator: "; ")) }
        return worst
    }
}
