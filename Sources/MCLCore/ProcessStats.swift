import Foundation

/// Memory figures of this process from /proc/self/status (Linux).
public enum ProcessStats {
    /// Peak resident set size (VmHWM) in MiB, or 0 where /proc is not available.
    public static var peakRSSMB: Double { field("VmHWM:") / 1024 }
    /// Current resident set size (VmRSS) in MiB.
    public static var rssMB: Double { field("VmRSS:") / 1024 }

    static func field(_ key: String) -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let v = Double(parts[1]) { return v }
        }
        return 0
    }

    /// Wall-clock seconds (monotonic).
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
