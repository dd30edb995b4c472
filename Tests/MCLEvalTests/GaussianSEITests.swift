import XCTest
import Foundation
import MCLCore
@testable import MCLEval

final class GaussianSEITests: XCTestCase {
    /// Random features: class y, rotation r centred at a distinct point, anisotropic noise.
    static func synthetic(n perGroup: [[Int]], d: Int, seed: UInt64) -> (x: [Float], y: [Int], r: [Int]) {
        var rng = SplitMix64(seed: seed)
        var x: [Float] = [], ys: [Int] = [], rs: [Int] = []
        for (y, row) in perGroup.enumerated() {
            for (r, count) in row.enumerated() {
                for _ in 0..<count {
                    for j in 0..<d {
                        let centre = Double((y * 7 + r * 3 + j) % 5) - 2
                        x.append(Float(centre + rng.nextGaussian() * (0.3 + 0.1 * Double(j % 4))))
                    }
                    ys.append(y); rs.append(r)
                }
            }
        }
        return (x, ys, rs)
    }

    /// Reference distance by solving Sigma z = (x - mu) with Gaussian elimination (partial pivoting).
    static func naiveDistance(_ x: [Double], _ mu: [Double], _ sigma: [Double]) -> Double {
        let d = x.count
        var a = sigma, b = (0..<d).map { x[$0] - mu[$0] }
        let diff = b
        for k in 0..<d {
            var p = k
            for i in (k + 1)..<d where abs(a[i * d + k]) > abs(a[p * d + k]) { p = i }
            if p != k { for j in 0..<d { a.swapAt(k * d + j, p * d + j) }; b.swapAt(k, p) }
            for i in (k + 1)..<d {
                let f = a[i * d + k] / a[k * d + k]
                for j in k..<d { a[i * d + j] -= f * a[k * d + j] }
                b[i] -= f * b[k]
            }
        }
        var z = [Double](repeating: 0, count: d)
        for i in stride(from: d - 1, through: 0, by: -1) {
            var s = b[i]
            for j in (i + 1)..<d { s -= a[i * d + j] * z[j] }
            z[i] = s / a[i * d + i]
        }
        return zip(diff, z).map { $0 * $1 }.reduce(0, +).squareRoot()
    }

    func testDistancesMatchDirectSolve() throws {
        let d = 7
        let s = Self.synthetic(n: [[40, 35], [50, 45], [30, 60]], d: d, seed: 11)
        let g = try ClassGaussians(features: s.x, dim: d, mainLabels: s.y, auxLabels: s.r, numMain: 3, numAux: 2)
        XCTAssertTrue(g.warnings.isEmpty)
        var rng = SplitMix64(seed: 5)
        let xs = (0..<(20 * d)).map { _ in Float(rng.nextGaussian() * 2) }
        for r in 0..<2 {
            let D = g.distances(xs, count: 20, rotation: r)
            for t in 0..<20 {
                let x = (0..<d).map { Double(xs[t * d + $0]) }
                for c in 0..<3 {
                    let ref = Self.naiveDistance(x, g.mean(main: c, aux: r), g.covariance(main: c, aux: r))
                    XCTAssertEqual(D[t * 3 + c], ref, accuracy: 1e-9 * max(1, ref))
                }
                XCTAssertEqual(g.distances(x, rotation: r), Array(D[(t * 3)..<(t * 3 + 3)]))
            }
        }
    }

    /// A Gaussian with fewer samples than dimensions gets a larger ridge and a warning naming its
    /// class and rotation; one sample and no samples are handled too; nothing is NaN.
    func testFewerSamplesThanDimensionsRaisesRidgeAndWarns() throws {
        let d = 16
        // class 0 rotation 1: 5 samples; class 1 rotation 0: 1 sample; class 2 rotation 1: none.
        let s = Self.synthetic(n: [[80, 5], [1, 70], [60, 0]], d: d, seed: 3)
        let g = try ClassGaussians(features: s.x, dim: d, mainLabels: s.y, auxLabels: s.r, numMain: 3, numAux: 2,
                                   ridge: 1e-6, classNames: ["plane", "car", "bird"], printWarnings: false)
        for w in g.warnings { print("warning:", w) }
        XCTAssertEqual(g.warnings.count, 3)
        XCTAssertTrue(g.warnings.contains { $0.contains("class 0 (plane) rotation 1") && $0.contains("5 training samples for 16 dimensions") })
        XCTAssertTrue(g.warnings.contains { $0.contains("class 1 (car) rotation 0") })
        XCTAssertTrue(g.warnings.contains { $0.contains("class 2 (bird) rotation 1") && $0.contains("no training samples") })
        XCTAssertGreaterThan(g.ridges[0 * 2 + 1], 1e-6)
        XCTAssertGreaterThan(g.ridges[1 * 2 + 0], 1e-6)
        XCTAssertEqual(g.ridges[0], 1e-6)
        XCTAssertFalse(g.means.contains { $0.isNaN })
        XCTAssertFalse(g.cholesky.contains { !$0.isFinite })
        var rng = SplitMix64(seed: 9)
        let xs = (0..<(50 * d)).map { _ in Float(rng.nextGaussian()) }
        for r in 0..<2 {
            let D = g.distances(xs, count: 50, rotation: r)
            XCTAssertFalse(D.contains { $0.isNaN })
            for t in 0..<50 {
                for c in 0..<3 {
                    let v = D[t * 3 + c]
                    if c == 2 && r == 1 { XCTAssertEqual(v, .infinity) } else { XCTAssertTrue(v.isFinite && v >= 0) }
                }
            }
            // Aggregations cope with the infinite column.
            for agg in Aggregation.allCases {
                let (pred, score) = seiScores(distances: D, tests: 50, views: 1, classes: 3, aggregation: agg)
                XCTAssertFalse(score.contains { $0.isNaN })
                XCTAssertFalse(pred.contains(2) && r == 1)
            }
        }
    }

    func testRankDeficientButEnoughSamplesIsPositiveDefinite() throws {
        // Samples confined to a 2-dimensional subspace of d = 6: covariance singular, ridge 0.
        let d = 6
        var rng = SplitMix64(seed: 1)
        var x: [Float] = []
        for _ in 0..<40 { let a = rng.nextGaussian(), b = rng.nextGaussian(); x += [a, b, a + b, a - b, 2 * a, 0].map(Float.init) }
        let g = try ClassGaussians(features: x, dim: d, mainLabels: [Int](repeating: 0, count: 40),
                                   auxLabels: [Int](repeating: 0, count: 40), numMain: 1, numAux: 1,
                                   ridge: 0, printWarnings: false)
        XCTAssertEqual(g.warnings.count, 1)
        XCTAssertTrue(g.warnings[0].contains("class 0 rotation 0") && g.warnings[0].contains("not positive definite"), g.warnings[0])
        XCTAssertTrue(g.distances([Double](repeating: 0.5, count: d), rotation: 0).allSatisfy(\.isFinite))
    }

    func testRejectsBadLabels() {
        XCTAssertThrowsError(try ClassGaussians(features: [1, 2, 3, 4], dim: 2, mainLabels: [0, 3], auxLabels: [0, 0], numMain: 2, numAux: 1)) {
            XCTAssertTrue("\($0)".contains("sample 1") && "\($0)".contains("main label 3"))
        }
    }

    func testSaveLoadRoundTrip() throws {
        let d = 4
        let s = Self.synthetic(n: [[20, 20], [20, 20]], d: d, seed: 2)
        let g = try ClassGaussians(features: s.x, dim: d, mainLabels: s.y, auxLabels: s.r, numMain: 2, numAux: 2)
        let path = NSTemporaryDirectory() + "mcl-eval-gauss-\(getpid()).safetensors"
        try g.write(to: path)
        let h = try ClassGaussians(contentsOf: path)
        XCTAssertEqual(h.means, g.means)
        XCTAssertEqual(h.cholesky, g.cholesky)
        XCTAssertEqual(h.counts, g.counts)
        XCTAssertEqual(h.distances(s.x, count: 80, rotation: 1), g.distances(s.x, count: 80, rotation: 1))
        try? FileManager.default.removeItem(atPath: path)
    }

    func testRotationRule() {
        XCTAssertEqual(seiRotation(view: 0, views: 1, numAux: 4), 0)
        XCTAssertEqual((0..<4).map { seiRotation(view: $0, views: 4, numAux: 4) }, [0, 1, 2, 3])
        XCTAssertEqual((0..<8).map { seiRotation(view: $0, views: 8, numAux: 4) }, [0, 0, 1, 1, 2, 2, 3, 3])
        XCTAssertEqual((0..<8).map { seiRotation(view: $0, views: 8, numAux: 1) }, [Int](repeating: 0, count: 8))
        XCTAssertEqual(seiViewSubset(way: 4, available: 8), [0, 2, 4, 6])
        XCTAssertEqual(seiViewSubset(way: 1, available: 8), [0])
        XCTAssertNil(seiViewSubset(way: 8, available: 4))
    }

    func testAggregationsKnownAnswer() {
        // One test, V = 2, C = 3: D[v][c].
        let D: [Double] = [1, 4, 2,
                           3, 1.5, 6]
        let avg = seiScores(distances: D, tests: 1, views: 2, classes: 3, aggregation: .avg)
        XCTAssertEqual(avg.pred, [0]); XCTAssertEqual(avg.score, [-2])          // A = [2, 2.75, 4]
        let mx = seiScores(distances: D, tests: 1, views: 2, classes: 3, aggregation: .max)
        XCTAssertEqual(mx.pred, [0]); XCTAssertEqual(mx.score, [-1])
        let w = seiScores(distances: D, tests: 1, views: 2, classes: 3, aggregation: .wavg)
        // A = [2/(1+1/3), 2/(1/4+1/1.5), 2/(1/2+1/6)] = [1.5, 2.1818, 3]
        XCTAssertEqual(w.pred, [0]); XCTAssertEqual(w.score[0], -1.5, accuracy: 1e-15)
        let D2: [Double] = [5, 0.5, 9,
                            5, 4, 9]
        XCTAssertEqual(seiScores(distances: D2, tests: 1, views: 2, classes: 3, aggregation: .max).pred, [1])
    }

    /// evaluateSEI on synthetic 8-view features: its 4-way and 1-way rows equal a direct
    /// computation on the corresponding views, and the accuracies/metrics are sane.
    func testEvaluateSEIConsistency() throws {
        let d = 5, C = 3, R = 4
        let s = Self.synthetic(n: [[40, 40, 40, 40], [40, 40, 40, 40], [40, 40, 40, 40]], d: d, seed: 21)
        let g = try ClassGaussians(features: s.x, dim: d, mainLabels: s.y, auxLabels: s.r, numMain: C, numAux: R)
        // Test images: view v is drawn from (label, rotation v/2) for in-distribution; OOD is far noise.
        var rng = SplitMix64(seed: 4)
        let T = 60
        var inX: [Float] = [], labels: [Int] = []
        for t in 0..<T {
            let y = t % C
            labels.append(y)
            for v in 0..<8 {
                let r = v / 2
                for j in 0..<d { inX.append(Float(Double((y * 7 + r * 3 + j) % 5) - 2 + rng.nextGaussian() * 0.4)) }
            }
        }
        let oodX = (0..<(40 * 8 * d)).map { _ in Float(rng.nextGaussian() * 3) }
        let res = try evaluateSEI(gaussians: g, inDistribution: ViewFeatures(features: inX, count: T, views: 8, dim: d),
                                  inLabels: labels, ood: [(name: "noise", views: ViewFeatures(features: oodX, count: 40, views: 8, dim: d))])
        XCTAssertEqual(res.map(\.row.label), ["1-way", "4-way avg", "4-way max", "4-way wavg", "8-way avg", "8-way max", "8-way wavg"])
        // Direct 4-way: views 0, 2, 4, 6 are rotations 0..3.
        var four: [Float] = []
        for t in 0..<T { for v in [0, 2, 4, 6] { four += inX[((t * 8 + v) * d)..<((t * 8 + v + 1) * d)] } }
        let D4 = seiDistances(gaussians: g, testViews: four, tests: T, views: 4)
        let w4 = seiScores(distances: D4, tests: T, views: 4, classes: C, aggregation: .wavg)
        let row = res.first { $0.row.label == "4-way wavg" }!
        XCTAssertEqual(row.inPred, w4.pred)
        XCTAssertEqual(row.inScore, w4.score)
        for r in res {
            XCTAssertGreaterThan(r.row.accuracy, 90, r.row.label)
            XCTAssertGreaterThan(r.row.ood[0].metrics.auroc, 90, r.row.label)
        }
    }

    /// The BLAS path at scale: 2,000 test images x 8 views x 10 classes at d = 128, every distance
    /// finite (speed is measured by benchmarks, not here).
    func testBatchScoringAtScale() throws {
        let d = 128, C = 10, R = 4
        var rng = SplitMix64(seed: 8)
        let n = C * R * 200
        let x = (0..<(n * d)).map { _ in Float(rng.nextGaussian()) }
        let y = (0..<n).map { $0 % C }, r = (0..<n).map { ($0 / C) % R }
        let g = try ClassGaussians(features: x, dim: d, mainLabels: y, auxLabels: r, numMain: C, numAux: R)
        let T = 2_000
        let tv = (0..<(T * 8 * d)).map { _ in Float(rng.nextGaussian()) }
        let D = seiDistances(gaussians: g, testViews: tv, tests: T, views: 8)
        XCTAssertEqual(D.count, T * 8 * C)
        XCTAssertFalse(D.contains { !$0.isFinite })
    }
}
