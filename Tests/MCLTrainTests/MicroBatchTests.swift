import XCTest
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
@testable import MCLTrain

/// Representation-gradient caching: with chunk = shard the gradient equals the unchunked one;
/// with smaller chunks BatchNorm normalises each chunk with its own statistics (documented).
final class MicroBatchTests: XCTestCase {
    func makeBatch(_ views: Int) -> ([Float], [Int32], [Int32]) {
        var rng = SplitMix64(seed: 21)
        let x = (0..<(views * 3072)).map { _ in rng.nextFloat() }
        let main = (0..<views).map { Int32(($0 / 8) % 3) }
        let aux = (0..<views).map { Int32(($0 / 2) % 4) }
        return (x, main, aux)
    }

    func trainer(micro: Int) throws -> DistributedTrainer {
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 16, projectionDim: 8))
        model.initialise(seed: 5)
        return DistributedTrainer(model: model, comm: LocalCommunicator(), loss: LossConfig(),
                                  schedule: CosineSchedule(baseLR: 0.1, totalSteps: 10), microBatch: micro, seed: 3)
    }

    func gradients(micro: Int, views: Int) throws -> ([Float], StepStats) {
        let t = try trainer(micro: micro)
        let (x, m, a) = makeBatch(views)
        let s = x.withUnsafeBufferPointer { t.computeGradients(views: $0.baseAddress!, localViews: views, main: m, aux: a, step: 0) }
        return (t.model.store.grads.array, s)
    }

    func testChunkEqualToShardMatchesUnchunked() throws {
        let (g0, s0) = try gradients(micro: 0, views: 32)
        let (g1, s1) = try gradients(micro: 32, views: 32)
        XCTAssertEqual(s0.loss, s1.loss)
        XCTAssertEqual(Compare.relToMax(g1, g0), 0, accuracy: 1e-6)
        XCTAssertTrue(g0.contains { $0 != 0 })
    }

    func testSmallerChunksUsePerChunkStatistics() throws {
        // With chunks of 16 views the loss is the per-rank-BN loss of two 16-view shards: finite,
        // close to but not equal to the unchunked value.
        let (g0, s0) = try gradients(micro: 0, views: 32)
        let (g2, s2) = try gradients(micro: 16, views: 32)
        XCTAssertTrue(s2.loss.isFinite)
        XCTAssertNotEqual(s0.loss, s2.loss)
        XCTAssertLessThan(abs(s0.loss - s2.loss) / s0.loss, 0.2)
        XCTAssertGreaterThan(Compare.relToMax(g2, g0), 1e-6)
    }

    func testStepUpdatesWeightsWithScheduledLR() throws {
        let t = try trainer(micro: 0)
        let (x, m, a) = makeBatch(16)
        let before = t.model.store.values.array
        let s = x.withUnsafeBufferPointer { t.step(views: $0.baseAddress!, localViews: 16, main: m, aux: a, step: 0) }
        XCTAssertEqual(s.lr, 0.1, accuracy: 1e-12)
        XCTAssertTrue(s.loss.isFinite)
        XCTAssertNotEqual(before, t.model.store.values.array)
    }
}
