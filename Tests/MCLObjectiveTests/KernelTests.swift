import XCTest
import Dispatch
import MCLCore
@testable import MCLObjective

final class KernelTests: XCTestCase {
    /// The vectorisable exp against the C library over the range the kernels use (x <= 0 after the
    /// row maximum is subtracted) and a little above.
    func testFastExpAccuracy() {
        var worst = 0.0
        var x: Float = -87
        while x <= 20 {
            let got = Double(fastExp(x)), want = exp(Double(x))
            worst = max(worst, abs(got - want) / want)
            x += 0.001_37
        }
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(fastExp(0), 1)
        let tiny = fastExp(-1000)
        XCTAssertTrue(tiny >= 0 && tiny < 1e-37)
    }

    /// `G + G^T` on a size that is not a multiple of the tile.
    func testSymmetrise() {
        let n = 2 * Similarity.tile + 7
        var a = (0..<(n * n)).map { Float($0 % 97) - 40 }
        let original = a
        a.withUnsafeMutableBufferPointer { Similarity.symmetrise($0.baseAddress!, n: n) }
        for i in 0..<n {
            for k in 0..<n {
                XCTAssertEqual(a[i * n + k], i == k ? 0 : original[i * n + k] + original[k * n + i])
            }
        }
    }

    /// Concurrent calls (each with its own matrix, one kept afterwards) give the serial results.
    func testConcurrentCallsAgree() {
        let batch = TestBatch(imageLabels: (0..<40).map { (Int32($0 % 3), Int32($0 % 4)) }, dim: 8, seed: 21)
        let config = LossConfig(kind: .mcl, spa: .paperSample)
        let targets = sampleSPATargets(main: batch.main, aux: batch.aux, useAux: true, mode: .paperSample, seed: 3, step: 4)
        let serial = contrastiveLoss(z: batch.z, views: batch.views, dim: 8, main: batch.main, aux: batch.aux,
                             spaTargets: targets, config: config)
        let lock = NSLock()
        nonisolated(unsafe) var results: [LossOutput] = []
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let out = contrastiveLoss(z: batch.z, views: batch.views, dim: 8, main: batch.main, aux: batch.aux,
                              spaTargets: targets, config: config)
            lock.lock()
            results.append(out)
            lock.unlock()
        }
        XCTAssertEqual(results.count, 4)
        for r in results {
            XCTAssertEqual(r.loss, serial.loss)
            XCTAssertEqual(r.gradZ, serial.gradZ)
        }
        releaseLossWorkspace()
        let again = contrastiveLoss(z: batch.z, views: batch.views, dim: 8, main: batch.main, aux: batch.aux,
                            spaTargets: targets, config: config)
        XCTAssertEqual(again.gradZ, serial.gradZ)
    }
}
