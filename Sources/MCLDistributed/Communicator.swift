import Foundation
import MCLCore

/// Collective operations across the ranks of a data-parallel job.
///
/// `LocalCommunicator` is the single-process case (rank 0 of 1, every collective the identity);
/// `MPICommunicator` runs over MPI. All buffers are in rank order: the global batch is the
/// concatenation of every rank's local batch (SPEC 1).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Sums `count` floats across ranks, in place, in buckets of `bucketFloats`.
    func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int)
    /// Sums doubles across ranks in place (statistics, metrics).
    func allreduceSum(_ values: inout [Double])
    /// Maximum of doubles across ranks in place.
    func allreduceMax(_ values: inout [Double])
    /// Sums `size * countPerRank` floats across ranks and leaves block `rank` of the sum (floats
    /// `[rank * countPerRank, (rank + 1) * countPerRank)`) in `recv` (MPI_Reduce_scatter_block).
    func reduceScatterSum(_ send: UnsafePointer<Float>, countPerRank: Int, into recv: UnsafeMutablePointer<Float>)
    /// Every rank contributes `count` floats; `recv` gets size * count floats in rank order.
    func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>)
    /// Every rank contributes `counts[rank]` floats; `recv` gets sum(counts) floats in rank order.
    func allgatherv(_ send: UnsafePointer<Float>, counts: [Int], into recv: UnsafeMutablePointer<Float>)
    func allgather(_ send: [Int32]) -> [Int32]
    /// Rank `root`'s buffer is copied to every rank.
    func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int)
    func broadcast(_ bytes: inout [UInt8], root: Int)
    func barrier()
    /// Ends the whole job (every rank) with a message naming this rank.
    func abort(_ message: String, code: Int32) -> Never
    /// Arms the stall watchdog (see `MPICommunicator`): a collective that waits longer than
    /// `timeout` seconds (<= 0: never) ends the job, naming `phase` (e.g. "step 12") and the
    /// ranks that did not arrive. In-process communicators ignore it.
    func watch(phase: String, timeout: Double)
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func watch(phase: String, timeout: Double) {}

    /// Gathers variable-length float arrays onto every rank (counts exchanged first).
    public func allgatherv(_ send: [Float]) -> [Float] {
        let counts = allgather([Int32(send.count)]).map(Int.init)
        var out = [Float](repeating: 0, count: counts.reduce(0, +))
        send.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                allgatherv(s.baseAddress ?? UnsafePointer(bitPattern: 16)!, counts: counts, into: o.baseAddress!)
            }
        }
        return out
    }

    /// Broadcasts a string from `root` (e.g. a config or an error message).
    public func broadcast(_ s: String, root: Int = 0) -> String {
        var bytes = rank == root ? Array(s.utf8) : []
        broadcast(&bytes, root: root)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The single-process communicator: rank 0 of 1.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) {}
    public func allreduceSum(_ values: inout [Double]) {}
    public func allreduceMax(_ values: inout [Double]) {}
    public func reduceScatterSum(_ send: UnsafePointer<Float>, countPerRank: Int, into recv: UnsafeMutablePointer<Float>) {
        if UnsafeMutablePointer(mutating: send) != recv { recv.update(from: send, count: countPerRank) }
    }
    public func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        if UnsafeMutablePointer(mutating: send) != recv { recv.update(from: send, count: count) }
    }
    public func allgatherv(_ send: UnsafePointer<Float>, counts: [Int], into recv: UnsafeMutablePointer<Float>) {
        if UnsafeMutablePointer(mutating: send) != recv { recv.update(from: send, count: counts[0]) }
    }
    public func allgather(_ send: [Int32]) -> [Int32] { send }
    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) {}
    public func broadcast(_ bytes: inout [UInt8], root: Int) {}
    public func barrier() {}
    public func abort(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("mcl-dist: rank 0: \(message)\n".utf8))
        exit(code)
    }
}
