import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// Which images an evaluation encodes and which rank encodes which: limits and shards.
/// The contiguous shard of positions 0..<count that `rank` of `size` encodes, made of whole
/// blocks of `align` positions: with B = ceil(count / align) blocks, blocks
/// [B*rank/size, B*(rank+1)/size), clamped to `count` (with align = 1: [count*rank/size,
/// count*(rank+1)/size)). Concatenating the shards in rank order gives 0..<count.
///
/// With `align` = the images of one forward pass, a rank's forwards are exactly the forwards of a
/// single rank over the whole set (same images, same batch size, same column positions), so the
/// features are bitwise the same whatever the number of ranks: a GEMM's rounding of a column can
/// depend on the batch size it is computed in.
public func evalShard(count: Int, rank: Int, size: Int, align: Int = 1) -> Range<Int> {
    precondition(size >= 1 && rank >= 0 && rank < size && count >= 0 && align >= 1)
    let blocks = (count + align - 1) / align
    return min(count, blocks * rank / size * align)..<min(count, blocks * (rank + 1) / size * align)
}

/// Images per forward pass when each image is seen in `viewsPerImage` network inputs and a
/// forward takes at most `batch` inputs (at least one image).
public func imagesPerForward(batch: Int, viewsPerImage: Int) -> Int {
    max(1, batch / max(1, viewsPerImage))
}

/// The images evaluated when a limit applies, ascending. Without a limit (or limit >= count):
/// all. Labelled sets (every label >= 0): classes take turns, each contributing its next image in
/// file order, until `limit` images are chosen (balanced whatever the file order; a class that
/// runs out leaves its turn to the others). Unlabelled sets: `limit` evenly spaced images
/// (i * count / limit).
public func evalSubset(labels: [Int32], limit: Int?) -> [Int] {
    let count = labels.count
    guard let limit, limit < count else { return Array(0..<count) }
    guard limit > 0 else { return [] }
    guard let maxLabel = labels.max(), labels.allSatisfy({ $0 >= 0 }) else {
        return (0..<limit).map { $0 * count / limit }
    }
    var byClass = [[Int]](repeating: [], count: Int(maxLabel) + 1)
    for (i, l) in labels.enumerated() { byClass[Int(l)].append(i) }
    var next = [Int](repeating: 0, count: byClass.count)
    var chosen: [Int] = []
    chosen.reserveCapacity(limit)
    while chosen.count < limit {
        for c in 0..<byClass.count where chosen.count < limit && next[c] < byClass[c].count {
            chosen.append(byClass[c][next[c]])
            next[c] += 1
        }
    }
    return chosen.sorted()
}

/// `limit` evenly spaced indices of 0..<count (i * count / limit), or all of them.
public func evalSubset(count: Int, limit: Int?) -> [Int] {
    evalSubset(labels: [Int32](repeating: -1, count: count), limit: limit)
}

/// Splits evaluated training images into those the Gaussians are fitted to and the held-out ones
/// the detector's threshold is set on: in each class, every k-th image in file order, k =
/// round(1 / fraction) (10% -> every 10th), so both parts keep every class. fraction 0: none held out.
public func calibrationSplit(indices: [Int], labels: [Int32], fraction: Double) -> (fit: [Int], heldOut: [Int]) {
    guard fraction > 0 else { return (indices, []) }
    let k = max(2, Int((1 / fraction).rounded()))
    var seen: [Int32: Int] = [:]
    var fit: [Int] = [], held: [Int] = []
    for i in indices {
        let n = seen[labels[i], default: 0]
        seen[labels[i]] = n + 1
        if n % k == k - 1 { held.append(i) } else { fit.append(i) }
    }
    return (fit, held)
}
