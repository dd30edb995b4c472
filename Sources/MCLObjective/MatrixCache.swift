#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The `[2N, 2N]` similarity matrix is the one large allocation of `contrastiveLoss` (256 MB at 8192
/// views). Training calls the loss every step with the same size, so the buffer is kept between
/// calls instead of being returned to the system and faulted in again (about 0.3 s per call at
/// 8192 views). It is 2 MB aligned and, on Linux, advised to use transparent huge pages, which also
/// cuts the TLB misses of the transposing pass. Concurrent calls each get their own buffer; only
/// one (the largest) is kept.
final class MatrixCache: @unchecked Sendable {
    static let shared = MatrixCache()

    private let lock = NSLock()
    private var cached: (pointer: UnsafeMutablePointer<Float>, count: Int)?

    /// A buffer of at least `count` floats, uninitialised.
    func acquire(_ count: Int) -> (pointer: UnsafeMutablePointer<Float>, count: Int) {
        lock.lock()
        let taken = cached
        cached = nil
        lock.unlock()
        if let taken, taken.count >= count { return taken }
        if let taken { free(taken.pointer) }
        return (Self.allocate(count), count)
    }

    /// Returns a buffer from `acquire`; it is kept if it is the largest, else freed.
    func release(_ buffer: (pointer: UnsafeMutablePointer<Float>, count: Int)) {
        lock.lock()
        var toFree: UnsafeMutablePointer<Float>? = buffer.pointer
        if cached == nil {
            cached = buffer
            toFree = nil
        } else if let c = cached, c.count < buffer.count {
            cached = buffer
            toFree = c.pointer
        }
        lock.unlock()
        if let toFree { free(toFree) }
    }

    /// Frees the kept buffer.
    func purge() {
        lock.lock()
        let c = cached
        cached = nil
        lock.unlock()
        if let c { free(c.pointer) }
    }

    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        let bytes = max(1, count) * MemoryLayout<Float>.stride
        var raw: UnsafeMutableRawPointer?
        let alignment = 2 << 20
        guard posix_memalign(&raw, alignment, bytes) == 0, let raw else {
            fatalError("contrastiveLoss: cannot allocate \(bytes) bytes for the similarity matrix")
        }
        #if os(Linux)
        if bytes >= alignment { _ = madvise(raw, bytes, 14 /* MADV_HUGEPAGE */) }
        #endif
        return raw.bindMemory(to: Float.self, capacity: count)
    }
}

/// Frees the similarity matrix that `contrastiveLoss` keeps between calls (e.g. before evaluation, when
/// no more loss evaluations follow for a while). The next call allocates it again.
public func releaseLossWorkspace() {
    MatrixCache.shared.purge()
}
