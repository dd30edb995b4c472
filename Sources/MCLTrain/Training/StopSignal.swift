import Foundation
import Synchronization
import MCLDistributed

/// A requested stop (SIGTERM from Slurm or a user, SIGUSR1 ahead of a time limit): the handler
/// stores the signal number in an atomic (the only thing it does, which is async-signal-safe);
/// the training loop asks after every step, and all ranks agree (the largest signal number any
/// rank saw), so every rank stops after the same step.
///
/// The handler runs on an alternate signal stack, never on the interrupted code's stack. The
/// kernel writes a handler's frame (registers and the AVX-512 state, ~3 KB) just below the
/// interrupted stack pointer, and oneDNN's JIT sgemm kernels (Debian 12's libdnnl 2.7) point `rsp`
/// into a heap buffer while they run (oneDNN issue #4845, fixed in 3.11): a stop signal landing in
/// one wrote its frame over the heap, and the job later died in `free` ("corrupted size vs.
/// prev_size", about 1 stop in 5-25 of a 2-rank width-8 run). With `SA_ONSTACK` the frame goes to
/// the stack installed here. Only the main thread needs one: libdispatch's workers, which run the
/// other GEMM chunks, block SIGTERM and SIGUSR1, and the other threads (MPI's progress threads,
/// OpenBLAS's idle one) run no JIT code.
public enum StopSignal {
    private static let received = Atomic<Int32>(0)
    /// The signals a stop is requested with.
    public static let signals: [Int32] = [SIGTERM, SIGUSR1]
    /// Bytes of the alternate stack made here, and the least an existing one must have: both far
    /// more than a frame with the full AVX-512 state and this handler need.
    static let alternateStackBytes = 256 * 1024, minimumStackBytes = 64 * 1024

    /// Installs the handlers for SIGTERM and SIGUSR1 and an alternate signal stack for the
    /// calling thread (the main thread, which runs the training loop). Returns false if the
    /// alternate stack could not be set up (the handlers are installed all the same: a stop
    /// request must not be lost).
    @discardableResult
    public static func install() -> Bool {
        let stackReady = installAlternateStack()
        for sig in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { s in StopSignal.received.store(s, ordering: .relaxed) }
            action.sa_flags = SA_ONSTACK | SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
        return stackReady
    }

    /// Puts the default actions back (for tests).
    public static func uninstall() {
        for sig in signals { signal(sig, SIG_DFL) }
        received.store(0, ordering: .relaxed)
    }

    /// The signal received by this process (0 = none).
    public static var local: Int32 { received.load(ordering: .relaxed) }

    /// Gives the calling thread an alternate signal stack unless it has one (kept for the life of
    /// the process: a thread's signal stack must outlive any handler that may run on it).
    static func installAlternateStack() -> Bool {
        var current = stack_t()
        if sigaltstack(nil, &current) == 0 && current.ss_flags & Int32(SS_DISABLE) == 0 && current.ss_size >= minimumStackBytes {
            return true
        }
        let bytes = max(alternateStackBytes, Int(sysconf(Int32(_SC_SIGSTKSZ))))
        guard let memory = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              memory != MAP_FAILED else { return false }
        var stack = stack_t()
        stack.ss_sp = memory
        stack.ss_size = bytes
        stack.ss_flags = 0
        if sigaltstack(&stack, nil) != 0 { munmap(memory, bytes); return false }
        return true
    }
}
