import XCTest
import MCLCore
@testable import MCLObjective

/// The loss sharded by rows (`LossRows`), with the reduce-scatter and the allreduce done by hand
/// over N emulated ranks, equals the whole-matrix loss: the loss, both parts and every row of
/// dL/dz, for every objective and SPA variant, N = 2, 3, 4, 8.
final class LossRowsTests: XCTestCase {
    func testShardsSumToTheWholeLoss() {
        var rng = SplitMixForTests(seed: 11)
        let labels: [(Int32, Int32)] = (0..<48).map { _ in (Int32(rng.next() % 3), Int32(rng.next() % 4)) }
        let dim = 16
        let batch = TestBatch(imageLabels: labels, dim: dim, seed: 29)
        let v = batch.views  // 96
        let configs = [LossConfig(kind: .mcl, spa: .official), LossConfig(kind: .mcl, spa: .paperSample, beta: 2.5),
                       LossConfig(kind: .mcl, spa: .paperExpectation, floor: nil), LossConfig(kind: .simclr),
                       LossConfig(kind: .supcon), LossConfig(kind: .ccm), LossConfig(kind: .spa, spa: .official)]
        for config in configs {
            let targets = sampleSPATargets(main: batch.main, aux: batch.aux, useAux: true, mode: config.spa, seed: 2, step: 5)
            let whole = contrastiveLoss(z: batch.z, views: v, dim: dim, main: batch.main, aux: batch.aux,
                                        spaTargets: targets, config: config)
            for ranks in [2, 3, 4, 8] {
                let n = v / ranks
                let shards = (0..<ranks).map { r in
                    batch.z.withUnsafeBufferPointer {
                        LossRows(z: $0, views: v, dim: dim, main: batch.main, aux: batch.aux, spaTargets: targets,
                                 config: config, rows: (r * n)..<((r + 1) * n))
                    }
                }
                // The allreduce of the row sums and the reduce-scatter of the column terms.
                let totals = [shards.reduce(0) { $0 + $1.rowSums[0] }, shards.reduce(0) { $0 + $1.rowSums[1] }]
                var columns = [Float](repeating: 0, count: v * dim)
                for s in shards { for k in 0..<(v * dim) { columns[k] += s.columnContributions[k] } }
                var gradZ: [Float] = []
                var loss = 0.0, ccm = 0.0, spa = 0.0
                for (r, s) in shards.enumerated() {
                    let out = columns.withUnsafeBufferPointer { s.finish(reducedColumns: $0.baseAddress! + r * n * dim, totals: totals) }
                    XCTAssertEqual(out.gradZ.count, n * dim)
                    gradZ += out.gradZ
                    loss = out.loss; ccm = out.ccm; spa = out.spa
                }
                let what = "\(config.kind) \(config.spa) on \(ranks) ranks"
                XCTAssertEqual(loss, whole.loss, accuracy: 1e-6 * abs(whole.loss), what)
                XCTAssertEqual(ccm, whole.ccm, accuracy: 1e-6 * max(1, abs(whole.ccm)), what)
                XCTAssertEqual(spa, whole.spa, accuracy: 1e-6 * max(1, abs(whole.spa)), what)
                let err = Compare.relToMax(gradZ.map(Double.init), whole.gradZ.map(Double.init))
                XCTAssertLessThan(err, 1e-5, what)
            }
        }
    }

    /// A shard holds only its rows of the matrix: `[rows, views]`, and the column terms `[views, dim]`.
    func testShardMemory() {
        let batch = TestBatch(imageLabels: (0..<32).map { (Int32($0 % 2), 0) }, dim: 4, seed: 3)
        let rows = batch.z.withUnsafeBufferPointer {
            LossRows(z: $0, views: 64, dim: 4, main: batch.main, aux: batch.aux, spaTargets: nil,
                     config: LossConfig(kind: .simclr), rows: 16..<32)
        }
        XCTAssertFalse(rows.isWhole)
        XCTAssertEqual(rows.columnContributions.count, 64 * 4)
        XCTAssertEqual(rows.rowGrad.count, 16 * 4)
    }
}
