import Foundation
import MCLCore

/// `DIR/metrics.jsonl`: one JSON object per step (loss and its parts, learning rate, images/s and
/// the step's phase times). On resume the lines of steps before the resume point are kept and
/// any written after the checkpoint (or left half-written) dropped. Only the writing rank opens
/// it. A failed write (a full disk, an I/O error) cuts the file back to its last whole line and is
/// kept in `failure`, for the training loop to end the job with.
public final class MetricsLog {
    public let path: String
    private var fd: Int32 = -1
    /// Bytes of whole lines written so far.
    private var length: off_t = 0
    /// The first write error ("DIR/metrics.jsonl: No space left on device"), if any.
    public private(set) var failure: String?

    /// Opens the log for appending after keeping the lines of steps < `start` that parse; `writer`
    /// false (ranks other than 0) makes every call a no-op.
    public init(path: String, keepingStepsBefore start: Int, writer: Bool) throws {
        self.path = path
        guard writer else { return }
        var kept = ""
        if start > 0, let old = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in old.split(separator: "\n") {
                guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                      let n = obj["step"] as? Int, n < start else { continue }
                kept += line + "\n"
            }
        }
        try AtomicFile.write(Data(kept.utf8), to: path)
        fd = open(path, O_WRONLY | O_APPEND)
        if fd < 0 { throw MCLError("\(path): cannot open for appending: \(String(cString: strerror(errno)))") }
        length = off_t(kept.utf8.count)
    }

    deinit { close() }

    /// Appends the line of one step (0-based `step`, 1-based `epoch`); after a failure, nothing.
    public func append(step: Int, epoch: Int, stats st: StepStats, imagesPerSecond ips: Double) {
        guard fd >= 0, failure == nil else { return }
        var line = String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.8g,\"loss_ccm\":%.8g,\"loss_spa\":%.8g,\"lr\":%.8g,\"images_per_s\":%.4g,\"step_s\":%.4g,\"forward_s\":%.4g,\"gather_s\":%.4g,\"loss_s\":%.4g,\"backward_s\":%.4g,\"allreduce_s\":%.4g,\"sgd_s\":%.4g}\n",
                          step, epoch, st.loss, st.ccm, st.spa, st.lr, ips, st.totalSeconds, st.forwardSeconds,
                          st.gatherSeconds, st.lossSeconds, st.backwardSeconds, st.allreduceSeconds, st.optimizerSeconds)
        if st.ce != 0 || st.rotation != 0 {
            // The cross-entropy objectives: their terms after the common fields.
            line = String(line.dropLast(2)) + String(format: ",\"loss_ce\":%.8g,\"loss_rotation\":%.8g}\n", st.ce, st.rotation)
        }
        let bytes = Array(line.utf8)
        var done = 0
        while done < bytes.count {
            let r = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 {
                failure = "\(path): cannot write the line of step \(step): \(r < 0 ? String(cString: strerror(errno)) : "nothing written")"
                _ = ftruncate(fd, length)   // no half line left behind
                return
            }
            done += r
        }
        length += off_t(bytes.count)
    }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }
}
