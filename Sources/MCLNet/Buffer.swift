import Foundation

/// A 64-byte aligned, zero-initialised float buffer that owns its memory.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let ptr: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(64, count * MemoryLayout<Float>.stride)
        precondition(posix_memalign(&raw, 64, bytes) == 0, "out of memory allocating \(bytes) bytes")
        memset(raw!, 0, bytes)
        ptr = raw!.bindMemory(to: Float.self, capacity: max(1, count))
    }

    deinit { free(ptr) }

    public func zero() { memset(ptr, 0, count * MemoryLayout<Float>.stride) }

    public var array: [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }

    public func copy(from a: [Float]) {
        precondition(a.count == count)
        a.withUnsafeBufferPointer { ptr.update(from: $0.baseAddress!, count: count) }
    }
}

/// A pool of named scratch buffers of the network's layers that grow on demand and are reused
/// across steps, so the layers' large activations and scratch are allocated once. (The loss keeps
/// its own similarity matrix in `MCLObjective.MatrixCache`; small per-call arrays remain.)
public final class Workspace: @unchecked Sendable {
    private var buffers: [String: FloatBuffer] = [:]

    public init() {}

    /// A buffer of at least `count` floats under `key`; its content is unspecified.
    public func get(_ key: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        if let b = buffers[key], b.count >= count { return b.ptr }
        let b = FloatBuffer(count: count)
        buffers[key] = b
        return b.ptr
    }

    public var totalFloats: Int { buffers.values.reduce(0) { $0 + $1.count } }

    /// Floats held under `key` (0 if none): which scratch a layer used (tests).
    func capacity(of key: String) -> Int { buffers[key]?.count ?? 0 }
}
