import Foundation
import Synchronization
import MCLDistributed

/// A requested stop (SIGTERM from Slurm or a user, SIGUSR1 ahead of a time limit): the handler
/// stores the signal number in an atomic (the only thing it does, which is async-signal-safe);
/// the training loop asks after every step, and all ranks agree (the largest signal number any
/// rank saw), so every rank stops after the same step.
public enum StopSignal {
    private static let received = Atomic<Int32>(0)

    /// Installs the handlers for SIGTERM and SIGUSR1.
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            signal(sig) { s in StopSignal.received.store(s, ordering: .relaxed) }
        }
    }

    /// The signal received by this process (0 = none).
    public static var local: Int32 { received.load(ordering: .relaxed) }
}
