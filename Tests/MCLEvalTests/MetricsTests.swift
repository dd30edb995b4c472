import XCTest
import MCLCore
@testable import MCLEval

final class MetricsTests: XCTestCase {
    func testPerfectSeparation() {
        let m = oodMetrics(inScores: [5, 6, 7, 9], oodScores: [1, 2, 3])
        XCTAssertEqual(m.auroc, 100)
        XCTAssertEqual(m.auprIn, 100)
        XCTAssertEqual(m.auprOut, 100)
        XCTAssertEqual(m.fpr95, 0)
    }

    func testReversedSeparation() {
        let m = oodMetrics(inScores: [1, 2, 3], oodScores: [5, 6, 7, 9])
        XCTAssertEqual(m.auroc, 0)
        XCTAssertEqual(m.fpr95, 100)
        // AUPR-In: in-distribution only found after every OOD: precisions 1/5, 2/6, 3/7.
        XCTAssertEqual(m.auprIn, 100 * (1.0 / 5 + 2.0 / 6 + 3.0 / 7) / 3, accuracy: 1e-12)
    }

    func testAllTies() {
        let m = oodMetrics(inScores: [Double](repeating: 0.3, count: 30), oodScores: [Double](repeating: 0.3, count: 70))
        XCTAssertEqual(m.auroc, 50)
        XCTAssertEqual(m.auprIn, 30, accuracy: 1e-12)   // one threshold: precision P/(P+N)
        XCTAssertEqual(m.auprOut, 70, accuracy: 1e-12)
        XCTAssertEqual(m.fpr95, 100)
    }

    func testSmallHandExample() {
        // in 0.8, 0.4; ood 0.6, 0.1: pairs in>ood = 3 of 4.
        let m = oodMetrics(inScores: [0.8, 0.4], oodScores: [0.6, 0.1])
        XCTAssertEqual(m.auroc, 75, accuracy: 1e-12)
        XCTAssertEqual(m.auprIn, 100 * (0.5 * 1 + 0.5 * 2.0 / 3), accuracy: 1e-12)
        // OOD positive, score -s: order 0.1(ood) 0.4(in) 0.6(ood) 0.8(in): precisions 1, 2/3.
        XCTAssertEqual(m.auprOut, 100 * (0.5 * 1 + 0.5 * 2.0 / 3), accuracy: 1e-12)
        // ROC points: (0,0) (0,.5) (.5,.5) (.5,1) (1,1): first TPR >= .95 at FPR .5.
        XCTAssertEqual(m.fpr95, 50)
        let r = rocCurve(inScores: [0.8, 0.4], oodScores: [0.6, 0.1])
        XCTAssertEqual(r.fpr, [0, 0, 0.5, 0.5, 1])
        XCTAssertEqual(r.tpr, [0, 0.5, 0.5, 1, 1])
    }

    func testTiedBlockCountsHalf() {
        // in {1, 2}, ood {2, 0}: pairs (1,2)=0, (1,0)=1, (2,2)=0.5, (2,0)=1 -> 2.5/4.
        XCTAssertEqual(oodMetrics(inScores: [1, 2], oodScores: [2, 0]).auroc, 62.5)
    }

    /// O(n log n) metrics against direct definitions: AUROC by counting all pairs, AP as the mean
    /// over positives of the precision at their own score, FPR@95 by scanning every threshold.
    func testLargeRandomAgainstDirectCounts() {
        var rng = SplitMix64(seed: 2024)
        for trial in 0..<3 {
            let nIn = 1500 + 500 * trial, nOod = 1200 + 700 * trial
            // Quantised scores create many ties.
            let q = [0.05, 0.01, 0.2][trial]
            let ins = (0..<nIn).map { _ in ((rng.nextGaussian() + 0.8) / q).rounded() * q }
            let oods = (0..<nOod).map { _ in (rng.nextGaussian() / q).rounded() * q }
            let m = oodMetrics(inScores: ins, oodScores: oods)

            var twice = 0
            for a in ins { for b in oods { twice += a > b ? 2 : a == b ? 1 : 0 } }
            let auroc = 100 * Double(twice) / (2 * Double(nIn * nOod))
            XCTAssertEqual(m.auroc, auroc, accuracy: 1e-9)

            func ap(_ pos: [Double], _ neg: [Double]) -> Double {
                var sum = 0.0
                for s in pos {
                    let tp = pos.filter { $0 >= s }.count, fp = neg.filter { $0 >= s }.count
                    sum += Double(tp) / Double(tp + fp)
                }
                return 100 * sum / Double(pos.count)
            }
            XCTAssertEqual(m.auprIn, ap(ins, oods), accuracy: 1e-9)
            XCTAssertEqual(m.auprOut, ap(oods.map { -$0 }, ins.map { -$0 }), accuracy: 1e-9)

            var fpr95 = Double.nan
            for t in Set(ins + oods).sorted(by: >) {
                if Double(ins.filter { $0 >= t }.count) / Double(nIn) >= 0.95 {
                    fpr95 = 100 * Double(oods.filter { $0 >= t }.count) / Double(nOod)
                    break
                }
            }
            XCTAssertEqual(m.fpr95, fpr95, accuracy: 1e-9)
            print("random metrics trial \(trial): n=\(nIn)+\(nOod) AUROC \(m.auroc) AUPR-In \(m.auprIn) AUPR-Out \(m.auprOut) FPR@95 \(m.fpr95)")
        }
    }

    func testRocCurveShape() {
        var rng = SplitMix64(seed: 7)
        let ins = (0..<300).map { _ in rng.nextGaussian() + 1 }, oods = (0..<200).map { _ in rng.nextGaussian() }
        let r = rocCurve(inScores: ins, oodScores: oods)
        XCTAssertEqual(r.fpr.first, 0); XCTAssertEqual(r.tpr.first, 0)
        XCTAssertEqual(r.fpr.last, 1); XCTAssertEqual(r.tpr.last, 1)
        for k in 1..<r.fpr.count { XCTAssertGreaterThanOrEqual(r.fpr[k], r.fpr[k - 1]); XCTAssertGreaterThanOrEqual(r.tpr[k], r.tpr[k - 1]) }
        // Trapezoid area of the returned curve equals the AUROC.
        var area = 0.0
        for k in 1..<r.fpr.count { area += (r.fpr[k] - r.fpr[k - 1]) * (r.tpr[k] + r.tpr[k - 1]) / 2 }
        XCTAssertEqual(100 * area, oodMetrics(inScores: ins, oodScores: oods).auroc, accuracy: 1e-9)
    }

    func testDegenerateInputsAreNaNNotCrash() {
        let m = oodMetrics(inScores: [1, 2], oodScores: [])
        XCTAssertTrue(m.auroc.isNaN && m.fpr95.isNaN)
        XCTAssertEqual(accuracy(pred: [1, 2, 3, 4], labels: [1, 0, 3, 4]), 75)
    }
}
