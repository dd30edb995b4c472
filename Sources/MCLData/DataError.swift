import Foundation

/// An error reading, writing or preparing a data set. The message always names the file (or
/// folder) concerned, e.g. `/data/train/cat/0001.jpg: not a JPEG file: starts with 0x89 0x50`.
public struct DataError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
    public init(_ path: String, _ message: String) { description = "\(path): \(message)" }
}

/// Reads a whole file with POSIX calls (fast for the many small files of an image folder).
func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    if fd < 0 { throw DataError(path, "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) != 0 { throw DataError(path, "cannot stat: \(String(cString: strerror(errno)))") }
    let size = Int(st.st_size)
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    try bytes.withUnsafeMutableBytes { raw in
        while done < size {
            let r = read(fd, raw.baseAddress! + done, size - done)
            if r < 0 {
                if errno == EINTR { continue }
                throw DataError(path, "read failed: \(String(cString: strerror(errno)))")
            }
            if r == 0 { break }
            done += r
        }
    }
    if done != size { throw DataError(path, "short read: \(done) of \(size) bytes") }
    return bytes
}

func isDirectory(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
}

func isRegularFile(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && !d.boolValue
}
