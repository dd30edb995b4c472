import Foundation
import MCLDistributed

/// The per-step progress line of rank 0: a live line on a terminal, plain lines in logs. mpirun
/// hands ranks a pty even when its own output goes to a file, so under a launcher
/// `MCL_PROGRESS=live` opts in (`plain` forces plain lines).
public struct Progress {
    public let live: Bool
    let enabled: Bool
    let epochs: Int, totalSteps: Int, imagesPerStep: Double
    /// Exponential moving average of images/s, for the ETA.
    private var ema: Double = 0

    public init(enabled: Bool, epochs: Int, totalSteps: Int, imagesPerStep: Double) {
        let env = ProcessInfo.processInfo.environment["MCL_PROGRESS"]
        live = env == "live" || (env != "plain" && isatty(1) != 0 && !MPIRuntime.launchedByMPI)
        self.enabled = enabled
        self.epochs = epochs; self.totalSteps = totalSteps; self.imagesPerStep = imagesPerStep
    }

    /// Images per second of a step, folded into the ETA's average.
    public mutating func record(_ st: StepStats) -> Double {
        let ips = imagesPerStep / st.totalSeconds
        ema = ema == 0 ? ips : 0.9 * ema + 0.1 * ips
        return ips
    }

    /// Prints the line of step `step` (0-based) of epoch `epoch` (1-based).
    public func show(step: Int, epoch: Int, _ st: StepStats, imagesPerSecond ips: Double) {
        guard enabled else { return }
        let eta = Double(totalSteps - step - 1) * imagesPerStep / max(ema, 1e-9)
        let parts = (st.ce != 0 || st.rotation != 0)
            ? String(format: "ce %.4f rot %.4f simclr %.4f", st.ce, st.rotation, st.ccm)
            : String(format: "ccm %.4f spa %.4f", st.ccm, st.spa)
        let msg = String(format: "epoch %d/%d step %d/%d loss %.4f (%@) lr %.4g %.1f img/s ETA %@",
                         epoch, epochs, step + 1, totalSteps, st.loss, parts, st.lr, ips, formatDuration(eta))
        if live { print("\r\u{1B}[2K" + msg, terminator: step + 1 == totalSteps ? "\n" : ""); fflush(nil) } else { print(msg) }
    }
}

/// A duration for people: "1.5d", "2h05m", "3m07s", "42s" ("?" when not finite).
public func formatDuration(_ s: Double) -> String {
    if !s.isFinite { return "?" }
    let t = Int(s.rounded())
    if t >= 86400 { return String(format: "%.1fd", s / 86400) }
    if t >= 3600 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
    if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
    return "\(t)s"
}
