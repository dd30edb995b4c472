import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed

/// What one training step measured.
public struct StepStats: Sendable {
    public var loss: Double = 0
    public var ccm: Double = 0
    public var spa: Double = 0
    /// The cross-entropy objectives: the class and the rotation cross-entropy (unweighted).
    public var ce: Double = 0
    public var rotation: Double = 0
    public var lr: Double = 0
    public var forwardSeconds: Double = 0
    public var gatherSeconds: Double = 0
    public var lossSeconds: Double = 0
    public var backwardSeconds: Double = 0
    public var allreduceSeconds: Double = 0
    public var optimizerSeconds: Double = 0
    public var totalSeconds: Double = 0
}

/// The data-parallel MCL step of SPEC 4.
///
/// Each rank forwards its shard of the global batch, all-gathers z and the labels (rank order),
/// computes the loss rows of its own views and their dL/dZ (`shardedContrastiveLoss`: a
/// reduce-scatter completes the gradient, an allreduce the loss), back-propagates them, and the
/// parameter gradients are summed across ranks (the loss is already the
/// global mean). Then SGD with Nesterov and weight decay at the cosine-scheduled learning rate.
///
/// Representation-gradient caching (`microBatch` = K views > 0 and < shard): the shard is
/// forwarded in chunks of K without keeping activations, the loss and dL/dZ are computed on the
/// gathered Z, then each chunk is forwarded again (activations kept, running statistics not
/// updated twice) and back-propagated with its rows of dL/dZ. BatchNorm then normalises each chunk
/// with its own statistics, so the result equals the unchunked step only when K = shard (or with
/// eval-style BN); with smaller K it matches PyTorch processing the same chunks.
public final class DistributedTrainer: @unchecked Sendable {
    public let model: ResNetModel
    public let comm: Communicator
    public let optimizer: SGD
    public var schedule: CosineSchedule
    public var loss: LossConfig
    public var microBatch: Int
    public var seed: UInt64
    public let syncBN: Bool
    // Scratch for gathered tensors, and this rank's head outputs (cross-entropy objectives).
    var zLocal: [Float] = []
    var logitsLocal: [Float] = [], rotationLocal: [Float] = []
    public internal(set) var zGlobal: [Float] = []

    public init(model: ResNetModel, comm: Communicator, loss: LossConfig, schedule: CosineSchedule,
                microBatch: Int = 0, seed: UInt64 = 0, syncBN: Bool = false,
                momentum: Float = 0.9, weightDecay: Float = 1e-6) {
        self.model = model; self.comm = comm; self.loss = loss; self.schedule = schedule
        self.microBatch = microBatch; self.seed = seed; self.syncBN = syncBN
        optimizer = SGD(count: model.store.paramCount, momentum: momentum, weightDecay: weightDecay, nesterov: true)
        if syncBN {
            // One rank still takes the two-pass (global-mean) path, so np=1 and np=N compute the
            // statistics with the same formula.
            let c = comm
            model.reducer = comm.size > 1 ? { v in c.allreduceSum(&v) } : { _ in }
        } else {
            model.reducer = nil
        }
    }

    /// Copies rank 0's parameters and running statistics to every rank, so all start equal.
    public func broadcastInitialState() {
        comm.broadcast(model.store.values.ptr, count: model.store.paramCount, root: 0)
        comm.broadcast(model.store.state.ptr, count: model.store.statCount, root: 0)
    }

    /// Forward, global loss, backward and gradient allreduce; leaves the summed gradient in
    /// `model.store.grads` without updating the weights. `views` is this rank's [n, 3, 32, 32].
    ///
    /// The objective has a contrastive term on z (all but `ce`, `ce-rotation`), computed on the
    /// gathered batch by `shardedContrastiveLoss`, and/or cross-entropy terms on the heads
    /// (`SupervisedRows`: each rank its own rows, normalised by the global batch, the shares summed
    /// by one allreduce).
    public func computeGradients(views: UnsafePointer<Float>, localViews n: Int, main: [Int32], aux: [Int32],
                                 step: Int) -> StepStats {
        precondition(main.count == n && aux.count == n, "labels must match the local views")
        var stats = StepStats()
        let t0 = ProcessStats.now()
        let D = model.config.projectionDim, K = model.config.classes
        let imageSize = 3 * 32 * 32
        let chunk = (microBatch > 0 && microBatch < n) ? microBatch : n
        let contrastive = loss.contrastivePart
        let supervised = loss.kind.isSupervised
        let rotationHead = model.hasRotationHead
        model.store.zeroGrads()
        if zLocal.count != n * D { zLocal = [Float](repeating: 0, count: n * D) }
        if supervised && logitsLocal.count != n * K { logitsLocal = [Float](repeating: 0, count: n * K) }
        if rotationHead && rotationLocal.count != n * 4 { rotationLocal = [Float](repeating: 0, count: n * 4) }
        var c0 = 0
        while c0 < n {
            let cn = min(chunk, n - c0)
            let out = model.forward(views + c0 * imageSize, n: cn, train: true, updateRunning: true)
            zLocal.withUnsafeMutableBufferPointer { p in (p.baseAddress! + c0 * D).update(from: out.z, count: cn * D) }
            if supervised {
                logitsLocal.withUnsafeMutableBufferPointer { p in (p.baseAddress! + c0 * K).update(from: model.logits!, count: cn * K) }
            }
            if rotationHead {
                rotationLocal.withUnsafeMutableBufferPointer { p in (p.baseAddress! + c0 * 4).update(from: model.rotationLogits!, count: cn * 4) }
            }
            c0 += cn
        }
        let t1 = ProcessStats.now()
        var gradZ: [Float]? = nil
        var t2 = t1
        if let contrastive {
            let world = comm.size
            if zGlobal.count != world * n * D { zGlobal = [Float](repeating: 0, count: world * n * D) }
            zLocal.withUnsafeBufferPointer { s in
                zGlobal.withUnsafeMutableBufferPointer { g in comm.allgather(s.baseAddress!, count: n * D, into: g.baseAddress!) }
            }
            let mainG = comm.allgather(main), auxG = comm.allgather(aux)
            t2 = ProcessStats.now()
            var targets: [Int32]? = nil
            if contrastive.needsSPATargets {
                targets = sampleSPATargets(main: mainG, aux: auxG, useAux: contrastive.useAux, mode: contrastive.spa, seed: seed, step: UInt64(step))
            }
            // Each rank computes the loss rows of its own views (`shardedContrastiveLoss`): out.gradZ
            // holds dL/dZ of this rank's n views.
            var out = zGlobal.withUnsafeBufferPointer { z in
                shardedContrastiveLoss(zGlobal: z, localViews: n, dim: D, main: mainG, aux: auxG, spaTargets: targets,
                                       config: contrastive, comm: comm)
            }
            if loss.kind == .ceSimCLR {
                // Joint fine-tuning: L = CE + lambda * SimCLR.
                let w = Float(loss.simclrWeight)
                for k in out.gradZ.indices { out.gradZ[k] *= w }
            }
            stats.loss = loss.kind == .ceSimCLR ? loss.simclrWeight * out.loss : out.loss
            stats.ccm = out.ccm; stats.spa = out.spa
            gradZ = out.gradZ
        }
        var gradLogits: [Float]? = nil, gradRotation: [Float]? = nil
        if supervised {
            let global = comm.size * n
            let rows = logitsLocal.withUnsafeBufferPointer { l in
                rotationLocal.withUnsafeBufferPointer { r in
                    SupervisedRows(kind: loss.kind, logits: l.baseAddress!, rotationLogits: rotationHead ? r.baseAddress! : nil,
                                   main: main, aux: aux, rows: n, classes: K, globalViews: global,
                                   globalUpright: global / max(1, rotationHead ? 4 : 1), rotationWeight: loss.rotationWeight)
                }
            }
            var shares = [rows.classLoss, rows.rotationLoss]
            comm.allreduceSum(&shares)
            stats.ce = shares[0]; stats.rotation = shares[1]
            stats.loss += shares[0] + (loss.kind == .ceRotation ? loss.rotationWeight * shares[1] : 0)
            gradLogits = rows.gradLogits
            gradRotation = rotationHead ? rows.gradRotationLogits : nil
        }
        let t3 = ProcessStats.now()
        withPointer(gradZ) { dz in withPointer(gradLogits) { dl in withPointer(gradRotation) { dr in
            if chunk == n {
                model.backward(dZ: dz, dLogits: dl, dRotationLogits: dr)
            } else {
                var c0 = 0
                while c0 < n {
                    let cn = min(chunk, n - c0)
                    model.forward(views + c0 * imageSize, n: cn, train: true, updateRunning: false)
                    model.backward(dZ: dz.map { $0 + c0 * D }, dLogits: dl.map { $0 + c0 * K },
                                   dRotationLogits: dr.map { $0 + c0 * 4 })
                    c0 += cn
                }
            }
        } } }
        let t4 = ProcessStats.now()
        comm.allreduceSum(model.store.grads.ptr, count: model.store.paramCount)
        let t5 = ProcessStats.now()
        stats.forwardSeconds = t1 - t0; stats.gatherSeconds = t2 - t1; stats.lossSeconds = t3 - t2
        stats.backwardSeconds = t4 - t3; stats.allreduceSeconds = t5 - t4
        stats.totalSeconds = t5 - t0
        return stats
    }

    /// Applies SGD at the scheduled learning rate of `step` to the gradients now in the store.
    public func applyUpdate(step: Int) -> Double {
        let lr = schedule.lr(at: step)
        optimizer.step(params: model.store.values.ptr, grads: model.store.grads.ptr, count: model.store.paramCount, lr: Float(lr))
        return lr
    }

    /// One full training step (SPEC 4 and 6).
    public func step(views: UnsafePointer<Float>, localViews n: Int, main: [Int32], aux: [Int32], step: Int) -> StepStats {
        var s = computeGradients(views: views, localViews: n, main: main, aux: aux, step: step)
        let t0 = ProcessStats.now()
        s.lr = applyUpdate(step: step)
        s.optimizerSeconds = ProcessStats.now() - t0
        s.totalSeconds += s.optimizerSeconds
        return s
    }
}

/// `body` with the array's base address, or nil for a nil array.
func withPointer<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0.baseAddress!) }
}
