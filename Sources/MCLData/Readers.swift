import Foundation
import MCLCore

/// A data set in memory in the packed layout: `count` images of 3 x 32 x 32 uint8 (CHW),
/// int32 labels (-1 = unlabelled), class names (empty when unlabelled).
public struct RawDataset: Sendable {
    public var images: [UInt8]
    public var labels: [Int32]
    public var classNames: [String]
    public static let channels = 3, side = 32
    public static var imageBytes: Int { channels * side * side }

    public var count: Int { labels.count }

    public init(images: [UInt8], labels: [Int32], classNames: [String]) {
        precondition(images.count == labels.count * RawDataset.imageBytes)
        self.images = images
        self.labels = labels
        self.classNames = classNames
    }
}

// MARK: - CIFAR binary

/// CIFAR's binary format: records of `labelBytes` label bytes then 3072 image bytes (R, G, B
/// planes of 32x32, i.e. already CHW). CIFAR-10 has 1 label byte; CIFAR-100 has 2 (coarse, fine)
/// and the fine label is used.
public enum CIFARReader {
    public static let cifar10Names = ["airplane", "automobile", "bird", "cat", "deer",
                                      "dog", "frog", "horse", "ship", "truck"]
    public static let cifar100Names = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"]

    /// Label bytes per record: 1 for CIFAR-10 names (data_batch_*, test_batch), 2 for CIFAR-100
    /// names (train.bin, test.bin); otherwise decided by which record size divides the file size.
    public static func labelBytes(path: String, size: Int) throws -> Int {
        let name = (path as NSString).lastPathComponent
        if name.hasPrefix("data_batch") || name.hasPrefix("test_batch") { return 1 }
        if name == "train.bin" || name == "test.bin" { return 2 }
        let d10 = size % 3073 == 0, d100 = size % 3074 == 0
        if d10 && !d100 { return 1 }
        if d100 && !d10 { return 2 }
        throw DataError(path, "cannot tell CIFAR-10 (3073-byte records) from CIFAR-100 (3074-byte records) for a file of \(size) bytes; name it data_batch_N.bin / test_batch.bin (CIFAR-10) or train.bin / test.bin (CIFAR-100)")
    }

    /// Reads CIFAR binary files (all of the same kind) in order.
    public static func read(files: [String]) throws -> RawDataset {
        var images: [UInt8] = []
        var labels: [Int32] = []
        var kind = 0
        for path in files {
            let bytes = try readWholeFile(path)
            let lb = try labelBytes(path: path, size: bytes.count)
            if kind != 0 && lb != kind {
                throw DataError(path, "mixes CIFAR-10 and CIFAR-100 record formats with \(files[0])")
            }
            kind = lb
            let rec = lb + 3072
            if bytes.isEmpty { throw DataError(path, "empty CIFAR file") }
            if bytes.count % rec != 0 {
                throw DataError(path, "truncated CIFAR file: \(bytes.count) bytes is not a whole number of \(rec)-byte records (\(bytes.count / rec) records and \(bytes.count % rec) extra bytes)")
            }
            let n = bytes.count / rec
            let classes = lb == 1 ? 10 : 100
            images.reserveCapacity(images.count + n * 3072)
            for r in 0..<n {
                let o = r * rec
                let label = Int(bytes[o + lb - 1])
                if label >= classes {
                    throw DataError(path, "record \(r) has label \(label), CIFAR-\(classes) labels are 0..\(classes - 1)")
                }
                labels.append(Int32(label))
                images.append(contentsOf: bytes[(o + lb)..<(o + rec)])
            }
        }
        let names = kind == 1 ? namesFile(beside: files[0], "batches.meta.txt", count: 10) ?? cifar10Names
                              : namesFile(beside: files[0], "fine_label_names.txt", count: 100) ?? cifar100Names
        return RawDataset(images: images, labels: labels, classNames: names)
    }

    /// Class names from the text file shipped beside the binaries, if present and well-formed.
    static func namesFile(beside path: String, _ name: String, count: Int) -> [String]? {
        let p = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(name)
        guard let s = try? String(contentsOfFile: p, encoding: .utf8) else { return nil }
        let names = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return names.count == count ? names : nil
    }

    /// The binary files of a CIFAR folder for a split ("train" or "test").
    public static func files(inFolder dir: String, split: String) throws -> [String] {
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        let train = all.filter { $0.hasPrefix("data_batch_") && $0.hasSuffix(".bin") } + all.filter { $0 == "train.bin" }
        let test = all.filter { $0 == "test_batch.bin" || $0 == "test.bin" }
        let chosen: [String]
        switch split {
        case "train": chosen = train
        case "test": chosen = test
        default: throw DataError(dir, "unknown split '\(split)' for a CIFAR folder (use train or test)")
        }
        if chosen.isEmpty { throw DataError(dir, "no CIFAR \(split) files (data_batch_*.bin / train.bin or test_batch.bin / test.bin)") }
        return chosen.map { (dir as NSString).appendingPathComponent($0) }
    }

    static func looksLikeFolder(_ dir: String) -> Bool {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return all.contains { ($0.hasPrefix("data_batch_") && $0.hasSuffix(".bin")) || $0 == "test_batch.bin" || $0 == "train.bin" || $0 == "test.bin" }
    }
}

// MARK: - IDX (MNIST, Fashion-MNIST)

/// IDX files (gzip or plain): a big-endian magic 0x0000TTDD (TT = 0x08 unsigned bytes, DD = number
/// of dimensions), DD big-endian uint32 sizes, then the data. Images: 0x00000803 [N, rows, cols];
/// labels: 0x00000801 [N]. 28x28 images are zero-padded to 32x32 and replicated to 3 channels.
public enum IDXReader {
    public static let fashionNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    static func be32(_ b: [UInt8], _ o: Int) -> Int {
        Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
    }

    /// The labels file beside an images file: `train-images-idx3-ubyte(.gz)` ->
    /// `train-labels-idx1-ubyte(.gz)` (either compression).
    public static func labelsPath(forImages path: String) throws -> String {
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        guard name.contains("images-idx3-ubyte") else {
            throw DataError(path, "cannot derive the labels file name: expected a name like train-images-idx3-ubyte(.gz)")
        }
        var base = name.replacingOccurrences(of: "images-idx3-ubyte", with: "labels-idx1-ubyte")
        if base.hasSuffix(".gz") { base.removeLast(3) }
        let candidates = [base, base + ".gz"].map { dir.isEmpty ? $0 : (dir as NSString).appendingPathComponent($0) }
        for c in candidates where isRegularFile(c) { return c }
        throw DataError(path, "labels file not found beside it (tried \(candidates.joined(separator: ", ")))")
    }

    /// Reads an IDX images file and its labels file.
    public static func read(images imagesPath: String, labels labelsPath: String) throws -> RawDataset {
        let ib = try Gzip.readFile(imagesPath)
        guard ib.count >= 16 else { throw DataError(imagesPath, "truncated IDX file: \(ib.count) bytes, the header alone is 16") }
        let magic = be32(ib, 0)
        guard magic == 0x0000_0803 else {
            throw DataError(imagesPath, String(format: "wrong magic number 0x%08x, expected 0x00000803 (IDX unsigned-byte images [N, rows, cols])", magic))
        }
        let n = be32(ib, 4), rows = be32(ib, 8), cols = be32(ib, 12)
        // The sides are checked first: with rows, cols <= 32 and n < 2^32, n * rows * cols fits.
        let offset: Int
        if rows == 32 && cols == 32 { offset = 0 } else if rows == 28 && cols == 28 { offset = 2 * 32 + 2 } else {
            throw DataError(imagesPath, "images are \(rows)x\(cols); data sets are 32x32 (28x28 is zero-padded): resize the images first")
        }
        let need = 16 + n * rows * cols
        guard ib.count >= need else {
            throw DataError(imagesPath, "truncated IDX file: header says \(n) images of \(rows)x\(cols) (\(need) bytes) but the data has \(ib.count) bytes")
        }
        let lb = try Gzip.readFile(labelsPath)
        guard lb.count >= 8 else { throw DataError(labelsPath, "truncated IDX file: \(lb.count) bytes, the header alone is 8") }
        let lmagic = be32(lb, 0)
        guard lmagic == 0x0000_0801 else {
            throw DataError(labelsPath, String(format: "wrong magic number 0x%08x, expected 0x00000801 (IDX unsigned-byte labels [N])", lmagic))
        }
        let ln = be32(lb, 4)
        guard lb.count >= 8 + ln else {
            throw DataError(labelsPath, "truncated IDX file: header says \(ln) labels but the data has \(lb.count - 8)")
        }
        guard ln == n else {
            throw DataError(labelsPath, "labels/images count mismatch: \(ln) labels for \(n) images in \(imagesPath)")
        }
        var images = [UInt8](repeating: 0, count: n * 3072)
        images.withUnsafeMutableBufferPointer { dst in
            ib.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let s = 16 + i * rows * cols
                    for y in 0..<rows {
                        for x in 0..<cols {
                            let v = src[s + y * cols + x]
                            let o = i * 3072 + offset + y * 32 + x
                            dst[o] = v; dst[o + 1024] = v; dst[o + 2048] = v
                        }
                    }
                }
            }
        }
        let labels = (0..<n).map { Int32(lb[8 + $0]) }
        let classes = Int(labels.max() ?? -1) + 1
        let lower = imagesPath.lowercased()
        let names = lower.contains("fashion") && classes <= 10 ? Array(fashionNames.prefix(max(classes, 10)))
                                                                : (0..<max(classes, 1)).map { String($0) }
        return RawDataset(images: images, labels: labels, classNames: names)
    }

    /// The images file of an IDX folder for a split: train -> train-images-idx3-ubyte(.gz),
    /// test -> t10k-images-idx3-ubyte(.gz).
    public static func imagesFile(inFolder dir: String, split: String) throws -> String {
        let prefix: String
        switch split {
        case "train": prefix = "train"
        case "test", "t10k": prefix = "t10k"
        default: throw DataError(dir, "unknown split '\(split)' for an IDX folder (use train or test)")
        }
        for name in ["\(prefix)-images-idx3-ubyte", "\(prefix)-images-idx3-ubyte.gz"] {
            let p = (dir as NSString).appendingPathComponent(name)
            if isRegularFile(p) { return p }
        }
        throw DataError(dir, "no \(prefix)-images-idx3-ubyte(.gz) in this folder")
    }

    static func looksLikeFolder(_ dir: String) -> Bool {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return all.contains { $0.contains("-images-idx3-ubyte") }
    }
}

// MARK: - Image folders

/// Image folders: `<root>/<class>/<file>` (class index = position of the folder name in sorted
/// order, as torchvision's ImageFolder), or a flat folder of images (unlabelled, label -1).
/// Files are taken in sorted name order; hidden files and files whose extension is not an image
/// extension (jpg, jpeg, png, any case) are ignored, as are loose files beside class folders.
/// An empty class folder is an error. (For Tiny ImageNet's `test/images/*.JPEG`, give the
/// `images` folder itself: its parent would read as one class named "images".)
public enum ImageFolderReader {
    static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    static func listImages(_ dir: String) throws -> [String] {
        let all: [String]
        do { all = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw DataError(dir, "cannot list folder: \(error.localizedDescription)")
        }
        return all.filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted()
            .map { (dir as NSString).appendingPathComponent($0) }
            .filter { isRegularFile($0) }
    }

    public static func read(folder root: String, threads: Int = 1) throws -> RawDataset {
        guard isDirectory(root) else { throw DataError(root, "no such folder") }
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        let classDirs = entries.filter { isDirectory((root as NSString).appendingPathComponent($0)) }
        var paths: [String] = []
        var labels: [Int32] = []
        var names: [String] = []
        if classDirs.isEmpty {
            paths = try listImages(root)
            if paths.isEmpty { throw DataError(root, "folder holds no images (.jpg, .jpeg, .png) and no class folders") }
            labels = [Int32](repeating: -1, count: paths.count)
        } else {
            for (k, name) in classDirs.enumerated() {
                let dir = (root as NSString).appendingPathComponent(name)
                let files = try listImages(dir)
                if files.isEmpty { throw DataError(dir, "empty class folder: no images (.jpg, .jpeg, .png) for class '\(name)'") }
                paths += files
                labels += [Int32](repeating: Int32(k), count: files.count)
                names.append(name)
            }
        }
        let images = try ImageCodec.loadImages(paths: paths, side: 32, threads: threads)
        return RawDataset(images: images, labels: labels, classNames: names)
    }
}
