import XCTest
import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
@testable import MCLTrain

/// Representation-gradient caching: chunks of K views behave as K-view ranks with per-rank
/// BatchNorm (each chunk normalised with its own statistics, as documented in DistributedStep).
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

    /// Chunks of K views are K-view ranks: one process with 32 views and micro-batch 16 (forward
    /// without activations, the loss on the whole Z, then per chunk a re-forward and a backward
    /// of its rows of dL/dZ) gives the loss and gradient of two ranks of 16 views each with
    /// per-rank BatchNorm, whose gradients are summed by the communicator.
    func testChunksEqualRanks() throws {
        let (gChunked, sChunked) = try gradients(micro: 16, views: 32)
        let (x, m, a) = makeBatch(32)
        let group = ThreadGroup(size: 2)
        let results = LockedBox<[Int: ([Float], Double)]>([:])
        let trainers = [try trainer(micro: 0), try trainer(micro: 0)]
        let done = DispatchGroup()
        for rank in 0..<2 {
            done.enter()
            let t = DistributedTrainer(model: trainers[rank].model, comm: ThreadCommunicator(group: group, rank: rank),
                                       loss: LossConfig(), schedule: CosineSchedule(baseLR: 0.1, totalSteps: 10), seed: 3)
            let views = Array(x[(rank * 16 * 3072)..<((rank + 1) * 16 * 3072)])
            let main = Array(m[(rank * 16)..<((rank + 1) * 16)]), aux = Array(a[(rank * 16)..<((rank + 1) * 16)])
            let thread = Thread {
                let s = views.withUnsafeBufferPointer { t.computeGradients(views: $0.baseAddress!, localViews: 16, main: main, aux: aux, step: 0) }
                results.update { $0[rank] = (t.model.store.grads.array, s.loss) }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        let r = results.value
        let (g0, loss0) = try XCTUnwrap(r[0]), (g1, loss1) = try XCTUnwrap(r[1])
        XCTAssertEqual(loss0, loss1)
        XCTAssertEqual(sChunked.loss, loss0, accuracy: 1e-6 * abs(loss0))
        XCTAssertEqual(g0, g1, "the allreduce leaves the same sum on both ranks")
        XCTAssertLessThan(Compare.relToMax(gChunked, g0), 1e-5)
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
