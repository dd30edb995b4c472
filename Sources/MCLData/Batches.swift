import Foundation
import Dispatch
import MCLCore

/// One rank's share of a global training batch (SPEC 1).
public struct TrainBatch: Sendable {
    public let epoch: Int
    public let step: Int
    /// [V * localPairs, 3, H, W] (NCHW), V = `BatchLoader.viewsPerPair`: with V = 2 views 2p and
    /// 2p+1 are the two augmentations of pair p; with V = 1 view p is pair p's one augmentation.
    public var views: [Float]
    /// Main label y (class) and auxiliary label r (rotation index) of every view ([V * localPairs]).
    public var main: [Int32]
    public var aux: [Int32]
    /// Index of this rank's first pair within the global batch (rank * B / W).
    public let globalPairOffset: Int
    /// Data set index of every local pair's base image ([localPairs]).
    public let baseIndices: [Int]

    public var viewCount: Int { main.count }
    public var pairCount: Int { baseIndices.count }
}

/// Stream tags that keep the random streams of different uses apart.
enum StreamTag {
    static let permutation: UInt64 = 0x5045_524D  // "PERM"
    static let view: UInt64 = 0x5649_4557          // "VIEW"
}

/// Produces the training batches of SPEC 1 for one rank, with background prefetching.
///
/// Layout: with R rotations (R = 4 with the auxiliary task, 1 without) the data set is expanded to
/// (image, rotation) pairs and the R rotations of an image are adjacent. Each epoch e draws a
/// permutation pi_e of the N base images (Fisher-Yates, SplitMix64(seed, PERM, e)). Global batch b
/// (b = 0..<stepsPerEpoch, stepsPerEpoch = floor(N R / B), the rest dropped) holds base images
/// pi_e[b B/R ..< (b+1) B/R]; its pair g = j R + r is (pi_e[b B/R + j], rotation r). Rank w of W
/// takes pairs [w B/W, (w+1) B/W). Every pair yields two views, interleaved; view v of global pair g
/// is drawn from SplitMix64(seed, VIEW, e, b, g, v), so a batch is a pure function of
/// (seed, epoch, step, rank) and the union of the ranks' slices is the single-rank batch.
///
/// `batch(epoch:step:)` returns the batch and schedules the next `prefetch` steps (in order,
/// rolling over into the next epoch) on a background queue. Results never depend on timing.
public final class BatchLoader: @unchecked Sendable {
    public let dataset: PackedDataset
    public let globalBatch: Int
    public let rotations: Int
    public let rank: Int
    public let worldSize: Int
    public let seed: UInt64
    public let augment: AugmentOptions
    public let prefetch: Int
    /// Threads used to render one batch (1 = the background queue alone).
    public let workers: Int
    public let stepsPerEpoch: Int
    /// Augmented views of every (image, rotation) pair: 2 for the contrastive objectives, 1 for
    /// the cross-entropy ones.
    public let viewsPerPair: Int

    /// Pairs per rank, B / W.
    public var localPairs: Int { globalBatch / worldSize }
    /// Base images per global batch, B / R.
    public var imagesPerBatch: Int { globalBatch / rotations }
    public var globalPairOffset: Int { rank * localPairs }

    private let cond = NSCondition()
    private enum Slot { case pending, ready(TrainBatch) }
    private var slots: [Int: Slot] = [:]
    private var permCache: [(epoch: Int, perm: [Int])] = []
    private let queue = DispatchQueue(label: "mcl-dist.batch-loader", qos: .userInitiated)

    public init(dataset: PackedDataset, globalBatch: Int, rotations: Int, rank: Int = 0, worldSize: Int = 1,
                seed: UInt64, augment: AugmentOptions = .standard, prefetch: Int = 2, workers: Int = 1,
                viewsPerPair: Int = 2) throws {
        guard viewsPerPair == 1 || viewsPerPair == 2 else { throw DataError("views per pair must be 1 or 2, got \(viewsPerPair)") }
        guard rotations == 1 || rotations == 4 else {
            throw DataError("rotations must be 1 (auxiliary task off) or 4 (0/90/180/270), got \(rotations)")
        }
        guard globalBatch > 0 else { throw DataError("batch size must be positive, got \(globalBatch)") }
        guard globalBatch % rotations == 0 else {
            throw DataError("batch size \(globalBatch) is not divisible by the \(rotations) rotations (the batch counts (image, rotation) pairs)")
        }
        guard worldSize > 0, rank >= 0, rank < worldSize else { throw DataError("rank \(rank) outside world size \(worldSize)") }
        guard globalBatch % worldSize == 0 else {
            throw DataError("batch size \(globalBatch) is not divisible by the world size \(worldSize)")
        }
        guard dataset.channels == 3 && dataset.height == dataset.width else {
            throw DataError(dataset.path, "training needs square 3-channel images, got \(dataset.shape)")
        }
        let steps = dataset.count * rotations / globalBatch
        guard steps > 0 else {
            throw DataError(dataset.path, "\(dataset.count) images x \(rotations) rotations is less than one batch of \(globalBatch)")
        }
        self.dataset = dataset
        self.globalBatch = globalBatch
        self.rotations = rotations
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.augment = augment
        self.prefetch = max(0, prefetch)
        self.workers = max(1, workers)
        self.stepsPerEpoch = steps
        self.viewsPerPair = viewsPerPair
    }

    /// The epoch's permutation of base images (pure function of seed and epoch).
    public func permutation(epoch: Int) -> [Int] {
        cond.lock()
        if let hit = permCache.first(where: { $0.epoch == epoch }) { cond.unlock(); return hit.perm }
        cond.unlock()
        var rng = SplitMix64(seed: seed, StreamTag.permutation, UInt64(epoch))
        var p = Array(0..<dataset.count)
        for i in stride(from: p.count - 1, to: 0, by: -1) { p.swapAt(i, rng.nextInt(i + 1)) }
        cond.lock()
        permCache.append((epoch, p))
        if permCache.count > 2 { permCache.removeFirst() }
        cond.unlock()
        return p
    }

    /// The batch for (epoch, step), from the prefetch buffer when ready; schedules the following
    /// `prefetch` steps.
    public func batch(epoch: Int, step: Int) -> TrainBatch {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) outside 0..<\(stepsPerEpoch)")
        let key = epoch * stepsPerEpoch + step
        cond.lock()
        // Forget anything outside the window [key, key + prefetch].
        for k in slots.keys where k < key || k > key + prefetch { slots[k] = nil }
        var result: TrainBatch? = nil
        while let s = slots[key] {
            if case .ready(let b) = s { result = b; slots[key] = nil; break }
            cond.wait()  // being rendered in the background
        }
        for k in (key + 1)..<(key + 1 + prefetch) where slots[k] == nil {
            slots[k] = .pending
            queue.async { [self] in fill(k) }
        }
        cond.unlock()
        return result ?? makeBatch(epoch: epoch, step: step)
    }

    private func fill(_ key: Int) {
        cond.lock()
        let wanted: Bool
        if case .pending = slots[key] { wanted = true } else { wanted = false }
        cond.unlock()
        guard wanted else { return }
        let b = makeBatch(epoch: key / stepsPerEpoch, step: key % stepsPerEpoch)
        cond.lock()
        if case .pending = slots[key] { slots[key] = .ready(b) }
        cond.broadcast()
        cond.unlock()
    }

    /// Builds the batch synchronously (no cache).
    public func makeBatch(epoch: Int, step: Int) -> TrainBatch {
        let perm = permutation(epoch: epoch)
        let side = dataset.height
        let per = 3 * side * side
        let pairs = localPairs
        let offset = globalPairOffset
        var base = [Int](repeating: 0, count: pairs)
        let V = viewsPerPair
        var main = [Int32](repeating: 0, count: V * pairs)
        var aux = [Int32](repeating: 0, count: V * pairs)
        for p in 0..<pairs {
            let g = offset + p
            let img = perm[step * imagesPerBatch + g / rotations]
            base[p] = img
            for v in 0..<V { main[V * p + v] = dataset.labels[img]; aux[V * p + v] = Int32(g % rotations) }
        }
        var views = [Float](repeating: 0, count: V * pairs * per)
        let ds = dataset, opts = augment, rots = rotations, seed = self.seed, baseIdx = base
        views.withUnsafeMutableBufferPointer { vb in
            nonisolated(unsafe) let out = vb.baseAddress!
            let render: @Sendable (Int, Int) -> Void = { lo, hi in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: per)
                defer { scratch.deallocate() }
                for p in lo..<hi {
                    let g = offset + p
                    let src = ds.image(baseIdx[p]).baseAddress!
                    for v in 0..<V {
                        var rng = SplitMix64(seed: seed, StreamTag.view, UInt64(epoch), UInt64(step), UInt64(g), UInt64(v))
                        let params = Augment.drawParams(rotation: g % rots, options: opts, height: side, width: side, rng: &rng)
                        Augment.render(src: src, side: side, params: params, variant: opts.flipVariant,
                                       dst: out + (V * p + v) * per, scratch: scratch)
                    }
                }
            }
            let t = min(workers, pairs)
            if t <= 1 { render(0, pairs) } else {
                let chunk = (pairs + t - 1) / t
                DispatchQueue.concurrentPerform(iterations: t) { k in
                    let lo = k * chunk, hi = min(pairs, lo + chunk)
                    if lo < hi { render(lo, hi) }
                }
            }
        }
        return TrainBatch(epoch: epoch, step: step, views: views, main: main, aux: aux,
                          globalPairOffset: offset, baseIndices: base)
    }

    /// The parameters drawn for view v (0 or 1) of global pair g of (epoch, step) — for tests and
    /// debugging; `makeBatch` renders exactly these.
    public func viewParams(epoch: Int, step: Int, globalPair g: Int, view v: Int) -> ViewParams {
        var rng = SplitMix64(seed: seed, StreamTag.view, UInt64(epoch), UInt64(step), UInt64(g), UInt64(v))
        return Augment.drawParams(rotation: g % rotations, options: augment, height: dataset.height, width: dataset.width, rng: &rng)
    }
}

// MARK: - Un-augmented views for evaluation (SPEC 8)

/// The un-augmented Self-Ensemble Inference views of images `indices`, as
/// [indices.count * ways, 3, H, W] floats in [0,1]: 1-way: the image; 4-way: view v = rotation v
/// (counter-clockwise); 8-way: view v = rotation v/2 of the image, horizontally flipped BEFORE
/// rotating when v is odd.
public func evalViews(dataset: PackedDataset, indices: Range<Int>, ways: Int) -> [Float] {
    precondition(ways == 1 || ways == 4 || ways == 8, "SEI ways must be 1, 4 or 8, got \(ways)")
    precondition(indices.lowerBound >= 0 && indices.upperBound <= dataset.count)
    let side = dataset.height, per = 3 * side * side
    var out = [Float](repeating: 0, count: indices.count * ways * per)
    out.withUnsafeMutableBufferPointer { ob in
        for (k, i) in indices.enumerated() {
            let src = dataset.image(i).baseAddress!
            for v in 0..<ways {
                let rot = ways == 8 ? v / 2 : v
                let flip: ImageKernels.PreFlip = (ways == 8 && v % 2 == 1) ? .horizontal : .none
                ImageKernels.orient(src: src, channels: 3, side: side, rotation: rot, preFlip: flip,
                                    dst: ob.baseAddress! + (k * ways + v) * per)
            }
        }
    }
    return out
}

/// Un-augmented training views for fitting the class-conditional Gaussians (SPEC 8): for each
/// image of `indices` and each rotation r in 0..<rotations, the image rotated by r (and, when
/// `includeFlipped`, also horizontally flipped in its original frame then rotated, as the authors'
/// code also feeds), with labels main = class, aux = r. Order: image, rotation, [plain, flipped].
public func rotatedTrainingViews(dataset: PackedDataset, indices: Range<Int>, rotations: Int,
                                 includeFlipped: Bool = false) -> (views: [Float], main: [Int32], aux: [Int32]) {
    precondition(rotations >= 1 && rotations <= 4)
    precondition(indices.lowerBound >= 0 && indices.upperBound <= dataset.count)
    let side = dataset.height, per = 3 * side * side
    let flips = includeFlipped ? 2 : 1
    let n = indices.count * rotations * flips
    var views = [Float](repeating: 0, count: n * per)
    var main = [Int32](repeating: 0, count: n), aux = [Int32](repeating: 0, count: n)
    views.withUnsafeMutableBufferPointer { vb in
        var o = 0
        for i in indices {
            let src = dataset.image(i).baseAddress!
            for r in 0..<rotations {
                for f in 0..<flips {
                    ImageKernels.orient(src: src, channels: 3, side: side, rotation: r,
                                        preFlip: f == 1 ? .horizontal : .none, dst: vb.baseAddress! + o * per)
                    main[o] = dataset.labels[i]
                    aux[o] = Int32(r)
                    o += 1
                }
            }
        }
    }
    return (views, main, aux)
}
