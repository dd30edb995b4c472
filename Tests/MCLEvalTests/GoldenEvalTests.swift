import XCTest
import Foundation
import MCLCore
@testable import MCLEval

/// Golden tests: every `metrics-*` and every `sei-*` case in the golden folder (never a fixed
/// list), one line per case via Golden.report / Golden.reportFailure.
final class GoldenEvalTests: XCTestCase {
    static func check(_ a: [Double], _ b: [Double]) -> (Bool, Double) {
        let r = Compare.relOrAbs(a, b, rel: 1e-5, abs: 1e-9)
        return (r.ok, r.worst)
    }

    func testGoldenMetricsEveryCase() throws {
        let cases = Golden.cases(prefix: "metrics-")
        XCTAssertFalse(cases.isEmpty, "no metrics-* golden cases in \(Golden.directory)")
        var failures: [String] = []
        for name in cases {
            do {
                let f = try Golden.open(name)
                let m = oodMetrics(inScores: try f.doubles("ind_scores"), oodScores: try f.doubles("ood_scores"))
                let keys = ["auroc", "aupr_in", "aupr_out", "fpr95"]
                let ours = [m.auroc, m.auprIn, m.auprOut, m.fpr95]
                XCTAssertEqual(try oodMetrics(scoresFile: f.path), m)
                let ref = try keys.map { try f.doubles($0, shape: [1])[0] }
                let (ok, worst) = Self.check(ours, ref)
                if ok {
                    Golden.report(name, maxRelErr: worst)
                } else {
                    let why = zip(keys, zip(ours, ref)).map { "\($0) \($1.0) vs \($1.1)" }.joined(separator: ", ")
                    Golden.reportFailure(name, why)
                    failures.append(name)
                }
            } catch {
                Golden.reportFailure(name, "\(error)")
                failures.append(name)
            }
        }
        XCTAssertTrue(failures.isEmpty, "failed: \(failures)")
    }

    func testGoldenSEIEveryCase() throws {
        let cases = Golden.cases(prefix: "sei-")
        XCTAssertFalse(cases.isEmpty, "no sei-* golden cases in \(Golden.directory)")
        var failures: [String] = []
        for name in cases {
            do {
                if let why = try checkSEI(name) {
                    Golden.reportFailure(name, why)
                    failures.append(name)
                }
            } catch {
                Golden.reportFailure(name, "\(error)")
                failures.append(name)
            }
        }
        XCTAssertTrue(failures.isEmpty, "failed: \(failures)")
    }

    /// Returns nil (after printing the ok line) or the reason of the failure.
    func checkSEI(_ name: String) throws -> String? {
        let f = try Golden.open(name)
        let C = Int(try f.metaDouble("num_main")), R = Int(try f.metaDouble("num_aux"))
        let d = Int(try f.metaDouble("dim")), V = Int(try f.metaDouble("views"))
        let ridge = try f.metaDouble("ridge")
        if let rule = f.metadata["view_rotation"], rule != "v // (views / num_aux); 1-way uses rotation 0" {
            return "unknown view_rotation rule '\(rule)'"
        }
        let feats = try f.floats("train_features")
        let n = feats.count / d
        let g = try ClassGaussians(features: feats, dim: d, mainLabels: try f.ints("train_main", shape: [n]),
                                   auxLabels: try f.ints("train_aux", shape: [n]), numMain: C, numAux: R,
                                   ridge: ridge, printWarnings: true)
        if !g.warnings.isEmpty { return "unexpected warnings: \(g.warnings)" }
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
        if problems.isEmpty {
            Golden.report(name, maxRelErr: worst)
            return nil
        }
        return problems.joined(separator: "; ")
    }
}
