import XCTest
import Foundation
import MCLCore
@testable import MCLData

final class LoaderTests: XCTestCase {
    /// 42 random images in 5 classes.
    func smallDataset(_ n: Int = 42) -> PackedDataset {
        PackedDataset(RawDataset(images: randomBytes(n * 3072, seed: 123),
                                 labels: (0..<n).map { Int32($0 % 5) },
                                 classNames: ["a", "b", "c", "d", "e"]))
    }

    func testLayoutLabelsAndRotationCoverage() throws {
        let ds = smallDataset()
        let loader = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, rank: 0, worldSize: 1, seed: 5, prefetch: 0)
        XCTAssertEqual(loader.stepsPerEpoch, 42 * 4 / 16)  // 10, two images dropped
        var seen = Set<[Int]>()
        for step in 0..<loader.stepsPerEpoch {
            let b = loader.batch(epoch: 3, step: step)
            XCTAssertEqual(b.views.count, 32 * 3072)
            XCTAssertEqual(b.main.count, 32)
            XCTAssertEqual(b.globalPairOffset, 0)
            for p in 0..<16 {
                // R rotations of one image adjacent; labels per view, partners share them.
                XCTAssertEqual(b.baseIndices[p], b.baseIndices[p / 4 * 4])
                XCTAssertEqual(b.aux[2 * p], Int32(p % 4))
                XCTAssertEqual(b.aux[2 * p + 1], Int32(p % 4))
                XCTAssertEqual(b.main[2 * p], ds.labels[b.baseIndices[p]])
                XCTAssertEqual(b.main[2 * p + 1], ds.labels[b.baseIndices[p]])
                XCTAssertTrue(seen.insert([b.baseIndices[p], p % 4]).inserted, "(image, rotation) repeated within an epoch")
            }
            // Uniform rotation coverage in every batch.
            for r in 0..<4 { XCTAssertEqual(b.aux.filter { $0 == r }.count, 8) }
        }
        XCTAssertEqual(seen.count, 40 * 4)
        // Batches follow the epoch permutation.
        let perm = loader.permutation(epoch: 3)
        XCTAssertEqual(Set(perm), Set(0..<42))
        XCTAssertEqual(loader.batch(epoch: 3, step: 2).baseIndices[0], perm[8])
        XCTAssertNotEqual(loader.permutation(epoch: 4), perm)

        // Without the auxiliary task: one pair per image, aux 0.
        let plain = try BatchLoader(dataset: ds, globalBatch: 8, rotations: 1, seed: 5, prefetch: 0)
        XCTAssertEqual(plain.stepsPerEpoch, 5)
        let pb = plain.batch(epoch: 0, step: 1)
        XCTAssertEqual(pb.aux, [Int32](repeating: 0, count: 16))
        XCTAssertEqual(Set(pb.baseIndices).count, 8)
    }

    func testDeterministicAcrossPrefetchAndThreads() throws {
        let ds = smallDataset()
        let a = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 77, prefetch: 0, workers: 1)
        let b = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 77, prefetch: 3, workers: 2)
        let c = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 77, prefetch: 1, workers: 3)
        var reference: [String: [Float]] = [:]
        for e in 0..<2 {
            for s in 0..<a.stepsPerEpoch {
                let x = a.batch(epoch: e, step: s)
                reference["\(e).\(s)"] = x.views
                let y = b.batch(epoch: e, step: s)
                XCTAssertEqual(x.views, y.views, "epoch \(e) step \(s)")
                XCTAssertEqual(x.main, y.main)
                XCTAssertEqual(x.aux, y.aux)
                if s % 3 == 0 { usleep(2000) }  // let the prefetcher run ahead at times
            }
        }
        // Out-of-order and repeated requests give the same content.
        for (e, s) in [(1, 4), (0, 9), (0, 0), (1, 4), (1, 5), (0, 3)] {
            XCTAssertEqual(c.batch(epoch: e, step: s).views, reference["\(e).\(s)"], "epoch \(e) step \(s)")
        }
        // A different seed gives different views; partners differ (independent augmentations).
        let d = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 78, prefetch: 0)
        XCTAssertNotEqual(d.batch(epoch: 0, step: 0).views, reference["0.0"])
        let v = reference["0.0"]!
        XCTAssertNotEqual(Array(v[0..<3072]), Array(v[3072..<6144]))
    }

    func testRankSlicesUnionIsSingleRankBatch() throws {
        let ds = smallDataset()
        for (world, batch) in [(2, 16), (4, 16), (2, 8)] {
            let one = try BatchLoader(dataset: ds, globalBatch: batch, rotations: 4, rank: 0, worldSize: 1, seed: 9, prefetch: 0)
            let ranks = try (0..<world).map { try BatchLoader(dataset: ds, globalBatch: batch, rotations: 4, rank: $0, worldSize: world, seed: 9, prefetch: 2) }
            XCTAssertEqual(ranks[0].stepsPerEpoch, one.stepsPerEpoch)
            for s in [0, 1, one.stepsPerEpoch - 1] {
                let whole = one.batch(epoch: 1, step: s)
                let parts = ranks.map { $0.batch(epoch: 1, step: s) }
                XCTAssertEqual(parts.map(\.globalPairOffset), (0..<world).map { $0 * batch / world })
                XCTAssertEqual(parts.flatMap(\.views), whole.views, "W=\(world) step \(s)")
                XCTAssertEqual(parts.flatMap(\.main), whole.main)
                XCTAssertEqual(parts.flatMap(\.aux), whole.aux)
                XCTAssertEqual(parts.flatMap(\.baseIndices), whole.baseIndices)
            }
        }
    }

    func testIdentityViewsAreRotatedImages() throws {
        let ds = smallDataset()
        let loader = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 1, augment: .identity, prefetch: 0)
        let b = loader.batch(epoch: 0, step: 0)
        for p in 0..<16 {
            let x = FloatImage(bytes: ds.image(b.baseIndices[p]), channels: 3, height: 32, width: 32).rot90(p % 4)
            XCTAssertEqual(Array(b.views[(2 * p * 3072)..<((2 * p + 1) * 3072)]), x.pixels)
            XCTAssertEqual(Array(b.views[((2 * p + 1) * 3072)..<((2 * p + 2) * 3072)]), x.pixels)
        }
        // The loader renders exactly the parameters it reports.
        let aug = try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, seed: 1, prefetch: 0)
        let ab = aug.batch(epoch: 2, step: 3)
        let p = aug.viewParams(epoch: 2, step: 3, globalPair: 5, view: 1)
        XCTAssertEqual(p.rotation, 1)
        var out = [Float](repeating: 0, count: 3072), scratch = out
        out.withUnsafeMutableBufferPointer { o in
            scratch.withUnsafeMutableBufferPointer { s in
                Augment.render(src: ds.image(ab.baseIndices[5]).baseAddress!, side: 32, params: p, variant: .official,
                               dst: o.baseAddress!, scratch: s.baseAddress!)
            }
        }
        XCTAssertEqual(Array(ab.views[(11 * 3072)..<(12 * 3072)]), out)
    }

    func testBatchSizeErrors() {
        let ds = smallDataset()
        XCTAssertThrowsError(try BatchLoader(dataset: ds, globalBatch: 18, rotations: 4, seed: 0)) { e in
            XCTAssertTrue("\(e)".contains("rotations"), "\(e)")
        }
        XCTAssertThrowsError(try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, rank: 0, worldSize: 3, seed: 0)) { e in
            XCTAssertTrue("\(e)".contains("world size"), "\(e)")
        }
        XCTAssertThrowsError(try BatchLoader(dataset: ds, globalBatch: 400, rotations: 4, seed: 0))
        XCTAssertThrowsError(try BatchLoader(dataset: ds, globalBatch: 16, rotations: 4, rank: 2, worldSize: 2, seed: 0))
    }

    func testEvalViewsAndTrainingViews() {
        let ds = smallDataset(6)
        let img = { (i: Int) in FloatImage(bytes: ds.image(i), channels: 3, height: 32, width: 32) }
        let one = evalViews(dataset: ds, indices: 2..<4, ways: 1)
        XCTAssertEqual(one, img(2).pixels + img(3).pixels)
        let four = evalViews(dataset: ds, indices: 1..<3, ways: 4)
        let eight = evalViews(dataset: ds, indices: 1..<3, ways: 8)
        for (k, i) in [1, 2].enumerated() {
            for v in 0..<4 {
                XCTAssertEqual(Array(four[((k * 4 + v) * 3072)..<((k * 4 + v + 1) * 3072)]), img(i).rot90(v).pixels)
            }
            for v in 0..<8 {
                let want = v % 2 == 1 ? img(i).hflip().rot90(v / 2) : img(i).rot90(v / 2)
                XCTAssertEqual(Array(eight[((k * 8 + v) * 3072)..<((k * 8 + v + 1) * 3072)]), want.pixels)
            }
        }
        let t = rotatedTrainingViews(dataset: ds, indices: 0..<3, rotations: 4)
        XCTAssertEqual(t.main, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
        XCTAssertEqual(t.aux, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
        XCTAssertEqual(Array(t.views[(6 * 3072)..<(7 * 3072)]), img(1).rot90(2).pixels)
        let tf = rotatedTrainingViews(dataset: ds, indices: 4..<5, rotations: 4, includeFlipped: true)
        XCTAssertEqual(tf.aux, [0, 0, 1, 1, 2, 2, 3, 3])
        XCTAssertEqual(Array(tf.views[(3 * 3072)..<(4 * 3072)]), img(4).hflip().rot90(1).pixels)
    }
}
