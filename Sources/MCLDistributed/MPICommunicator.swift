import Foundation
import CMPI
import MCLCore

/// A communicator over MPI_COMM_WORLD.
///
/// MPI is initialised once per process (`MPI_Init_thread`, funneled: only the main thread calls
/// MPI) through `MPIRuntime.shared`; a binary started without `mpirun` is a singleton rank 0 of 1.
/// Errors return codes instead of aborting inside MPI (MPI_ERRORS_RETURN), and every failure ends
/// the whole job through `MPI_Abort` with the rank and the reason, so no rank is left hanging.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// Gradient allreduce bucket size in floats (16 MiB by default).
    public var bucketFloats = 4 * 1024 * 1024
    let comm: MPI_Comm

    public init() {
        MPIRuntime.ensureInitialised()
        comm = mcl_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r); size = Int(s)
    }

    @inline(__always)
    func check(_ rc: Int32, _ what: @autoclosure () -> String) {
        if rc != mcl_mpi_success() {
            var buf = [CChar](repeating: 0, count: 512)
            var len: Int32 = 0
            MPI_Error_string(rc, &buf, &len)
            abort("\(what()) failed: \(String(cString: buf))", code: 3)
        }
    }

    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) {
        if size == 1 { return }
        var off = 0
        while off < count {
            let n = min(bucketFloats, count - off)
            check(MPI_Allreduce(mcl_mpi_in_place(), buf + off, Int32(n), mcl_mpi_float(), mcl_mpi_sum(), comm), "MPI_Allreduce(\(n) floats)")
            off += n
        }
    }

    public func allreduceSum(_ values: inout [Double]) {
        if size == 1 || values.isEmpty { return }
        let n = values.count
        values.withUnsafeMutableBufferPointer { p in
            check(MPI_Allreduce(mcl_mpi_in_place(), p.baseAddress!, Int32(n), mcl_mpi_double(), mcl_mpi_sum(), comm), "MPI_Allreduce(sum of \(n) doubles)")
        }
    }

    public func allreduceMax(_ values: inout [Double]) {
        if size == 1 || values.isEmpty { return }
        let n = values.count
        values.withUnsafeMutableBufferPointer { p in
            check(MPI_Allreduce(mcl_mpi_in_place(), p.baseAddress!, Int32(n), mcl_mpi_double(), mcl_mpi_max(), comm), "MPI_Allreduce(max)")
        }
    }

    public func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        check(MPI_Allgather(send, Int32(count), mcl_mpi_float(), recv, Int32(count), mcl_mpi_float(), comm), "MPI_Allgather(\(count) floats)")
    }

    public func allgatherv(_ send: UnsafePointer<Float>, counts: [Int], into recv: UnsafeMutablePointer<Float>) {
        precondition(counts.count == size)
        var c32 = counts.map { Int32($0) }
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<max(1, size) { displs[i] = displs[i - 1] + c32[i - 1] }
        let mine = Int32(counts[rank])
        check(MPI_Allgatherv(send, mine, mcl_mpi_float(), recv, &c32, &displs, mcl_mpi_float(), comm), "MPI_Allgatherv")
    }

    public func allgather(_ send: [Int32]) -> [Int32] {
        let n = send.count
        var out = [Int32](repeating: 0, count: n * size)
        if n == 0 { return out }
        send.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                check(MPI_Allgather(s.baseAddress!, Int32(n), mcl_mpi_int32(), o.baseAddress!, Int32(n), mcl_mpi_int32(), comm), "MPI_Allgather(int32)")
            }
        }
        return out
    }

    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        if size == 1 { return }
        var off = 0
        while off < count {
            let n = min(bucketFloats, count - off)
            check(MPI_Bcast(buf + off, Int32(n), mcl_mpi_float(), Int32(root), comm), "MPI_Bcast(\(n) floats)")
            off += n
        }
    }

    public func broadcast(_ bytes: inout [UInt8], root: Int) {
        if size == 1 { return }
        var n = Int32(bytes.count)
        check(MPI_Bcast(&n, 1, mcl_mpi_int32(), Int32(root), comm), "MPI_Bcast(length)")
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(n)) }
        if n == 0 { return }
        bytes.withUnsafeMutableBufferPointer { p in
            check(MPI_Bcast(p.baseAddress!, n, mcl_mpi_byte(), Int32(root), comm), "MPI_Bcast(\(n) bytes)")
        }
    }

    public func barrier() { check(MPI_Barrier(comm), "MPI_Barrier") }

    public func abort(_ message: String, code: Int32) -> Never {
        MPIRuntime.abort(message, code: code)
    }
}

/// Process-wide MPI state: initialised once, lazily.
public enum MPIRuntime {
    nonisolated(unsafe) private static var initialised = false

    public static func ensureInitialised() {
        if initialised { return }
        initialised = true
        var provided: Int32 = 0
        var argc: Int32 = 0
        let rc = MPI_Init_thread(&argc, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        if rc != mcl_mpi_success() {
            FileHandle.standardError.write(Data("mcl-dist: MPI_Init_thread failed (code \(rc))\n".utf8))
            exit(3)
        }
        MPI_Comm_set_errhandler(mcl_mpi_comm_world(), mcl_mpi_errors_return())
    }

    public static var isInitialised: Bool { initialised }

    /// This process's rank in MPI_COMM_WORLD (0 before MPI is initialised).
    public static var worldRank: Int {
        guard initialised else { return 0 }
        var r: Int32 = 0
        MPI_Comm_rank(mcl_mpi_comm_world(), &r)
        return Int(r)
    }

    /// Prints "mcl-dist: rank R: message" to stderr and ends every rank of the job.
    public static func abort(_ message: String, code: Int32) -> Never {
        let r = worldRank
        FileHandle.standardError.write(Data("mcl-dist: rank \(r): \(message)\n".utf8))
        if initialised {
            MPI_Abort(mcl_mpi_comm_world(), code)
        }
        exit(code)
    }

    /// Environment variables mpirun / srun set, so a tool can tell it runs inside a job.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMI_SIZE"] != nil || env["PMIX_RANK"] != nil || env["SLURM_STEP_ID"] != nil
    }

    /// Finalises MPI at a clean exit.
    public static func finalize() {
        if initialised { MPI_Finalize(); initialised = false }
    }
}
