import Foundation
import CImageCodecs

/// Element types a safetensors file can hold that mcl-dist reads or writes.
public enum DType: String, Sendable {
    case f32 = "F32", f64 = "F64", i32 = "I32", i64 = "I64", u8 = "U8"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        case .u8: return 1
        }
    }
}

/// An error reading or writing a safetensors file; the message names the file and the tensor.
public typealias SafeTensorsError = MCLError

/// One tensor's place in a safetensors file.
public struct TensorEntry: Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let begin: Int
    public let end: Int
    /// The number of elements (the product of `shape`, checked not to overflow when read).
    public let count: Int
}

/// The number of elements of `shape` times `byteSize`, or nil when a dimension is negative or the
/// product does not fit in an Int.
func checkedByteCount(_ shape: [Int], _ byteSize: Int) -> (count: Int, bytes: Int)? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    let (b, o) = n.multipliedReportingOverflow(by: byteSize)
    return o ? nil : (n, b)
}

/// The CRC-32 (zlib) of a byte range, as 8 hex digits.
public func crc32Hex(_ bytes: UnsafeRawBufferPointer) -> String {
    let c = crc32_z(0, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
    return String(format: "%08lx", c)
}

/// A safetensors file read whole into memory: an 8-byte little-endian header length, a JSON
/// header `{name: {dtype, shape, data_offsets}, "__metadata__": {...}}`, then the raw data.
public struct SafeTensorsFile: Sendable {
    public let path: String
    public let entries: [String: TensorEntry]
    public let metadata: [String: String]
    private let bytes: Data
    private let dataStart: Int

    public var names: [String] { entries.keys.sorted() }

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SafeTensorsError("\(path): cannot read file")
        }
        try self.init(data: data, path: path)
    }

    /// The largest JSON header read (the safetensors library's own limit).
    public static let maxHeaderBytes = 100 << 20
    /// Metadata key prefix of the per-tensor checksums mcl-dist writes: `crc32:<tensor>` = the
    /// CRC-32 of the tensor's bytes, 8 hex digits.
    public static let checksumPrefix = "crc32:"

    /// Parses and checks the file: the header length, every entry's dtype, shape (no negative
    /// dimension, no overflowing size) and offsets (matching the shape, inside the data, no two
    /// tensors overlapping, no gap), and the checksum of every tensor that has one in the
    /// metadata. Every error names the file and, where one is at fault, the tensor.
    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.bytes = data
        guard data.count >= 8 else {
            throw SafeTensorsError("\(path): truncated: \(data.count) bytes, a safetensors file has at least an 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard n <= UInt64(data.count - 8) else {
            throw SafeTensorsError("\(path): truncated: header says \(n) bytes of JSON but the file has \(data.count - 8) after the length")
        }
        guard n <= UInt64(SafeTensorsFile.maxHeaderBytes) else {
            throw SafeTensorsError("\(path): header of \(n) bytes is beyond the \(SafeTensorsFile.maxHeaderBytes)-byte limit: not a safetensors file")
        }
        let headerLength = Int(n)
        dataStart = 8 + headerLength
        let headerData = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + headerLength))
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw SafeTensorsError("\(path): the header is not a JSON object")
        }
        var entries: [String: TensorEntry] = [:]
        var metadata: [String: String] = [:]
        let payload = data.count - dataStart
        for (name, value) in json {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw SafeTensorsError("\(path): __metadata__ is not a JSON object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw SafeTensorsError("\(path): metadata '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            let shown = name.count > 200 ? String(name.prefix(200)) + "..." : name
            guard let obj = value as? [String: Any], let dt = obj["dtype"] as? String,
                  let shapeNumbers = obj["shape"] as? [NSNumber], let offsetNumbers = obj["data_offsets"] as? [NSNumber],
                  offsetNumbers.count == 2 else {
                throw SafeTensorsError("\(path): tensor '\(shown)': malformed header entry (needs dtype, shape, data_offsets [begin, end])")
            }
            guard let dtype = DType(rawValue: dt) else {
                throw SafeTensorsError("\(path): tensor '\(shown)': unsupported dtype \(dt.prefix(20))")
            }
            let shape = try shapeNumbers.map { try SafeTensorsFile.integer($0, path, "tensor '\(shown)': shape") }
            let offsets = try offsetNumbers.map { try SafeTensorsFile.integer($0, path, "tensor '\(shown)': data_offsets") }
            guard let (count, byteCount) = checkedByteCount(shape, dtype.byteSize) else {
                throw SafeTensorsError("\(path): tensor '\(shown)': shape \(shape) has a negative dimension or more elements than memory can hold")
            }
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == byteCount else {
                throw SafeTensorsError("\(path): tensor '\(shown)': data_offsets \(offsets) do not match shape \(shape) of \(dt) (\(byteCount) bytes)")
            }
            guard offsets[1] <= payload else {
                throw SafeTensorsError("\(path): truncated: tensor '\(shown)' ends at byte \(offsets[1]) of the data but the file holds \(payload)")
            }
            entries[name] = TensorEntry(dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1], count: count)
        }
        // The data is the tensors back to back: no overlap (two tensors sharing bytes), no gap.
        var at = 0
        for (name, e) in entries.sorted(by: { ($0.value.begin, $0.value.end, $0.key) < ($1.value.begin, $1.value.end, $1.key) }) {
            if e.begin < at { throw SafeTensorsError("\(path): tensor '\(name)' at bytes \(e.begin)..<\(e.end) overlaps the tensor before it (which ends at \(at))") }
            if e.begin > at { throw SafeTensorsError("\(path): \(e.begin - at) bytes of the data before tensor '\(name)' belong to no tensor") }
            at = e.end
        }
        if at != payload { throw SafeTensorsError("\(path): \(payload - at) bytes after the last tensor belong to no tensor") }
        self.entries = entries
        self.metadata = metadata
        for (key, want) in metadata where key.hasPrefix(SafeTensorsFile.checksumPrefix) {
            let name = String(key.dropFirst(SafeTensorsFile.checksumPrefix.count))
            guard let e = entries[name] else { throw SafeTensorsError("\(path): metadata holds a checksum of tensor '\(name)', which the file lacks") }
            let got = withRaw(e) { crc32Hex($0) }
            guard got == want else {
                throw SafeTensorsError("\(path): tensor '\(name)': checksum mismatch (stored \(want), computed \(got)): the file is corrupt")
            }
        }
    }

    /// A JSON number that is an integer within Int's range.
    static func integer(_ v: NSNumber, _ path: String, _ what: String) throws -> Int {
        let d = v.doubleValue
        guard d.rounded() == d, abs(d) < 9.2e18, let i = Int(exactly: v.int64Value), Double(i) == d else {
            throw SafeTensorsError("\(path): \(what): \(v) is not an integer in range")
        }
        return i
    }

    /// Whether every tensor of the file carries a checksum in the metadata.
    public var hasChecksums: Bool { entries.keys.allSatisfy { metadata[SafeTensorsFile.checksumPrefix + $0] != nil } }

    public func has(_ name: String) -> Bool { entries[name] != nil }

    public func entry(_ name: String) throws -> TensorEntry {
        guard let e = entries[name] else {
            throw SafeTensorsError("\(path): missing tensor '\(name)'")
        }
        return e
    }

    public func shape(_ name: String) throws -> [Int] { try entry(name).shape }

    /// Checks a tensor's shape (and, where given, its dtype) and throws an error naming both.
    public func check(_ name: String, shape expected: [Int], dtype: DType? = nil) throws {
        let e = try entry(name)
        if e.shape != expected {
            throw SafeTensorsError("\(path): tensor '\(name)' has shape \(e.shape), expected \(expected)")
        }
        if let dtype, e.dtype != dtype {
            throw SafeTensorsError("\(path): tensor '\(name)' has dtype \(e.dtype.rawValue), expected \(dtype.rawValue)")
        }
    }

    private func withRaw<R>(_ e: TensorEntry, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)]))
        }
    }

    /// The tensor as Float, converting from F64 or integer types.
    public func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        let e = try entry(name)
        if let shape { try check(name, shape: shape) }
        return withRaw(e) { raw in
            switch e.dtype {
            case .f32: return (0..<e.count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case .f64: return (0..<e.count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
            case .i32: return (0..<e.count).map { Float(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            case .i64: return (0..<e.count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .u8: return raw.map { Float($0) }
            }
        }
    }

    /// The tensor as Double, converting from F32 or integer types.
    public func doubles(_ name: String, shape: [Int]? = nil) throws -> [Double] {
        let e = try entry(name)
        if let shape { try check(name, shape: shape) }
        return withRaw(e) { raw in
            switch e.dtype {
            case .f32: return (0..<e.count).map { Double(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self)) }
            case .f64: return (0..<e.count).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
            case .i32: return (0..<e.count).map { Double(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            case .i64: return (0..<e.count).map { Double(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .u8: return raw.map { Double($0) }
            }
        }
    }

    /// The tensor as Int (from any integer type; floats must be integral).
    public func ints(_ name: String, shape: [Int]? = nil) throws -> [Int] {
        let e = try entry(name)
        if let shape { try check(name, shape: shape) }
        switch e.dtype {
        case .i32: return withRaw(e) { raw in (0..<e.count).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) } }
        case .i64: return withRaw(e) { raw in (0..<e.count).map { Int(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
        case .u8: return withRaw(e) { raw in raw.map { Int($0) } }
        case .f32, .f64:
            return try doubles(name).map { v in
                guard v.rounded() == v else { throw SafeTensorsError("\(path): tensor '\(name)' holds a non-integer \(v)") }
                return Int(v)
            }
        }
    }

    /// Copies a float32 tensor of the expected shape into `dst`, with errors naming tensor and file.
    public func read(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<Float>) throws {
        try check(name, shape: shape, dtype: .f32)
        let e = try entry(name)
        withRaw(e) { raw in
            UnsafeMutableRawPointer(dst).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        }
    }

    public func metaDouble(_ key: String) throws -> Double {
        guard let s = metadata[key] else { throw SafeTensorsError("\(path): metadata lacks '\(key)'") }
        guard let v = Double(s) else { throw SafeTensorsError("\(path): metadata '\(key)' = '\(s)' is not a number") }
        return v
    }
}

/// Collects tensors and writes a safetensors file atomically (temporary file, then rename).
public struct SafeTensorsWriter {
    private var items: [(name: String, dtype: DType, shape: [Int], data: Data)] = []
    public var metadata: [String: String] = [:]

    /// Whether `serialize` adds the CRC-32 of every tensor to the metadata (`crc32:<name>`), which
    /// `SafeTensorsFile` checks on reading.
    public var checksums = true

    public init() {}

    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) does not match \(floats.count) values for \(name)")
        items.append((name, .f32, shape, Data(buffer: floats)))
    }

    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }

    public mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        precondition(shape.reduce(1, *) == doubles.count)
        items.append((name, .f64, shape, doubles.withUnsafeBufferPointer { Data(buffer: $0) }))
    }

    public mutating func add(_ name: String, shape: [Int], int32s: [Int32]) {
        precondition(shape.reduce(1, *) == int32s.count)
        items.append((name, .i32, shape, int32s.withUnsafeBufferPointer { Data(buffer: $0) }))
    }

    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        precondition(shape.reduce(1, *) == int64s.count)
        items.append((name, .i64, shape, int64s.withUnsafeBufferPointer { Data(buffer: $0) }))
    }

    /// The file's bytes: tensors laid out in name order, header padded with spaces to 8 bytes.
    public func serialize() -> Data {
        let sorted = items.sorted { $0.name < $1.name }
        var header = "{"
        var metadata = self.metadata
        if checksums {
            for it in sorted { metadata[SafeTensorsFile.checksumPrefix + it.name] = it.data.withUnsafeBytes { crc32Hex($0) } }
        }
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            header += "\"__metadata__\":{\(m)},"
        }
        var offset = 0
        var parts: [String] = []
        for it in sorted {
            let shape = it.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(it.name)):{\"dtype\":\"\(it.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + it.data.count)]}")
            offset += it.data.count
        }
        header += parts.joined(separator: ",") + "}"
        var hbytes = Array(header.utf8)
        while hbytes.count % 8 != 0 { hbytes.append(0x20) }
        var out = Data(capacity: 8 + hbytes.count + offset)
        var n = UInt64(hbytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: hbytes)
        for it in sorted { out.append(it.data) }
        return out
    }

    public func write(to path: String) throws {
        try AtomicFile.write(serialize(), to: path)
    }
}

func jsonString(_ s: String) -> String {
    var r = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": r += "\\\""
        case "\\": r += "\\\\"
        case "\n": r += "\\n"
        case "\t": r += "\\t"
        default:
            if c.value < 0x20 { r += String(format: "\\u%04x", c.value) } else { r.unicodeScalars.append(c) }
        }
    }
    return r + "\""
}

/// Writes files so that a reader sees either the old content or the new, never a partial file,
/// and a crash right after leaves one of the two on disk: the data goes to a temporary file in
/// the same folder, which is fsynced, renamed over the target, and the folder fsynced so the
/// rename itself is durable. Any failure (a full disk, an I/O error, a missing folder) removes the
/// temporary file and throws an error naming the target and the reason.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw MCLError("\(path): cannot write: the folder \(dir) does not exist")
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw MCLError("\(path): cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))") }
        func fail(_ what: String) -> MCLError {
            let e = String(cString: strerror(errno))
            close(fd)
            unlink(tmp)
            return MCLError("\(path): \(what): \(e); the previous file, if any, is intact")
        }
        var done = 0
        let ok: Bool = data.withUnsafeBytes { raw in
            while done < raw.count {
                let r = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { if r == 0 { errno = EIO }; return false }
                done += r
            }
            return true
        }
        if !ok { throw fail("write failed after \(done) of \(data.count) bytes") }
        if fsync(fd) != 0 { throw fail("fsync failed") }
        if close(fd) != 0 { let e = String(cString: strerror(errno)); unlink(tmp); throw MCLError("\(path): close failed: \(e)") }
        if rename(tmp, path) != 0 {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw MCLError("\(path): rename failed: \(e)")
        }
        syncFolder(dir)
    }

    /// Creates a folder (and its parents) for output, with an error naming it and the reason
    /// ("is a file", "Permission denied") instead of Foundation's error codes.
    public static func makeFolder(_ path: String, for what: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            if isDir.boolValue { return }
            throw MCLError("\(what) \(path): is a file, not a folder")
        }
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        if errno == ENOENT {
            let parent = (path as NSString).deletingLastPathComponent
            if !parent.isEmpty && parent != path {
                try makeFolder(parent, for: what)
                if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
            }
        }
        throw MCLError("\(what) \(path): cannot create the folder: \(String(cString: strerror(errno)))")
    }

    /// fsyncs a folder (after a rename in it); a file system that cannot is left as it is.
    public static func syncFolder(_ dir: String) {
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { _ = fsync(d); close(d) }
    }
}
