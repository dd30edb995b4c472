import Foundation
import MCLCore

/// Where one named tensor lives in a flat buffer.
public struct ParamInfo: Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// All trainable parameters in one flat buffer and their gradients in another (same layout),
/// so the optimiser is one loop and the gradient allreduce one (bucketed) call; BatchNorm
/// running statistics live in a third flat buffer. Names and shapes are PyTorch's (SPEC 5).
public final class ParameterStore: @unchecked Sendable {
    public private(set) var params: [ParamInfo] = []
    public private(set) var stats: [ParamInfo] = []
    public private(set) var paramCount = 0
    public private(set) var statCount = 0
    public private(set) var values = FloatBuffer(count: 0)
    public private(set) var grads = FloatBuffer(count: 0)
    public private(set) var state = FloatBuffer(count: 0)
    private var finalized = false

    public init() {}

    /// Registers a trainable tensor; returns its offset in `values` / `grads`.
    public func addParam(_ name: String, _ shape: [Int]) -> Int {
        precondition(!finalized)
        let p = ParamInfo(name: name, shape: shape, offset: paramCount)
        params.append(p)
        paramCount += p.count
        return p.offset
    }

    /// Registers a non-trainable tensor (running statistics); returns its offset in `state`.
    public func addStat(_ name: String, _ shape: [Int]) -> Int {
        precondition(!finalized)
        let p = ParamInfo(name: name, shape: shape, offset: statCount)
        stats.append(p)
        statCount += p.count
        return p.offset
    }

    public func finalize() {
        precondition(!finalized)
        finalized = true
        values = FloatBuffer(count: paramCount)
        grads = FloatBuffer(count: paramCount)
        state = FloatBuffer(count: statCount)
    }

    public func zeroGrads() { grads.zero() }

    public func param(_ name: String) -> ParamInfo? { params.first { $0.name == name } }
    public func stat(_ name: String) -> ParamInfo? { stats.first { $0.name == name } }

    /// The name of the first parameter or running statistic holding NaN or infinity, or nil.
    public func firstNonFinite() -> String? {
        for p in params where !allFinite(values.ptr + p.offset, p.count) { return p.name }
        for p in stats where !allFinite(state.ptr + p.offset, p.count) { return p.name }
        return nil
    }

    /// Parameters and running statistics as safetensors entries under PyTorch's names.
    public func addTensors(to w: inout SafeTensorsWriter, prefix: String = "") {
        for p in params {
            w.add(prefix + p.name, shape: p.shape, floats: UnsafeBufferPointer(start: values.ptr + p.offset, count: p.count))
        }
        for s in stats {
            w.add(prefix + s.name, shape: s.shape, floats: UnsafeBufferPointer(start: state.ptr + s.offset, count: s.count))
        }
    }

    /// Loads every parameter and running statistic from a safetensors file; a missing tensor or a
    /// wrong shape or dtype throws an error naming the tensor and the file.
    public func load(from f: SafeTensorsFile, prefix: String = "", includeStats: Bool = true) throws {
        for p in params {
            try f.read(prefix + p.name, shape: p.shape, into: values.ptr + p.offset)
        }
        if includeStats {
            for s in stats {
                try f.read(prefix + s.name, shape: s.shape, into: state.ptr + s.offset)
            }
        }
    }
}

/// Whether `n` floats are all finite: x * 0 is 0 for a finite x and NaN otherwise, summed in 8
/// independent lanes (one pass, no branch per element).
@inline(__always)
public func allFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) * 0
        i += 8
    }
    var s = acc.sum()
    while i < n { s += x[i] * 0; i += 1 }
    return s.isFinite
}
