import Foundation
import MCLCore

/// `DIR/metrics.jsonl`: one JSON object per step (loss and its parts, learning rate, images/s and
/// the step's phase times). On resume the lines of steps before the resume point are kept and
/// any written after the checkpoint dropped. Only the writing rank opens it.
public final class MetricsLog {
    public let path: String
    private var handle: FileHandle?

    /// Opens the log for appending after keeping the lines of steps < `start`; `writer` false
    /// (ranks other than 0) makes every call a no-op.
    public init(path: String, keepingStepsBefore start: Int, writer: Bool) throws {
        self.path = path
        guard writer else { return }
        var kept = ""
        if start > 0, let old = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in old.split(separator: "\n") {
                if let r = line.range(of: "\"step\":"), let n = Int(line[r.upperBound...].prefix { $0.isNumber }), n < start {
                    kept += line + "\n"
                }
            }
        }
        try AtomicFile.write(Data(kept.utf8), to: path)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        handle = h
    }

    /// Appends the line of one step (0-based `step`, 1-based `epoch`).
    public func append(step: Int, epoch: Int, stats st: StepStats, imagesPerSecond ips: Double) {
        guard let handle else { return }
        let line = String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.8g,\"loss_ccm\":%.8g,\"loss_spa\":%.8g,\"lr\":%.8g,\"images_per_s\":%.4g,\"step_s\":%.4g,\"forward_s\":%.4g,\"gather_s\":%.4g,\"loss_s\":%.4g,\"backward_s\":%.4g,\"allreduce_s\":%.4g,\"sgd_s\":%.4g}\n",
                          step, epoch, st.loss, st.ccm, st.spa, st.lr, ips, st.totalSeconds, st.forwardSeconds,
                          st.gatherSeconds, st.lossSeconds, st.backwardSeconds, st.allreduceSeconds, st.optimizerSeconds)
        handle.write(Data(line.utf8))
    }

    public func close() {
        try? handle?.close()
        handle = nil
    }
}
