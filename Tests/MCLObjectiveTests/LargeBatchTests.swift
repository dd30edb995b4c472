import XCTest
import MCLCore
@testable import MCLObjective

/// A 2048-view batch (256 base images x 4 rotations x 2 views): finite, and equal to the double
/// reference in the loss and in a subset of gradient rows.
final class LargeBatchTests: XCTestCase {
    func testLargeBatchMatchesReference() {
        var rng = SplitMixForTests(seed: 5)
        var labels: [(Int32, Int32)] = []
        for _ in 0..<256 {
            let y = Int32(rng.next() % 10)
            for r in 0..<4 { labels.append((y, Int32(r))) }
        }
        let dim = 32
        let batch = TestBatch(imageLabels: labels, dim: dim, seed: 17)
        let v = batch.views
        XCTAssertEqual(v, 2048)
        let rows = Array(stride(from: 3, to: v, by: 61))
        let zd = batch.z.map(Double.init)
        for config in [LossConfig(kind: .mcl, spa: .official),
                       LossConfig(kind: .mcl, spa: .paperExpectation, beta: 2.5, spaWeight: 0.5, floor: nil)] {
            let targets = sampleSPATargets(main: batch.main, aux: batch.aux, useAux: true, mode: config.spa, seed: 1, step: 9)
            let out = contrastiveLoss(z: batch.z, views: v, dim: dim, main: batch.main, aux: batch.aux, spaTargets: targets, config: config)
            XCTAssertTrue(out.loss.isFinite && out.ccm.isFinite && out.spa.isFinite)
            XCTAssertTrue(out.gradZ.allSatisfy { $0.isFinite })
            let ref = ReferenceLoss(z: zd, views: v, dim: dim, main: batch.main, aux: batch.aux, targets: targets,
                                    config: config, gradRows: rows)
            XCTAssertEqual(out.loss, ref.loss, accuracy: 1e-5 * abs(ref.loss), "\(config.spa)")
            XCTAssertEqual(out.ccm, ref.ccm, accuracy: 1e-5 * abs(ref.ccm))
            XCTAssertEqual(out.spa, ref.spa, accuracy: 1e-5 * abs(ref.spa))
            let got = rows.flatMap { j in out.gradZ[(j * dim)..<(j * dim + dim)].map(Double.init) }
            let want = rows.flatMap { j in ref.grad[(j * dim)..<(j * dim + dim)] }
            XCTAssertLessThan(Compare.relToMax(got, want), 1e-4, "\(config.spa)")
        }
    }
}
