import Foundation
import CMPI
import MCLCore

/// A communicator over MPI_COMM_WORLD.
///
/// MPI is initialised once per process (`MPI_Init_thread`, funneled: only the main thread calls
/// MPI) through `MPIRuntime.shared`; a binary started without `mpirun` is a singleton rank 0 of 1.
/// Errors return codes instead of aborting inside MPI (MPI_ERRORS_RETURN), and every failure ends
/// the whole job through `MPI_Abort` with the rank and the reason, so no rank is left hanging.
///
/// Stall watchdog (what Horovod's stall inspector does, by point-to-point heartbeats): every
/// collective is started non-blocking and waited for by polling. Entering collective number n, a
/// rank sends rank 0 the number n (8 bytes, tag `heartbeatTag`), and again every second while it
/// waits inside it; rank 0 drains these while it waits. When a wait exceeds `stallTimeout`
/// seconds, rank 0 ends the job naming the phase (e.g. "step 12") and the ranks that never reached
/// this collective or that stopped sending signs of life inside it (stopped, stuck on a file
/// system, lost host); other ranks give rank 0 a grace period of `stallGrace` seconds before they
/// end the job themselves.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// Gradient allreduce bucket size in floats (16 MiB by default).
    public var bucketFloats = 4 * 1024 * 1024
    let comm: MPI_Comm
    /// Seconds a collective may wait before the job is ended (<= 0: wait forever).
    public var stallTimeout: Double = 0
    /// What the job is doing, for the stall message ("startup", "step 12", "evaluation").
    public var phase = "startup"
    /// Extra seconds ranks other than 0 wait, so rank 0 (which can name the late ranks) reports.
    public var stallGrace: Double = 15
    static let heartbeatTag: Int32 = 31_337
    /// Collectives this rank has entered.
    private var sequence: Int64 = 0
    /// Rank 0: the last collective number each rank announced, and when it last heard from it.
    private var lastHeartbeat: [Int64]
    private var lastHeard: [Double]
    /// Send buffers of the heartbeats in flight (a ring; each message is tiny and eager).
    private let heartbeatRing = UnsafeMutablePointer<Int64>.allocate(capacity: 256)

    public init() {
        MPIRuntime.ensureInitialised()
        comm = mcl_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r); size = Int(s)
        lastHeartbeat = [Int64](repeating: 0, count: Int(s))
        lastHeard = [Double](repeating: ProcessStats.now(), count: Int(s))
    }

    public func watch(phase: String, timeout: Double) {
        self.phase = phase
        stallTimeout = timeout
    }

    /// Announces collective number `sequence` to rank 0 (rank 0 records its own).
    private func enterCollective() {
        sequence += 1
        if rank == 0 { lastHeartbeat[0] = sequence; return }
        sendHeartbeat()
    }

    /// Sends rank 0 this rank's collective number (entering it, or alive inside it).
    private func sendHeartbeat() {
        let slot = heartbeatRing + Int(sequence % 256)
        slot.pointee = sequence
        var req = mcl_mpi_request_null()
        if MPI_Isend(slot, 1, mcl_mpi_int64(), 0, Self.heartbeatTag, comm, &req) == mcl_mpi_success() {
            MPI_Request_free(&req)
        }
    }

    /// Rank 0: records every heartbeat that has arrived.
    private func drainHeartbeats() {
        var flag: Int32 = 0
        var status = MPI_Status()
        while MPI_Iprobe(mcl_mpi_any_source(), Self.heartbeatTag, comm, &flag, &status) == mcl_mpi_success() && flag != 0 {
            var v: Int64 = 0
            MPI_Recv(&v, 1, mcl_mpi_int64(), status.MPI_SOURCE, Self.heartbeatTag, comm, mcl_mpi_status_ignore())
            let src = Int(status.MPI_SOURCE)
            if src >= 0 && src < size { lastHeartbeat[src] = max(lastHeartbeat[src], v); lastHeard[src] = ProcessStats.now() }
        }
    }

    /// Starts a collective (announced to the watchdog) with `start(&request)` and waits for it.
    private func collective(_ what: @autoclosure () -> String, _ start: (UnsafeMutablePointer<MPI_Request?>) -> Int32) {
        enterCollective()
        var request: MPI_Request? = mcl_mpi_request_null()
        check(start(&request), what())
        wait(&request, what())
    }

    /// Waits for a started collective, polling, within the stall deadline.
    private func wait(_ request: inout MPI_Request?, _ what: @autoclosure () -> String) {
        let t0 = ProcessStats.now()
        let deadline = stallTimeout > 0 ? stallTimeout + (rank == 0 ? 0 : stallGrace) : .infinity
        var spins = 0, lastAlive = t0, napping = false
        while true {
            var done: Int32 = 0
            check(MPI_Test(&request, &done, mcl_mpi_status_ignore()), what())
            if done != 0 { return }
            if rank == 0 { drainHeartbeats() }
            spins += 1
            // Busy-poll like a blocking collective (each test advances its rounds) for the first
            // second; a longer wait is another rank's lateness, so then nap between tests.
            if napping { usleep(200) }
            if spins % 256 == 0 {
                let now = ProcessStats.now()
                napping = now - t0 > 1
                if stallTimeout > 0 && rank != 0 && now - lastAlive >= 1 { sendHeartbeat(); lastAlive = now }
                if now - t0 > deadline { stalled(what(), waited: now - t0) }
            }
        }
    }

    private func stalled(_ what: String, waited: Double) -> Never {
        var msg = String(format: "stall: no progress for %.0f s in %@ during %@", waited, what, phase)
        if rank == 0 {
            drainHeartbeats()
            let now = ProcessStats.now()
            let late = (1..<max(1, size)).filter { lastHeartbeat[$0] < sequence }
            let silent = (1..<max(1, size)).filter { lastHeartbeat[$0] >= sequence && now - lastHeard[$0] > 5 }
            if !late.isEmpty {
                msg += "; rank(s) \(late.map(String.init).joined(separator: ", ")) never reached it (stopped, stuck or lost)"
            } else if !silent.isEmpty {
                msg += "; rank(s) \(silent.map(String.init).joined(separator: ", ")) reached it and then fell silent (stopped or lost)"
            } else {
                msg += "; every rank is inside this collective and alive, so the collective itself stalled (network?)"
            }
        } else {
            msg += " (rank 0 did not report: it may be the stalled one)"
        }
        abort(msg + "; ending the job", code: 5)
    }

    /// An element count as MPI's Int32, or the job ends naming the operation (counts beyond
    /// 2^31 - 1 elements are split into buckets by the callers that can meet them).
    func count32(_ n: Int, _ what: @autoclosure () -> String) -> Int32 {
        guard let c = Int32(exactly: n) else { abort("\(what()): \(n) elements exceed MPI's 2^31 - 1 per call", code: 3) }
        return c
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
            collective("allreduce of \(n) floats") { MPI_Iallreduce(mcl_mpi_in_place(), buf + off, Int32(n), mcl_mpi_float(), mcl_mpi_sum(), comm, $0) }
            off += n
        }
    }

    public func allreduceSum(_ values: inout [Double]) {
        if size == 1 || values.isEmpty { return }
        let n = values.count
        values.withUnsafeMutableBufferPointer { p in
            collective("allreduce (sum of \(n) doubles)") { MPI_Iallreduce(mcl_mpi_in_place(), p.baseAddress!, count32(n, "allreduce"), mcl_mpi_double(), mcl_mpi_sum(), comm, $0) }
        }
    }

    public func allreduceMax(_ values: inout [Double]) {
        if size == 1 || values.isEmpty { return }
        let n = values.count
        values.withUnsafeMutableBufferPointer { p in
            collective("allreduce (max of \(n) doubles)") { MPI_Iallreduce(mcl_mpi_in_place(), p.baseAddress!, count32(n, "allreduce"), mcl_mpi_double(), mcl_mpi_max(), comm, $0) }
        }
    }

    public func reduceScatterSum(_ send: UnsafePointer<Float>, countPerRank: Int, into recv: UnsafeMutablePointer<Float>) {
        if size == 1 {
            if UnsafeMutablePointer(mutating: send) != recv { recv.update(from: send, count: countPerRank) }
            return
        }
        _ = count32(countPerRank * size, "reduce-scatter of \(countPerRank * size) floats")
        let c = count32(countPerRank, "reduce-scatter of \(countPerRank) floats per rank")
        collective("reduce-scatter of \(countPerRank) floats per rank") {
            MPI_Ireduce_scatter_block(send, recv, c, mcl_mpi_float(), mcl_mpi_sum(), comm, $0)
        }
    }

    public func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        let c = count32(count, "allgather of \(count) floats")
        collective("allgather of \(count) floats") { MPI_Iallgather(send, c, mcl_mpi_float(), recv, c, mcl_mpi_float(), comm, $0) }
    }

    public func allgatherv(_ send: UnsafePointer<Float>, counts: [Int], into recv: UnsafeMutablePointer<Float>) {
        precondition(counts.count == size)
        let c32 = counts.map { count32($0, "allgatherv") }
        _ = count32(counts.reduce(0, +), "allgatherv (the gathered total)")
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<max(1, size) { displs[i] = displs[i - 1] + c32[i - 1] }
        let mine = Int32(counts[rank])
        // A non-blocking collective reads the count arrays until it completes: keep them pinned.
        c32.withUnsafeBufferPointer { cp in
            displs.withUnsafeBufferPointer { dp in
                collective("allgatherv") { MPI_Iallgatherv(send, mine, mcl_mpi_float(), recv, cp.baseAddress, dp.baseAddress, mcl_mpi_float(), comm, $0) }
            }
        }
    }

    public func allgather(_ send: [Int32]) -> [Int32] {
        let n = send.count
        var out = [Int32](repeating: 0, count: n * size)
        if n == 0 { return out }
        send.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                let c = count32(n * size, "allgather of \(n) labels") / Int32(size)
                collective("allgather of \(n) labels") { MPI_Iallgather(s.baseAddress!, c, mcl_mpi_int32(), o.baseAddress!, c, mcl_mpi_int32(), comm, $0) }
            }
        }
        return out
    }

    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        if size == 1 { return }
        var off = 0
        while off < count {
            let n = min(bucketFloats, count - off)
            collective("broadcast of \(n) floats") { MPI_Ibcast(buf + off, Int32(n), mcl_mpi_float(), Int32(root), comm, $0) }
            off += n
        }
    }

    public func broadcast(_ bytes: inout [UInt8], root: Int) {
        if size == 1 { return }
        var n = count32(bytes.count, "broadcast of \(bytes.count) bytes")
        withUnsafeMutablePointer(to: &n) { np in
            collective("broadcast of a length") { MPI_Ibcast(np, 1, mcl_mpi_int32(), Int32(root), comm, $0) }
        }
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(n)) }
        if n == 0 { return }
        bytes.withUnsafeMutableBufferPointer { p in
            collective("broadcast of \(n) bytes") { MPI_Ibcast(p.baseAddress!, n, mcl_mpi_byte(), Int32(root), comm, $0) }
        }
    }

    public func barrier() {
        if size == 1 { return }
        collective("barrier") { MPI_Ibarrier(comm, $0) }
    }

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
        if provided < Int32(MPI_THREAD_FUNNELED) {
            FileHandle.standardError.write(Data("mcl-dist: this MPI library grants thread level \(provided), below MPI_THREAD_FUNNELED (\(MPI_THREAD_FUNNELED)) which mcl-dist needs (worker threads compute while the main thread calls MPI)\n".utf8))
            MPI_Abort(mcl_mpi_comm_world(), 3)
            exit(3)
        }
        if MPI_Comm_set_errhandler(mcl_mpi_comm_world(), mcl_mpi_errors_return()) != mcl_mpi_success() {
            FileHandle.standardError.write(Data("mcl-dist: cannot set MPI_ERRORS_RETURN on MPI_COMM_WORLD\n".utf8))
            MPI_Abort(mcl_mpi_comm_world(), 3)
            exit(3)
        }
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
