import Foundation

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
    public var count: Int { shape.reduce(1, *) }
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
                if let m = value as? [String: Any] {
                    for (k, v) in m { metadata[k] = "\(v)" }
                }
                continue
            }
            guard let obj = value as? [String: Any],
                  let dt = obj["dtype"] as? String,
                  let shape = obj["shape"] as? [Int],
                  let offsets = obj["data_offsets"] as? [Int], offsets.count == 2 else {
                throw SafeTensorsError("\(path): tensor '\(name)': malformed header entry")
            }
            guard let dtype = DType(rawValue: dt) else {
                throw SafeTensorsError("\(path): tensor '\(name)': unsupported dtype \(dt)")
            }
            let e = TensorEntry(dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
            guard e.begin >= 0, e.end >= e.begin, e.end - e.begin == e.count * dtype.byteSize else {
                throw SafeTensorsError("\(path): tensor '\(name)': data_offsets \(offsets) do not match shape \(shape) of \(dt)")
            }
            guard e.end <= payload else {
                throw SafeTensorsError("\(path): truncated: tensor '\(name)' ends at byte \(e.end) of the data but the file holds \(payload)")
            }
            entries[name] = e
        }
        self.entries = entries
        self.metadata = metadata
    }

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

/// Writes files so that a reader sees either the old content or the new, never a partial file.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw SafeTensorsError("\(path): cannot create temporary file \(tmp)")
        }
        do {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
            try h.write(contentsOf: data)
            try h.synchronize()
            try h.close()
        } catch {
            unlink(tmp)
            throw SafeTensorsError("\(path): write failed (\(error)); the previous file, if any, is intact")
        }
        if rename(tmp, path) != 0 {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw SafeTensorsError("\(path): rename failed: \(e)")
        }
    }
}
