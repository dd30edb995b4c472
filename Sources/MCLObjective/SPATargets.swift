import MCLCore

// SPA target sampling (SPEC 3): which view each view is attracted to, drawn identically on every rank.

/// The tag mixed into the SPA generator, so that its stream differs from other users of the same
/// (seed, step).
public let spaStreamTag: UInt64 = 0x5350_4100  // "SPA"

/// Draws the SPA targets of a global batch, identically on every rank.
///
/// The generator is `SplitMix64(seed: seed, step, spaStreamTag)`; draws are taken in view (or
/// image) order and only where there is a candidate, each with `nextInt`.
/// - `official` (image level): image `n` takes the labels of its view `2n`; it draws an image `m`
///   uniformly among the other images with the same `(y, r)` (same `y` when `useAux` is off) and
///   sets `t(2n) = 2m`, `t(2n+1) = 2m+1`; both are -1 when there is no such image.
/// - `paper-sample`: each view `i` draws `t(i)` uniformly from `B+(i)`, -1 when it is empty.
/// - `paper-expectation` needs no targets: every entry is -1.
///
/// - Parameters:
///   - main: main label per view (2N, views interleaved).
///   - aux: auxiliary label per view (ignored, and may be empty, when `useAux` is off).
public func sampleSPATargets(main: [Int32], aux: [Int32], useAux: Bool, mode: SPAMode,
                             seed: UInt64, step: UInt64) -> [Int32] {
    let views = main.count
    precondition(views % 2 == 0, "sampleSPATargets: \(views) views, expected an even count (interleaved pairs)")
    precondition(!useAux || aux.count == views, "sampleSPATargets: \(aux.count) auxiliary labels for \(views) views")
    var targets = [Int32](repeating: -1, count: views)
    if mode == .paperExpectation || views == 0 { return targets }
    @inline(__always) func key(_ v: Int) -> Int64 {
        (Int64(main[v]) << 32) | Int64(UInt32(bitPattern: useAux ? aux[v] : 0))
    }
    var rng = SplitMix64(seed: seed, step, spaStreamTag)
    switch mode {
    case .official:
        let images = views / 2
        // Images of each (y, r), in increasing order, and each image's position in its group.
        var groups: [Int64: [Int]] = [:]
        var position = [Int](repeating: 0, count: images)
        for n in 0..<images {
            let k = key(2 * n)
            position[n] = groups[k, default: []].count
            groups[k, default: []].append(n)
        }
        for n in 0..<images {
            let members = groups[key(2 * n)]!
            let candidates = members.count - 1
            if candidates == 0 { continue }
            let j = rng.nextInt(candidates)
            let m = members[j < position[n] ? j : j + 1]
            targets[2 * n] = Int32(2 * m)
            targets[2 * n + 1] = Int32(2 * m + 1)
        }
    case .paperSample:
        var groups: [Int64: [Int]] = [:]
        var position = [Int](repeating: 0, count: views)
        for v in 0..<views {
            let k = key(v)
            position[v] = groups[k, default: []].count
            groups[k, default: []].append(v)
        }
        for v in 0..<views {
            let members = groups[key(v)]!
            // The group is sorted by view index, so the views of v's parent (v and possibly its
            // partner) sit next to each other: skip that block.
            let partner = v ^ 1
            let partnerIn = key(partner) == key(v)
            let first = (partnerIn && partner < v) ? position[partner] : position[v]
            let own = partnerIn ? 2 : 1
            let candidates = members.count - own
            if candidates == 0 { continue }
            let j = rng.nextInt(candidates)
            targets[v] = Int32(members[j < first ? j : j + own])
        }
    case .paperExpectation:
        break
    }
    return targets
}
