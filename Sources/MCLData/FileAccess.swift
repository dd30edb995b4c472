import Foundation
import MCLCore

/// An error reading, writing or preparing a data set. The message always names the file (or
/// folder) concerned, e.g. `/data/train/cat/0001.jpg: not a JPEG file: starts with 0x89 0x50`.
public typealias DataError = MCLError

/// Reads a whole file with POSIX calls (fast for the many small files of an image folder) into
/// the memory `buffer(size)` returns for the file's size. Returns the bytes read, or a message
/// (without the path) saying why it failed.
func posixReadFile(_ path: String, buffer: (_ size: Int) -> UnsafeMutablePointer<UInt8>) -> (count: Int, error: String?) {
    let fd = open(path, O_RDONLY)
    if fd < 0 { return (0, "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) != 0 { return (0, "cannot stat: \(String(cString: strerror(errno)))") }
    let size = Int(st.st_size)
    let dst = buffer(size)
    var done = 0
    while done < size {
        let r = read(fd, dst + done, size - done)
        if r < 0 {
            if errno == EINTR { continue }
            return (0, "read failed: \(String(cString: strerror(errno)))")
        }
        if r == 0 { break }
        done += r
    }
    if done != size { return (0, "short read: \(done) of \(size) bytes") }
    return (size, nil)
}

/// The bytes of a file (`posixReadFile`); errors name the file.
func readWholeFile(_ path: String) throws -> [UInt8] {
    var storage: UnsafeMutablePointer<UInt8>? = nil
    defer { storage?.deallocate() }
    let (count, error) = posixReadFile(path) { size in
        storage = .allocate(capacity: max(size, 1))
        return storage!
    }
    if let error { throw DataError(path, error) }
    return Array(UnsafeBufferPointer(start: storage, count: count))
}

func isDirectory(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
}

func isRegularFile(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && !d.boolValue
}
