import Foundation
import MCLCore

/// The run directory of a training job (`--out`), as rank 0 holds it: one job at a time (a lock),
/// and what an earlier run left in it, which a new job may continue (`--resume`) or set aside
/// (`--fresh`) but never overwrite.
///
/// The lock is `DIR/.mcl-dist.lock`, held with `flock` for the life of the process (the kernel
/// drops it when the process ends, however it ends) and holding the PID, host and start time of
/// its holder: a second job on the same directory is refused naming them; a lock file left with
/// content by a job that ended without releasing it (killed, aborted) is reported as stale and
/// taken over. (On NFS, `flock` is carried by NFS's own locks on Linux.)
public final class RunDirectory {
    public let path: String
    private var lockFD: Int32 = -1
    public static let lockName = ".mcl-dist.lock"

    /// Creates the directory if needed and takes its lock; `log` hears of a stale lock.
    public init(claiming path: String, log: (String) -> Void) throws {
        self.path = path
        try AtomicFile.makeFolder(path, for: "--out")
        let lockPath = path + "/" + RunDirectory.lockName
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw MCLError("\(lockPath): cannot open the run's lock file: \(String(cString: strerror(errno)))") }
        let holder = RunDirectory.readAll(fd)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK {
                throw MCLError("--out \(path): in use by another training job (\(holder.isEmpty ? "holder unknown" : holder); lock \(lockPath)); wait for it to end or choose another --out")
            }
            throw MCLError("\(lockPath): cannot lock: \(String(cString: strerror(e)))")
        }
        if !holder.isEmpty {
            log("run folder \(path): a stale lock of a job that ended without releasing it (\(holder)) was taken over")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let me = "pid \(getpid()) on host \(String(cString: host)) since \(ISO8601DateFormatter().string(from: Date()))"
        _ = ftruncate(fd, 0)
        _ = Array(me.utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        lockFD = fd
    }

    deinit { release() }

    /// Empties the lock file and drops the lock (at the end of a job that ran to its end or stopped
    /// as asked).
    public func release() {
        guard lockFD >= 0 else { return }
        _ = ftruncate(lockFD, 0)
        close(lockFD)
        lockFD = -1
    }

    static func readAll(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 512)
        let n = pread(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }

    /// What an earlier run left here.
    public struct Previous {
        /// The text of `config.yaml`, if present.
        public var configText: String?
        /// Checkpoint stems (`step-XXXXXXXX`), oldest first.
        public var checkpoints: [String]
        public var hasMetrics: Bool
        public var isEmpty: Bool { configText == nil && checkpoints.isEmpty && !hasMetrics }

        /// "config.yaml, 3 checkpoints (newest step-00000040), metrics.jsonl".
        public var summary: String {
            var parts: [String] = []
            if configText != nil { parts.append("config.yaml") }
            if let last = checkpoints.last { parts.append("\(checkpoints.count) checkpoint(s), newest \(last)") }
            if hasMetrics { parts.append("metrics.jsonl") }
            return parts.joined(separator: ", ")
        }
    }

    public var previous: Previous {
        Previous(configText: try? String(contentsOfFile: path + "/config.yaml", encoding: .utf8),
                 checkpoints: Checkpoints.list(dir: Checkpoints.directory(path)),
                 hasMetrics: FileManager.default.fileExists(atPath: path + "/metrics.jsonl"))
    }

    /// Moves everything an earlier run left (all but the lock) into `DIR/superseded-<UTC time>/`
    /// and returns that folder: `--fresh` starts over without deleting anything.
    public func supersede() throws -> String {
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        var dest = path + "/superseded-" + stamp
        var k = 1
        while FileManager.default.fileExists(atPath: dest) { k += 1; dest = path + "/superseded-\(stamp)-\(k)" }
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: dest, withIntermediateDirectories: false)
            for name in try fm.contentsOfDirectory(atPath: path) where name != RunDirectory.lockName && !name.hasPrefix("superseded-") {
                try fm.moveItem(atPath: path + "/" + name, toPath: dest + "/" + name)
            }
        } catch {
            throw MCLError("--fresh: cannot move the earlier run of \(path) aside into \(dest): \(error.localizedDescription)")
        }
        return dest
    }
}
