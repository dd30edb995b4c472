// mcl-mpi-check: the multi-rank checks, run by scripts/test.sh under `mpirun -np 1`, `-np 2` and
// `-np 4 --oversubscribe`. Each check prints `mpi <check> ok <max rel err>` or
// `mpi <check> FAIL <why>` (rank 0, or the failing rank), or `mpi <check> np=1 skipped <why>` for
// the rank-invariance checks at np=1; the exit code is non-zero on failure.
import Foundation
import MCLCore
import MCLNet
import MCLObjective
import MCLDistributed
import MCLTrain

let comm = MPICommunicator()
var failed = false

@MainActor func report(_ name: String, _ err: Double, tol: Double) {
    var e = [err.isNaN ? Double.infinity : err]
    comm.allreduceMax(&e)
    if e[0] <= tol {
        if comm.isRoot { print("mpi \(name) np=\(comm.size) ok \(String(format: "%.3e", e[0]))") }
    } else {
        if comm.isRoot { print("mpi \(name) np=\(comm.size) FAIL max rel err \(e[0]) > \(tol)") }
        failed = true
    }
}

/// A rank-invariance check needs two or more ranks: at np=1 the MPI side and the single-process
/// reference run the same code, so the comparison could not fail. Reported as skipped, never ok.
@MainActor func skipAtOneRank(_ names: [String]) -> Bool {
    guard comm.size == 1 else { return false }
    for name in names { print("mpi \(name) np=1 skipped (compares N ranks with one process; needs N >= 2)") }
    return true
}

/// Deterministic synthetic views: view g of the global batch; pair p = g/2, base image p/R,
/// rotation p%R, class (base image) % 3.
@MainActor func synthBatch(start: Int, count: Int, rotations: Int, seed: UInt64) -> (views: [Float], main: [Int32], aux: [Int32]) {
    var views = [Float](repeating: 0, count: count * 3072)
    var main = [Int32](), aux = [Int32]()
    for i in 0..<count {
        let g = start + i
        var rng = SplitMix64(seed: seed, UInt64(g))
        for k in 0..<3072 { views[i * 3072 + k] = rng.nextFloat() }
        let p = g / 2
        main.append(Int32((p / rotations) % 3))
        aux.append(Int32(p % rotations))
    }
    return (views, main, aux)
}

@MainActor func checkCollectives() {
    let r = comm.rank, w = comm.size
    // allreduce across bucket boundaries
    let mpi = comm as! MPICommunicator
    let saved = mpi.bucketFloats
    mpi.bucketFloats = 7
    var buf = (0..<50).map { Float($0 + 1) * Float(r + 1) }
    buf.withUnsafeMutableBufferPointer { comm.allreduceSum($0.baseAddress!, count: 50) }
    mpi.bucketFloats = saved
    let tri = Float(w * (w + 1) / 2)
    var err = 0.0
    for i in 0..<50 { err = max(err, Double(abs(buf[i] - Float(i + 1) * tri)) / Double(Float(i + 1) * tri)) }
    report("allreduce-bucketed", err, tol: 0)
    // variable-count allgather in rank order
    let mine = (0...r).map { Float(r * 100 + $0) }
    let all = comm.allgatherv(mine)
    var expect: [Float] = []
    for q in 0..<w { expect += (0...q).map { Float(q * 100 + $0) } }
    report("allgatherv", all == expect ? 0 : 1, tol: 0)
    // equal-count allgather of labels
    let labels = comm.allgather([Int32(r), Int32(-r)])
    report("allgather-int32", labels == (0..<w).flatMap { [Int32($0), Int32(-$0)] } ? 0 : 1, tol: 0)
    // broadcast from rank 0
    var b = [Float](repeating: Float(r), count: 9)
    b.withUnsafeMutableBufferPointer { comm.broadcast($0.baseAddress!, count: 9, root: 0) }
    report("broadcast", b.allSatisfy { $0 == 0 } ? 0 : 1, tol: 0)
    let s = comm.broadcast(r == 0 ? "config from rank 0" : "")
    report("broadcast-string", s == "config from rank 0" ? 0 : 1, tol: 0)
    // reduce-scatter: rank q contributes (q + 1) * (i + 1) at index i; rank r gets block r of the sum.
    let per = 5
    let contrib = (0..<(w * per)).map { Float(r + 1) * Float($0 + 1) }
    var block = [Float](repeating: -1, count: per)
    contrib.withUnsafeBufferPointer { c in block.withUnsafeMutableBufferPointer { comm.reduceScatterSum(c.baseAddress!, countPerRank: per, into: $0.baseAddress!) } }
    let wantBlock = (0..<per).map { tri * Float(r * per + $0 + 1) }
    report("reduce-scatter", block == wantBlock ? 0 : 1, tol: 0)
}

/// The loss sharded by rows over the ranks (reduce-scatter + allreduce) equals the whole loss
/// computed on one rank: the loss, both parts and dL/dz of every rank's own views.
@MainActor func checkShardedLoss() {
    if skipAtOneRank(["sharded-loss-value", "sharded-loss-gradient"]) { return }
    let n = 48, dim = 24, views = n * comm.size
    var z = [Float](repeating: 0, count: views * dim)
    var rng = SplitMix64(seed: 77, 1)
    for k in 0..<z.count { z[k] = rng.nextFloat() * 2 - 1 }
    let main = (0..<views).map { Int32(($0 / 8) % 3) }, aux = (0..<views).map { Int32(($0 / 2) % 4) }
    var valueErr = 0.0, gradErr = 0.0
    for config in [lossConfig, LossConfig(kind: .mcl, spa: .paperExpectation, floor: nil), LossConfig(kind: .supcon)] {
        let targets = sampleSPATargets(main: main, aux: aux, useAux: true, mode: config.spa, seed: 4, step: 2)
        let whole = contrastiveLoss(z: z, views: views, dim: dim, main: main, aux: aux, spaTargets: targets, config: config)
        let sharded = z.withUnsafeBufferPointer {
            shardedContrastiveLoss(zGlobal: $0, localViews: n, dim: dim, main: main, aux: aux, spaTargets: targets,
                                   config: config, comm: comm)
        }
        valueErr = max(valueErr, abs(sharded.loss - whole.loss) / abs(whole.loss), abs(sharded.ccm - whole.ccm) / max(1, abs(whole.ccm)),
                       abs(sharded.spa - whole.spa) / max(1, abs(whole.spa)))
        let own = Array(whole.gradZ[(comm.rank * n * dim)..<((comm.rank + 1) * n * dim)])
        gradErr = max(gradErr, Compare.relToMax(sharded.gradZ.map(Double.init), own.map(Double.init)))
    }
    report("sharded-loss-value", valueErr, tol: 1e-6)
    report("sharded-loss-gradient", gradErr, tol: 1e-5)
}

let modelConfig = ModelConfig(arch: "resnet18", width: 4, projectorHidden: 32, projectionDim: 16)
let lossConfig = LossConfig(kind: .mcl, spa: .official, tau: 0.2, alpha: 0.05, beta: 2.0, spaWeight: 1, floor: 1e-7, useAux: true)
let globalPairs = 64, rotations = 4, steps = 3
let globalViews = 2 * globalPairs

/// The largest per-tensor error (relative to each tensor's largest element) between two trainers' gradients.
@MainActor func gradientError(_ a: DistributedTrainer, _ b: DistributedTrainer) -> Double {
    let g1 = a.model.store.grads.array, g2 = b.model.store.grads.array
    var err = 0.0
    for p in a.model.store.params {
        err = max(err, Compare.relToMax(Array(g1[p.offset..<(p.offset + p.count)]), Array(g2[p.offset..<(p.offset + p.count)])))
    }
    return err
}

@MainActor func makeTrainer(_ c: Communicator, syncBN: Bool, microBatch: Int = 0, initSeed: UInt64) throws -> DistributedTrainer {
    let model = try ResNetModel(modelConfig)
    model.initialise(seed: initSeed)
    let t = DistributedTrainer(model: model, comm: c, loss: lossConfig,
                               schedule: CosineSchedule(baseLR: 0.3 * Double(globalPairs) / 256, totalSteps: steps),
                               microBatch: microBatch, seed: 11, syncBN: syncBN)
    t.broadcastInitialState()
    return t
}

/// Sync BatchNorm: losses at every step and parameters after 3 steps equal the single-process run.
@MainActor func checkRankInvarianceSyncBN() throws {
    guard globalViews % comm.size == 0 else { return }
    if skipAtOneRank(["syncbn-gradient-step0", "syncbn-loss-per-step", "syncbn-params-after-3-steps", "syncbn-running-stats"]) { return }
    Conv2d.deterministic = true
    defer { Conv2d.deterministic = false }
    let n = globalViews / comm.size
    let local = synthBatch(start: comm.rank * n, count: n, rotations: rotations, seed: 5)
    let full = synthBatch(start: 0, count: globalViews, rotations: rotations, seed: 5)
    // Ranks start from different seeds; the broadcast must make them equal to rank 0's.
    let dist = try makeTrainer(comm, syncBN: true, initSeed: 100 + UInt64(comm.rank))
    let ref = try makeTrainer(LocalCommunicator(), syncBN: true, initSeed: 100)
    // Step 0: the gradient summed over ranks equals the single-process gradient, per tensor.
    do {
        let d2 = try makeTrainer(comm, syncBN: true, initSeed: 100)
        let r2 = try makeTrainer(LocalCommunicator(), syncBN: true, initSeed: 100)
        _ = local.views.withUnsafeBufferPointer { d2.computeGradients(views: $0.baseAddress!, localViews: n, main: local.main, aux: local.aux, step: 0) }
        _ = full.views.withUnsafeBufferPointer { r2.computeGradients(views: $0.baseAddress!, localViews: globalViews, main: full.main, aux: full.aux, step: 0) }
        let err = gradientError(d2, r2)
        report("syncbn-gradient-step0", err, tol: 1e-5)
    }
    var lossErr = 0.0
    for s in 0..<steps {
        let a = local.views.withUnsafeBufferPointer { dist.step(views: $0.baseAddress!, localViews: n, main: local.main, aux: local.aux, step: s) }
        let b = full.views.withUnsafeBufferPointer { ref.step(views: $0.baseAddress!, localViews: globalViews, main: full.main, aux: full.aux, step: s) }
        lossErr = max(lossErr, abs(a.loss - b.loss) / abs(b.loss))
        if comm.isRoot { print("  step \(s) loss np=\(comm.size) \(a.loss) np=1 \(b.loss)") }
    }
    report("syncbn-loss-per-step", lossErr, tol: 1e-5)
    // After the first update the two runs' weights differ by float rounding (~1e-7), and a ReLU
    // whose input lies within that distance of 0 flips, moving a few gradient entries by
    // ~1/sqrt(batch positions) (measured: a 1e-6 input perturbation changes this small network's
    // gradients by ~2%). So after 3 steps the parameters are compared relative to the largest
    // parameter with 1e-3; the step-0 gradient and every step's loss are held to 1e-5.
    let paramErr = Compare.relToMax(dist.model.store.values.array, ref.model.store.values.array)
    report("syncbn-params-after-3-steps", paramErr, tol: 1e-3)
    var statErr = 0.0
    for p in dist.model.store.stats {
        let x = Array(UnsafeBufferPointer(start: dist.model.store.state.ptr + p.offset, count: p.count))
        let y = Array(UnsafeBufferPointer(start: ref.model.store.state.ptr + p.offset, count: p.count))
        statErr = max(statErr, Compare.relToMax(x, y))
    }
    report("syncbn-running-stats", statErr, tol: 1e-3)
}

/// Per-rank BatchNorm: the gradient summed over ranks equals the single-process gradient of the
/// same global loss with the same per-shard statistics (the micro-batch path with chunk = shard).
@MainActor func checkPerRankBNGradient() throws {
    guard globalViews % comm.size == 0 else { return }
    if skipAtOneRank(["perrank-bn-loss", "perrank-bn-gradient-sum"]) { return }
    let n = globalViews / comm.size
    let local = synthBatch(start: comm.rank * n, count: n, rotations: rotations, seed: 9)
    let full = synthBatch(start: 0, count: globalViews, rotations: rotations, seed: 9)
    let dist = try makeTrainer(comm, syncBN: false, initSeed: 7)
    let ref = try makeTrainer(LocalCommunicator(), syncBN: false, microBatch: n, initSeed: 7)
    let a = local.views.withUnsafeBufferPointer { dist.computeGradients(views: $0.baseAddress!, localViews: n, main: local.main, aux: local.aux, step: 0) }
    let b = full.views.withUnsafeBufferPointer { ref.computeGradients(views: $0.baseAddress!, localViews: globalViews, main: full.main, aux: full.aux, step: 0) }
    report("perrank-bn-loss", abs(a.loss - b.loss) / abs(b.loss), tol: 1e-5)
    let err = gradientError(dist, ref)
    report("perrank-bn-gradient-sum", err, tol: 1e-4)
}

/// The cross-entropy objectives (sync BatchNorm): the step-0 loss and the gradient summed over
/// ranks equal the single-process step's, for ce-rotation (one view per (image, rotation) pair;
/// each rank's class and rotation shares) and ce-simclr (two views per image; the cross-entropy
/// shares and the sharded SimCLR term).
@MainActor func checkSupervisedRankInvariance() throws {
    let kinds: [(LossKind, Int)] = [(.ceRotation, 4), (.ceSimCLR, 1)]
    if skipAtOneRank(kinds.flatMap { ["\($0.0.rawValue)-loss", "\($0.0.rawValue)-gradient-sum"] }) { return }
    Conv2d.deterministic = true
    defer { Conv2d.deterministic = false }
    for (kind, R) in kinds {
        let views = 64
        guard views % comm.size == 0 else { continue }
        let n = views / comm.size
        // ce-rotation: view g = pair g (image g / 4, rotation g % 4); ce-simclr: views 2p, 2p + 1 of image p.
        func batch(_ start: Int, _ count: Int) -> (views: [Float], main: [Int32], aux: [Int32]) {
            if kind == .ceSimCLR { return synthBatch(start: start, count: count, rotations: 1, seed: 21) }
            var b = synthBatch(start: start, count: count, rotations: 1, seed: 21)
            b.main = (start..<(start + count)).map { Int32(($0 / R) % 3) }
            b.aux = (start..<(start + count)).map { Int32($0 % R) }
            return b
        }
        var loss = LossConfig(kind: kind, tau: 0.2, floor: 1e-7, useAux: false)
        loss.simclrWeight = 0.3
        let config = ModelConfig(arch: "resnet18", width: 4, projectorHidden: 32, projectionDim: 16, classes: 3,
                                 rotationHead: kind == .ceRotation)
        func trainer(_ c: Communicator) throws -> DistributedTrainer {
            let model = try ResNetModel(config)
            model.initialise(seed: 31)
            return DistributedTrainer(model: model, comm: c, loss: loss, schedule: CosineSchedule(baseLR: 0.1, totalSteps: 3),
                                      seed: 3, syncBN: true)
        }
        let local = batch(comm.rank * n, n), full = batch(0, views)
        let dist = try trainer(comm), ref = try trainer(LocalCommunicator())
        let a = local.views.withUnsafeBufferPointer { dist.computeGradients(views: $0.baseAddress!, localViews: n, main: local.main, aux: local.aux, step: 0) }
        let b = full.views.withUnsafeBufferPointer { ref.computeGradients(views: $0.baseAddress!, localViews: views, main: full.main, aux: full.aux, step: 0) }
        if comm.isRoot { print("  \(kind.rawValue) loss np=\(comm.size) \(a.loss) (ce \(a.ce) rot \(a.rotation) simclr \(a.ccm)) np=1 \(b.loss)") }
        report("\(kind.rawValue)-loss", abs(a.loss - b.loss) / abs(b.loss), tol: 1e-5)
        let err = gradientError(dist, ref)
        report("\(kind.rawValue)-gradient-sum", err, tol: 1e-5)
    }
}

/// Sync BatchNorm layer alone: shards of a batch with the allreduce hook give the statistics,
/// outputs and input gradients of the whole batch in one process.
@MainActor func checkSyncBNLayer() {
    let C = 3, mPer = 10, M = mPer * comm.size
    var rng = SplitMix64(seed: 77)
    let xFull = (0..<(C * M)).map { _ in Float(rng.nextGaussian()) * 2 + 1 }
    let dyFull = (0..<(C * M)).map { _ in Float(rng.nextGaussian()) }
    let r = comm.rank
    func shard(_ a: [Float]) -> [Float] {
        var out: [Float] = []
        for c in 0..<C {
            let s: Int = c * M + r * mPer
            out.append(contentsOf: a[s..<(s + mPer)])
        }
        return out
    }
    func run(_ x: [Float], _ dy: [Float], m: Int, reducer: StatReducer?) -> ([Float], [Float], [Float]) {
        let store = ParameterStore()
        let bn = BatchNorm2d(store, "bn", channels: C)
        store.finalize()
        for i in 0..<store.paramCount { store.values.ptr[i] = 0.5 + Float(i) * 0.1 }
        var y = [Float](repeating: 0, count: C * m), dx = y, d = dy
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in bn.forwardTrain(xp.baseAddress!, m: m, yp.baseAddress!, relu: true, reducer: reducer) }
            y.withUnsafeBufferPointer { yp in
                d.withUnsafeMutableBufferPointer { dp in
                    dx.withUnsafeMutableBufferPointer { dxp in
                        bn.backward(xp.baseAddress!, m: m, dy: dp.baseAddress!, reluOut: yp.baseAddress!, dx: dxp.baseAddress!, reducer: reducer)
                    }
                }
            }
        }
        return (y, dx, store.grads.array)
    }
    let c = comm
    let (y1, dx1, g1) = run(shard(xFull), shard(dyFull), m: mPer, reducer: { v in c.allreduceSum(&v) })
    let (y2, dx2, g2) = run(xFull, dyFull, m: M, reducer: nil)
    var gsum = g1.map(Double.init)
    comm.allreduceSum(&gsum)
    report("syncbn-layer-forward", Compare.relToMax(y1, shard(y2)), tol: 1e-5)
    report("syncbn-layer-dx", Compare.relToMax(dx1, shard(dx2)), tol: 1e-5)
    report("syncbn-layer-dgamma-dbeta", Compare.relToMax(gsum, g2.map(Double.init)), tol: 1e-5)
}

let args = CommandLine.arguments
if args.count > 1 && args[1] == "abort-test" {
    // Rank 1 fails; the whole job must end with its message instead of hanging in the barrier.
    if comm.rank == 1 { comm.abort("simulated failure on purpose", code: 7) }
    comm.barrier()
    sleep(60)
    exit(0)
}
do {
    checkCollectives()
    checkShardedLoss()
    checkSyncBNLayer()
    try checkRankInvarianceSyncBN()
    try checkPerRankBNGradient()
    try checkSupervisedRankInvariance()
} catch {
    comm.abort("\(error)", code: 2)
}
comm.barrier()
MPIRuntime.finalize()
exit(failed ? 1 : 0)
