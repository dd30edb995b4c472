import XCTest
import MCLNet
@testable import MCLTrain

/// Known answers for the cost model behind `mcl-dist plan` (docs/scaling.md), worked by hand.
final class PlannerTests: XCTestCase {
    /// 256 pairs = 512 views, 10,000 images x 4 rotations (156 steps/epoch), 15 epochs,
    /// 128 views/s per rank, loss 0.01 s at 256 views, alpha 5 us, beta 1 GB/s, 1 MB/view, P = 1e6.
    private func config(syncBN: Bool, microBatch: Int = 0) -> RunConfig {
        var c = RunConfig()
        c.batchSize = 256
        c.epochs = 15
        c.rotations = 4
        c.syncBN = syncBN
        c.microBatch = microBatch
        c.model.projectionDim = 128
        return c
    }

    private let calibration = PlanCalibration(viewsPerSecondPerRank: 128, lossSeconds: 0.01, lossViews: 256,
                                              latencySeconds: 5e-6, bandwidthBytesPerSecond: 1e9,
                                              activationBytesPerView: 1e6)

    private func assertClose(_ a: Double, _ b: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a, b, accuracy: 1e-12 + 1e-9 * abs(b), what, file: file, line: line)
    }

    func testFourRanksWithSyncBN() {
        let r = Planner.estimate(config: config(syncBN: true), datasetImages: 10_000, ranks: 4, threads: 1,
                                 parameterCount: 1_000_000, batchNormChannels: [16, 32], calibration: calibration)
        XCTAssertEqual(r.viewsPerRank, 128)
        XCTAssertEqual(r.stepsPerEpoch, 156)
        assertClose(r.computeSeconds, 1.0, "128 views at 128 views/s")
        assertClose(r.lossSeconds, 0.01, "0.01 s x (512 / 256)^2 / 4 ranks")
        // Ring allgather of 512 x 128 floats and ring reduce-scatter of as many: 2 x 3 x (5 us +
        // 262,144 B / 4 / 1 GB/s); the allreduce of the two row sums: ceil(log2 4) x 5 us.
        let zx = 6 * (5e-6 + 65.536e-6) + 2 * 5e-6
        assertClose(r.allgatherSeconds, zx, "allgather + reduce-scatter")
        // Ring allreduce of 4 MB: 2 x 3 x (5 us + 1 MB / 1 GB/s).
        assertClose(r.allreduceSeconds, 6 * 1.005e-3, "allreduce")
        // BN layers of 16 and 32 channels: messages of 17, 16, 33 and 33, 32, 65 doubles,
        // each ceil(log2 4) = 2 rounds of (5 us + bytes / 1 GB/s).
        let bn = 2 * (6 * 5e-6 + Double(8 * (17 + 16 + 33 + 33 + 32 + 65)) / 1e9)
        assertClose(r.syncBNSeconds, bn, "sync BN")
        let comm = zx + 6.03e-3 + bn
        assertClose(r.stepSeconds, 1.01 + comm, "step")
        assertClose(r.communicationShare, comm / (1.01 + comm), "communication share")
        assertClose(r.epochSeconds, 156 * r.stepSeconds, "epoch")
        assertClose(r.totalSeconds, 15 * 156 * r.stepSeconds, "total")
        assertClose(r.imagesPerSecond, 256 / r.stepSeconds, "images/s")
        // 3P floats + 128 views x 1 MB + 128 rows of the 512 x 512 similarity matrix + the 512 x 128
        // column terms + 300 MB.
        assertClose(r.memoryPerRankGB, (12e6 + 128e6 + 262_144 + 262_144 + 300e6) / 1e9, "memory")
    }

    func testOneRankHasNoCommunication() {
        let r = Planner.estimate(config: config(syncBN: true), datasetImages: 10_000, ranks: 1, threads: 2,
                                 parameterCount: 1_000_000, batchNormChannels: [16, 32], calibration: calibration)
        assertClose(r.computeSeconds, 4.0, "512 views at 128 views/s")
        XCTAssertEqual(r.allgatherSeconds, 0)
        XCTAssertEqual(r.allreduceSeconds, 0)
        XCTAssertEqual(r.syncBNSeconds, 0)
        XCTAssertEqual(r.communicationShare, 0)
        assertClose(r.stepSeconds, 4.04, "step")
    }

    func testPerRankBNAndMicroBatching() {
        let r = Planner.estimate(config: config(syncBN: false, microBatch: 64), datasetImages: 10_000, ranks: 4, threads: 1,
                                 parameterCount: 1_000_000, batchNormChannels: [16, 32], calibration: calibration)
        XCTAssertEqual(r.syncBNSeconds, 0)
        // Micro-batching forwards every chunk twice: compute x 4/3; only a 64-view chunk is held.
        assertClose(r.computeSeconds, 4.0 / 3.0, "micro-batched compute")
        assertClose(r.memoryPerRankGB, (12e6 + 64e6 + 262_144 + 262_144 + 300e6) / 1e9, "memory")
    }

    func testMaxStepsLimitsTheRun() {
        var c = config(syncBN: false)
        c.maxSteps = 200
        let r = Planner.estimate(config: c, datasetImages: 10_000, ranks: 2, threads: 1,
                                 parameterCount: 1_000_000, calibration: calibration)
        XCTAssertEqual(r.epochs, 2)
        assertClose(r.totalSeconds, 200 * r.stepSeconds, "200 steps")
    }
}

final class PlannerMemoryTests: XCTestCase {
    /// The parameter count the memory guard uses (from the architecture, no model built) equals
    /// the built model's, for both architectures and a few widths.
    func testParameterCountMatchesTheModel() throws {
        for arch in ["resnet18", "resnet34"] {
            for (w, h, d) in [(4, 8, 4), (8, 32, 16), (16, 64, 32)] {
                let m = ModelConfig(arch: arch, width: w, projectorHidden: h, projectionDim: d)
                XCTAssertEqual(Planner.parameterCount(m), Double(try ResNetModel(m).store.paramCount), "\(arch) w\(w)")
            }
        }
    }
}

final class CalibrationSplitTests: XCTestCase {
    /// 10%: every 10th image of each class in file order is held out; both parts keep every class.
    func testEveryKthPerClass() {
        let labels: [Int32] = (0..<60).map { Int32($0 % 3) }
        let (fit, held) = calibrationSplit(indices: Array(0..<60), labels: labels, fraction: 0.1)
        XCTAssertEqual(held, [27, 28, 29, 57, 58, 59])
        XCTAssertEqual(fit.count, 54)
        XCTAssertEqual(Set(fit).intersection(held).count, 0)
        XCTAssertEqual(calibrationSplit(indices: [1, 2], labels: [0, 0, 0], fraction: 0).heldOut, [])
    }
}
