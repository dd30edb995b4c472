import Foundation
import MCLDistributed

/// A requested stop (SIGTERM from Slurm or a user, SIGUSR1 ahead of a time limit): the handler
/// records the signal; the training loop asks after every step, and all ranks agree (the
/// largest signal number any rank saw), so every rank stops after the same step.
public enum StopSignal {
    nonisolated(unsafe) private static var received: Int32 = 0

    /// Installs the handlers for SIGTERM and SIGUSR1.
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            signal(sig) { s in StopSignal.received = s }
        }
    }

    /// The signal that asks this job to stop, agreed over `comm` (0 = none).
    public static func agreed(_ comm: Communicator) -> Int32 {
        var flag = [Double(received)]
        comm.allreduceMax(&flag)
        return Int32(flag[0])
    }
}
