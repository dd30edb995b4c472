import XCTest
import MCLCore
@testable import MCLObjective

final class SPASamplingTests: XCTestCase {
    /// SEI-style layout: 24 base images of classes 0..2 with their 4 rotations adjacent, then a base
    /// image of class 7 (each (7, r) alone: empty B+ with aux on, not with aux off) and a single
    /// image of class 8 (empty B+ either way).
    static let layout: (main: [Int32], aux: [Int32]) = {
        var rng = SplitMixForTests(seed: 99)
        var main: [Int32] = [], aux: [Int32] = []
        func image(_ y: Int32, _ r: Int32) { main += [y, y]; aux += [r, r] }
        for _ in 0..<24 {
            let y = Int32(rng.next() % 3)
            for r in 0..<4 { image(y, Int32(r)) }
        }
        for r in 0..<4 { image(7, Int32(r)) }
        image(8, 0)
        return (main, aux)
    }()

    static func positiveBatch(_ i: Int, useAux: Bool) -> [Int] {
        let (y, r) = layout
        return (0..<y.count).filter { y[$0] == y[i] && (!useAux || r[$0] == r[i]) && $0 / 2 != i / 2 }
    }

    func testTargetsLieInPositiveBatch() {
        let (main, aux) = Self.layout
        let v = main.count
        for useAux in [true, false] {
            let bplus = (0..<v).map { Self.positiveBatch($0, useAux: useAux) }
            XCTAssertTrue(bplus.contains { $0.isEmpty } && bplus.contains { !$0.isEmpty })
            for mode in [SPAMode.official, .paperSample] {
                for step in UInt64(0)..<20 {
                    let t = sampleSPATargets(main: main, aux: aux, useAux: useAux, mode: mode, seed: 7, step: step)
                    XCTAssertEqual(t.count, v)
                    for i in 0..<v {
                        if bplus[i].isEmpty {
                            XCTAssertEqual(t[i], -1, "view \(i) has an empty B+ (\(mode), aux \(useAux))")
                        } else {
                            XCTAssertTrue(bplus[i].contains(Int(t[i])), "t(\(i)) = \(t[i]) not in B+ (\(mode), aux \(useAux))")
                            XCTAssertNotEqual(Int(t[i]) / 2, i / 2)
                        }
                    }
                    if mode == .official {
                        for n in 0..<(v / 2) {
                            XCTAssertTrue(t[2 * n] == -1 ? t[2 * n + 1] == -1 : (t[2 * n] % 2 == 0 && t[2 * n + 1] == t[2 * n] + 1),
                                          "official pairing of image \(n): \(t[2 * n]), \(t[2 * n + 1])")
                        }
                    }
                }
            }
            let e = sampleSPATargets(main: main, aux: aux, useAux: useAux, mode: .paperExpectation, seed: 7, step: 0)
            XCTAssertEqual(e, [Int32](repeating: -1, count: v))
        }
    }

    func testSeededDeterminism() {
        let (main, aux) = Self.layout
        for mode in [SPAMode.official, .paperSample] {
            let a = sampleSPATargets(main: main, aux: aux, useAux: true, mode: mode, seed: 42, step: 10)
            let b = sampleSPATargets(main: main, aux: aux, useAux: true, mode: mode, seed: 42, step: 10)
            let c = sampleSPATargets(main: main, aux: aux, useAux: true, mode: mode, seed: 42, step: 11)
            let d = sampleSPATargets(main: main, aux: aux, useAux: true, mode: mode, seed: 43, step: 10)
            XCTAssertEqual(a, b, "same (seed, step) must give the same targets (\(mode))")
            XCTAssertNotEqual(a, c, "different steps should give different targets (\(mode))")
            XCTAssertNotEqual(a, d, "different seeds should give different targets (\(mode))")
        }
    }

    /// Pearson chi-square of each query's target histogram against the uniform law over its
    /// candidates (images for `official`, views of B+ for `paper-sample`), per query and summed.
    func testUniformOverPositiveBatch() {
        let (main, aux) = Self.layout
        let v = main.count
        let steps = 2000
        for useAux in [true, false] {
            for mode in [SPAMode.official, .paperSample] {
                // Candidates of each query, as the unit that is drawn uniformly.
                let queries = mode == .official ? stride(from: 0, to: v, by: 2).map { $0 } : Array(0..<v)
                var counts = [[Int: Int]](repeating: [:], count: v)
                for step in 0..<steps {
                    let t = sampleSPATargets(main: main, aux: aux, useAux: useAux, mode: mode, seed: 2024, step: UInt64(step))
                    for i in queries where t[i] >= 0 {
                        let unit = mode == .official ? Int(t[i]) / 2 : Int(t[i])
                        counts[i][unit, default: 0] += 1
                    }
                }
                var totalChi = 0.0, totalDof = 0
                for i in queries {
                    let bp = Self.positiveBatch(i, useAux: useAux)
                    if bp.isEmpty { continue }
                    let units = mode == .official ? Array(Set(bp.map { $0 / 2 })).sorted() : bp
                    XCTAssertEqual(Set(counts[i].keys).subtracting(units), [], "draws outside the candidates")
                    let expected = Double(steps) / Double(units.count)
                    let chi = units.reduce(0.0) { acc, u in
                        let o = Double(counts[i][u] ?? 0)
                        return acc + (o - expected) * (o - expected) / expected
                    }
                    let dof = units.count - 1
                    if dof > 0 {
                        // Far tail (about 6 sigma of the normal approximation); deterministic seeds.
                        XCTAssertLessThan(chi, Double(dof) + 6 * (2 * Double(dof)).squareRoot() + 10,
                                          "query \(i): chi2 \(chi) with \(dof) dof (\(mode), aux \(useAux))")
                    }
                    totalChi += chi
                    totalDof += dof
                }
                XCTAssertGreaterThan(totalDof, 100)
                let z = (totalChi - Double(totalDof)) / (2 * Double(totalDof)).squareRoot()
                XCTAssertLessThan(abs(z), 5, "summed chi2 \(totalChi) over \(totalDof) dof (\(mode), aux \(useAux))")
            }
        }
    }

    /// The golden SPA targets follow the same rules (official pairing, B+ membership).
    func testGoldenTargetsFollowTheRules() throws {
        let set = GoldenSet()
        var checked = 0
        for name in try set.cases("loss-") {
            let c = try set.open(name)
            let config = try goldenConfig(c)
            guard config.needsSPATargets else { continue }
            let f = c.file
            let t = try f.ints("spa_target")
            let y = try f.ints("main"), r = try f.ints("aux")
            for i in 0..<t.count where t[i] >= 0 {
                XCTAssertTrue(y[t[i]] == y[i] && (!config.useAux || r[t[i]] == r[i]) && t[i] / 2 != i / 2, "\(name) view \(i)")
                if config.spa == .official && i % 2 == 0 {
                    XCTAssertTrue(t[i] % 2 == 0 && t[i + 1] == t[i] + 1, "\(name) image \(i / 2)")
                }
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0, "no golden case with SPA targets in \(set.manifestPath)")
    }
}
