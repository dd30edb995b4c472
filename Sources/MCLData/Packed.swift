import Foundation
import MCLCore
import CImageCodecs

/// The packed data set file (`.mcld`), little-endian, memory-mappable:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `MCLDSET\0` |
/// | 8 | 4 | version (1) |
/// | 12 | 4 | header size H (offset of the images, a multiple of 64) |
/// | 16 | 8 | count N |
/// | 24 | 4 x 4 | C, H, W, number of classes K (0 = unlabelled) |
/// | 40 | 8 | checksum: CRC-32 (zlib) of every byte of the file except these 8 |
/// | 48 | 8 | reserved (0) |
/// | 56 | 3 x 8 | per-channel mean in [0,1] (float64) |
/// | 80 | 3 x 8 | per-channel standard deviation in [0,1] (population, float64) |
/// | 104 | 4 | L = byte length of the class names |
/// | 108 | L | class names, UTF-8, each followed by `\n` |
/// | H | N*C*H*W | images, uint8, [N, C, H, W] |
/// | H + N*C*H*W, padded to 8 | 4*N | labels, int32 (-1 = unlabelled) |
///
/// The file size must match exactly (a shorter file is reported as truncated).
public enum PackedFormat {
    public static let magic: [UInt8] = Array("MCLDSET".utf8) + [0]
    public static let version: UInt32 = 1
    static let checksumOffset = 40

    static func align(_ x: Int, _ a: Int) -> Int { (x + a - 1) / a * a }

    /// CRC-32 over the file bytes except the checksum field.
    static func checksum(_ p: UnsafeRawPointer, _ size: Int) -> UInt64 {
        var c = crc32_z(0, p.assumingMemoryBound(to: UInt8.self), checksumOffset)
        c = crc32_z(c, (p + checksumOffset + 8).assumingMemoryBound(to: UInt8.self), size - checksumOffset - 8)
        return UInt64(c)
    }

    /// Per-channel mean and population standard deviation of uint8 CHW images, scaled to [0,1]:
    /// mean_c = sum x / (255 n), std_c = sqrt(sum x^2 / n - (sum x / n)^2) / 255 over the n = N*H*W
    /// pixels of channel c (exact integer sums).
    static func meanStd(_ images: UnsafeBufferPointer<UInt8>, count: Int, channels: Int, plane: Int) -> ([Double], [Double]) {
        var s = [UInt64](repeating: 0, count: channels), q = [UInt64](repeating: 0, count: channels)
        for i in 0..<count {
            for c in 0..<channels {
                var a: UInt64 = 0, b: UInt64 = 0
                let o = (i * channels + c) * plane
                for k in 0..<plane { let v = UInt64(images[o + k]); a &+= v; b &+= v * v }
                s[c] &+= a; q[c] &+= b
            }
        }
        let n = Double(max(1, count * plane))
        let mean = s.map { Double($0) / n / 255 }
        let std = (0..<channels).map { c -> Double in
            let m = Double(s[c]) / n
            return (max(0, Double(q[c]) / n - m * m)).squareRoot() / 255
        }
        return (mean, std)
    }

    /// Serialises a data set into the packed format.
    public static func serialize(_ raw: RawDataset) throws -> Data {
        let c = RawDataset.channels, h = RawDataset.side, w = RawDataset.side
        let n = raw.count
        for name in raw.classNames where name.contains("\n") {
            throw DataError("class name '\(name)' contains a newline")
        }
        let names = Array(raw.classNames.map { $0 + "\n" }.joined().utf8)
        let header = align(108 + names.count, 64)
        let labelsAt = align(header + raw.images.count, 8)
        let size = labelsAt + 4 * n
        var data = Data(count: size)
        let (mean, std) = raw.images.withUnsafeBufferPointer { meanStd($0, count: n, channels: c, plane: h * w) }
        data.withUnsafeMutableBytes { (raw0: UnsafeMutableRawBufferPointer) in
            let p = raw0.baseAddress!
            func put<T: FixedWidthInteger>(_ v: T, _ o: Int) { p.storeBytes(of: v.littleEndian, toByteOffset: o, as: T.self) }
            func putD(_ v: Double, _ o: Int) { put(v.bitPattern, o) }
            for (k, b) in magic.enumerated() { p.storeBytes(of: b, toByteOffset: k, as: UInt8.self) }
            put(version, 8)
            put(UInt32(header), 12)
            put(UInt64(n), 16)
            put(UInt32(c), 24); put(UInt32(h), 28); put(UInt32(w), 32)
            put(UInt32(raw.classNames.count), 36)
            for k in 0..<3 { putD(mean[k], 56 + 8 * k); putD(std[k], 80 + 8 * k) }
            put(UInt32(names.count), 104)
            names.withUnsafeBytes { (p + 108).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            raw.images.withUnsafeBytes { (p + header).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            for (i, l) in raw.labels.enumerated() { put(l, labelsAt + 4 * i) }
            put(checksum(UnsafeRawPointer(p), size), checksumOffset)
        }
        return data
    }

    /// Writes the packed file atomically (temporary file + rename): on any error no file appears.
    public static func write(_ raw: RawDataset, to path: String) throws {
        let data = try serialize(raw)
        do { try AtomicFile.write(data, to: path) } catch { throw DataError("\(error)") }
    }
}

/// A packed data set, memory-mapped read-only (or held in memory when built from a `RawDataset`).
/// Immutable after `init`, so it is shared freely between threads.
public final class PackedDataset: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int
    /// Labels, -1 for unlabelled images.
    public let labels: [Int32]
    /// Class names (empty when unlabelled); label k names `classNames[k]`.
    public let classNames: [String]
    /// Images per class label 0..<classNames.count.
    public let countsPerClass: [Int]
    /// Per-channel mean and standard deviation of the pixel values in [0,1].
    public let mean: [Double]
    public let std: [Double]

    private let images: UnsafePointer<UInt8>
    private let mapping: UnsafeMutableRawPointer?
    private let mappingSize: Int
    private let owned: UnsafeMutablePointer<UInt8>?

    public var shape: [Int] { [channels, height, width] }
    public var imageBytes: Int { channels * height * width }
    public var numClasses: Int { classNames.count }
    public var isLabelled: Bool { !classNames.isEmpty }

    /// Opens a packed file with `mmap`. Checks magic, version, sizes and (when `verify`) the
    /// CRC-32 checksum, one pass over the file (~0.1 s for CIFAR-10's 150 MB).
    public init(path: String, verify: Bool = true) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw DataError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DataError(path, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw DataError(path, (st.st_mode & S_IFMT) == S_IFDIR
                ? "is a folder, not a packed data set file (pack it with `mcl-dist data prepare \(path) --out FILE.mcld`)"
                : "is not a regular file")
        }
        let size = Int(st.st_size)
        guard size >= 108 else { throw DataError(path, "truncated data set file: \(size) bytes, the header alone is at least 108") }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw DataError(path, "mmap failed: \(String(cString: strerror(errno)))")
        }
        let p = UnsafeRawPointer(m)
        func get<T: FixedWidthInteger>(_ o: Int, _: T.Type) -> T { T(littleEndian: p.loadUnaligned(fromByteOffset: o, as: T.self)) }
        func fail(_ msg: String) -> DataError { munmap(m, size); return DataError(path, msg) }
        guard (0..<8).allSatisfy({ p.load(fromByteOffset: $0, as: UInt8.self) == PackedFormat.magic[$0] }) else {
            let head = (0..<8).map { String(format: "%02x", p.load(fromByteOffset: $0, as: UInt8.self)) }.joined(separator: " ")
            throw fail("wrong magic number (\(head)): not an mcl-dist data set file (make one with `mcl-dist data prepare`)")
        }
        let version = get(8, UInt32.self)
        guard version == PackedFormat.version else { throw fail("unsupported data set file version \(version) (this build reads \(PackedFormat.version))") }
        let header = Int(get(12, UInt32.self))
        let count64 = get(16, UInt64.self)
        let c = Int(get(24, UInt32.self)), h = Int(get(28, UInt32.self)), w = Int(get(32, UInt32.self))
        let k = Int(get(36, UInt32.self))
        let namesLength = Int(get(104, UInt32.self))
        // Every size is bounded before any arithmetic: a count below 2^40, sides up to 65536, so
        // count * C * H * W cannot overflow; the header must lie inside the file.
        guard count64 < (1 << 40) else { throw fail("corrupt header: image count \(count64) (field at byte 16) is beyond 2^40") }
        let n = Int(count64)
        guard c == 3 else { throw fail("corrupt header: \(c) channels (field at byte 24); data set files hold RGB images (3)") }
        guard (1...65536).contains(h), (1...65536).contains(w) else {
            throw fail("corrupt header: image size \(h)x\(w) (fields at bytes 28, 32) is outside 1..65536")
        }
        guard k <= 1 << 20 else { throw fail("corrupt header: \(k) classes (field at byte 36)") }
        guard header >= 108 + namesLength, header <= size else {
            throw fail("corrupt header: header size \(header) (field at byte 12) with \(namesLength) bytes of class names in a \(size)-byte file")
        }
        let (imageBytes, o1) = n.multipliedReportingOverflow(by: c * h * w)
        let (labelsAt, o2) = header.addingReportingOverflow(imageBytes)
        guard !o1, !o2, labelsAt <= Int.max - 8 - 4 * n else {
            throw fail("corrupt header: \(n) images of [\(c), \(h), \(w)] do not fit in a file")
        }
        let expected = PackedFormat.align(labelsAt, 8) + 4 * n
        let labelsStart = PackedFormat.align(labelsAt, 8)
        guard size >= expected else {
            throw fail("truncated data set file: \(size) bytes, the header describes \(n) images of [\(c), \(h), \(w)] needing \(expected)")
        }
        guard size == expected else { throw fail("corrupt data set file: \(size - expected) bytes after the labels") }
        if verify {
            let stored = get(PackedFormat.checksumOffset, UInt64.self)
            let actual = PackedFormat.checksum(p, size)
            guard stored == actual else {
                throw fail(String(format: "checksum mismatch (stored %08llx, computed %08llx): the file is corrupt", stored, actual))
            }
        }
        let namesBytes = UnsafeRawBufferPointer(start: p + 108, count: namesLength)
        let names = String(decoding: namesBytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        guard names.count == k else { throw fail("corrupt header: \(names.count) class names for \(k) classes") }
        var labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let l = Int32(littleEndian: p.loadUnaligned(fromByteOffset: labelsStart + 4 * i, as: Int32.self))
            guard l >= -1 && Int(l) < k else { throw fail("corrupt labels: image \(i) has label \(l) with \(k) classes") }
            guard l >= 0 || k == 0 else { throw fail("corrupt labels: image \(i) is unlabelled in a labelled data set") }
            labels[i] = l
        }
        self.count = n
        self.channels = c; self.height = h; self.width = w
        self.labels = labels
        self.classNames = names
        self.countsPerClass = PackedDataset.counts(labels, k)
        let mean = (0..<3).map { Double(bitPattern: get(56 + 8 * $0, UInt64.self)) }
        let std = (0..<3).map { Double(bitPattern: get(80 + 8 * $0, UInt64.self)) }
        guard (mean + std).allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1 }) else {
            throw fail("corrupt header: per-channel mean \(mean) / std \(std) (bytes 56-103) must lie in [0, 1]")
        }
        self.mean = mean
        self.std = std
        self.images = (p + header).assumingMemoryBound(to: UInt8.self)
        self.mapping = m
        self.mappingSize = size
        self.owned = nil
    }

    /// An in-memory data set (tests, or data made on the fly).
    public init(_ raw: RawDataset) {
        path = "<memory>"
        count = raw.count
        channels = RawDataset.channels; height = RawDataset.side; width = RawDataset.side
        labels = raw.labels
        classNames = raw.classNames
        countsPerClass = PackedDataset.counts(raw.labels, raw.classNames.count)
        let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, raw.images.count))
        raw.images.withUnsafeBufferPointer { buf.initialize(from: $0.baseAddress!, count: $0.count) }
        (mean, std) = PackedFormat.meanStd(UnsafeBufferPointer(start: buf, count: raw.images.count),
                                           count: raw.count, channels: 3, plane: RawDataset.side * RawDataset.side)
        owned = buf
        images = UnsafePointer(buf)
        mapping = nil
        mappingSize = 0
    }

    deinit {
        if let mapping { munmap(mapping, mappingSize) }
        owned?.deallocate()
    }

    private static func counts(_ labels: [Int32], _ k: Int) -> [Int] {
        var c = [Int](repeating: 0, count: k)
        for l in labels where l >= 0 { c[Int(l)] += 1 }
        return c
    }

    /// Image `i` as C*H*W bytes (CHW). Valid while the data set is alive.
    @inline(__always)
    public func image(_ i: Int) -> UnsafeBufferPointer<UInt8> {
        precondition(i >= 0 && i < count, "image index \(i) out of 0..<\(count)")
        return UnsafeBufferPointer(start: images + i * imageBytes, count: imageBytes)
    }

    /// Checks that the images have the shape a consumer works on; the error names the file, the
    /// config key and both shapes (a file of other-sized images is never read as misaligned bytes).
    public func requireShape(_ expected: [Int], for key: String) throws {
        guard shape == expected else {
            throw DataError(path, "\(key): holds images of [\(shape.map(String.init).joined(separator: ", "))] but the model reads [\(expected.map(String.init).joined(separator: ", "))]; re-pack the source with `mcl-dist data prepare`")
        }
    }

    /// Number of images with label -1.
    public var unlabelledCount: Int { labels.lazy.filter { $0 < 0 }.count }

    public var info: DatasetInfo {
        DatasetInfo(count: count,
                    classes: classNames.enumerated().map { .init(name: $0.element, count: countsPerClass[$0.offset]) },
                    shape: shape, mean: mean, std: std, unlabelled: unlabelledCount)
    }
}

/// What `mcl-dist data info` reports.
public struct DatasetInfo: Codable, Sendable, Equatable {
    public struct ClassCount: Codable, Sendable, Equatable {
        public let name: String
        public let count: Int
    }
    public let count: Int
    public let classes: [ClassCount]
    /// [C, H, W]
    public let shape: [Int]
    /// Per-channel mean and standard deviation in [0,1].
    public let mean: [Double]
    public let std: [Double]
    /// Images with label -1.
    public let unlabelled: Int

    /// JSON with keys `count`, `classes` ([{name, count}]), `shape`, `mean`, `std`, `unlabelled`.
    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// A human-readable summary.
    public var text: String {
        let f = { (v: [Double]) in v.map { String(format: "%.4f", $0) }.joined(separator: ", ") }
        var s = "\(count) images of [\(shape.map(String.init).joined(separator: ", "))]"
        s += classes.isEmpty ? ", unlabelled\n" : ", \(classes.count) classes\n"
        for (k, c) in classes.enumerated() { s += "  \(k) \(c.name): \(c.count)\n" }
        s += "mean (\(f(mean)))  std (\(f(std)))\n"
        return s
    }
}

/// `mcl-dist data info FILE [--json]`.
public func datasetInfo(path: String, verify: Bool = true) throws -> DatasetInfo {
    try PackedDataset(path: path, verify: verify).info
}

public func datasetInfoJSON(path: String, verify: Bool = true) throws -> String {
    try datasetInfo(path: path, verify: verify).json()
}

// MARK: - prepare

/// Loads a source data set. `source` may be
/// - a CIFAR binary file (`data_batch_N.bin`, `test_batch.bin`, CIFAR-100 `train.bin`, `test.bin`)
///   or a folder of them (`split` "train" (default): data_batch_*.bin / train.bin; "test");
/// - an IDX images file, gzip or plain (its labels file is found beside it), or a folder of them
///   (`split` "train" (default): train-images-idx3-ubyte(.gz); "test": t10k-images-...);
/// - an image folder (`<class>/<file>` or flat = unlabelled); with `split`, `<source>/<split>`.
public func loadSource(_ source: String, split: String? = nil, threads: Int = Threads.count) throws -> RawDataset {
    if isRegularFile(source) {
        let name = (source as NSString).lastPathComponent
        if name.contains("idx3-ubyte") { return try IDXReader.read(images: source, labels: IDXReader.labelsPath(forImages: source)) }
        if name.contains("idx1-ubyte") { throw DataError(source, "this is an IDX labels file; give the images file (…-images-idx3-ubyte)") }
        if name.hasSuffix(".bin") { return try CIFARReader.read(files: [source]) }
        // Unknown name: sniff an IDX images magic.
        let head = try Gzip.readFile(source).prefix(4)
        if Array(head) == [0, 0, 8, 3] { return try IDXReader.read(images: source, labels: IDXReader.labelsPath(forImages: source)) }
        throw DataError(source, "unknown data format: expected a CIFAR .bin file, an IDX images file (…-images-idx3-ubyte[.gz]) or an image folder")
    }
    guard isDirectory(source) else { throw DataError(source, "no such file or folder") }
    if CIFARReader.looksLikeFolder(source) {
        return try CIFARReader.read(files: CIFARReader.files(inFolder: source, split: split ?? "train"))
    }
    if IDXReader.looksLikeFolder(source) {
        let images = try IDXReader.imagesFile(inFolder: source, split: split ?? "train")
        return try IDXReader.read(images: images, labels: IDXReader.labelsPath(forImages: images))
    }
    var root = source
    if let split {
        root = (source as NSString).appendingPathComponent(split)
        guard isDirectory(root) else { throw DataError(root, "no '\(split)' folder in \(source)") }
    }
    return try ImageFolderReader.read(folder: root, threads: threads)
}

/// Keeps a subset of classes, relabelled 0..k-1 in the order given (open-set splits; their names
/// are kept), then the first `limitPerClass` images of each class (of the whole set if unlabelled).
public func selectClasses(_ raw: RawDataset, classes: [Int]?, limitPerClass: Int?, source: String = "") throws -> RawDataset {
    var keep = [Int32](repeating: -2, count: max(raw.classNames.count, 0))  // old label -> new label
    var names = raw.classNames
    let labelled = !raw.classNames.isEmpty
    if let classes {
        guard labelled else { throw DataError(source, "--classes needs a labelled data set; this one is unlabelled") }
        guard !classes.isEmpty else { throw DataError(source, "--classes is empty") }
        for (k, c) in classes.enumerated() {
            guard c >= 0 && c < raw.classNames.count else {
                throw DataError(source, "--classes: class \(c) out of range 0..\(raw.classNames.count - 1)")
            }
            guard keep[c] == -2 else { throw DataError(source, "--classes: class \(c) given twice") }
            keep[c] = Int32(k)
        }
        names = classes.map { raw.classNames[$0] }
    } else {
        for c in 0..<keep.count { keep[c] = Int32(c) }
    }
    if let l = limitPerClass, l < 1 { throw DataError(source, "--limit must be at least 1, got \(l)") }
    let limit = limitPerClass ?? Int.max
    var taken = [Int](repeating: 0, count: max(1, names.count))
    var images: [UInt8] = []
    var labels: [Int32] = []
    let per = RawDataset.imageBytes
    for i in 0..<raw.count {
        let old = raw.labels[i]
        let new: Int32 = old < 0 ? -1 : keep[Int(old)]
        if new == -2 { continue }
        let slot = new < 0 ? 0 : Int(new)
        if taken[slot] >= limit { continue }
        taken[slot] += 1
        labels.append(new)
        images.append(contentsOf: raw.images[(i * per)..<((i + 1) * per)])
    }
    if labels.isEmpty { throw DataError(source, "no images left after selecting classes") }
    return RawDataset(images: images, labels: labels, classNames: names)
}

/// `mcl-dist data prepare SRC --out FILE [--classes 0,1,2] [--limit N] [--split train|test]`:
/// reads the source (see `loadSource`), selects classes (relabelled 0..k-1 in the given order)
/// and the first N images per class, and writes the packed file atomically.
@discardableResult
public func prepareDataset(source: String, out: String, classes: [Int]?, limitPerClass: Int?, split: String?,
                           threads: Int = Threads.count) throws -> DatasetInfo {
    let raw = try loadSource(source, split: split, threads: threads)
    let selected = (classes == nil && limitPerClass == nil) ? raw
        : try selectClasses(raw, classes: classes, limitPerClass: limitPerClass, source: source)
    try PackedFormat.write(selected, to: out)
    return try datasetInfo(path: out, verify: false)
}

/// Parses `--classes 0,1,2` (spaces allowed) into class indices.
public func parseClassList(_ s: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 }) else {
        throw DataError("--classes '\(s)': expected comma-separated class indices such as 0,1,2")
    }
    return values
}
