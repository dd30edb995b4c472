import XCTest
import Foundation
import MCLCore
@testable import MCLData

extension XCTestCase {
    /// A fresh temporary folder, removed when the test ends.
    func makeTempDir(_ tag: String) -> String {
        let dir = NSTemporaryDirectory() + "mcl-data-tests-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}

/// Deterministic pseudo-random bytes.
func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) }
}

/// A smooth RGB test image (JPEG keeps it within a few levels), HWC.
func smoothImage(side: Int, seed: Int) -> [UInt8] {
    var px = [UInt8](repeating: 0, count: side * side * 3)
    for y in 0..<side {
        for x in 0..<side {
            px[(y * side + x) * 3] = UInt8((x * 255) / (side - 1))
            px[(y * side + x) * 3 + 1] = UInt8((y * 255) / (side - 1))
            px[(y * side + x) * 3 + 2] = UInt8((seed * 40 + 60) % 256)
        }
    }
    return px
}

/// HWC -> CHW.
func chw(_ hwc: [UInt8], side: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: hwc.count)
    for i in 0..<(side * side) { for c in 0..<3 { out[c * side * side + i] = hwc[i * 3 + c] } }
    return out
}

final class ReaderTests: XCTestCase {
    // MARK: CIFAR

    func cifarRecords(_ n: Int, labelBytes: Int, seed: UInt64) -> ([UInt8], [Int32], [UInt8]) {
        var file: [UInt8] = [], labels: [Int32] = [], images: [UInt8] = []
        let img = randomBytes(n * 3072, seed: seed)
        for i in 0..<n {
            let fine = UInt8((i * 7 + Int(seed)) % (labelBytes == 1 ? 10 : 100))
            if labelBytes == 2 { file.append(UInt8(i % 20)) }
            file.append(fine)
            file += img[(i * 3072)..<((i + 1) * 3072)]
            labels.append(Int32(fine))
            images += img[(i * 3072)..<((i + 1) * 3072)]
        }
        return (file, labels, images)
    }

    func testCIFAR10FolderAndFile() throws {
        let dir = makeTempDir("cifar10")
        let (f1, l1, i1) = cifarRecords(7, labelBytes: 1, seed: 1)
        let (f2, l2, i2) = cifarRecords(5, labelBytes: 1, seed: 2)
        let (ft, lt, it) = cifarRecords(3, labelBytes: 1, seed: 3)
        _ = FileManager.default.createFile(atPath: dir + "/data_batch_1.bin", contents: Data(f1))
        _ = FileManager.default.createFile(atPath: dir + "/data_batch_2.bin", contents: Data(f2))
        _ = FileManager.default.createFile(atPath: dir + "/test_batch.bin", contents: Data(ft))

        let out = dir + "/train.mcld"
        let info = try prepareDataset(source: dir, out: out, classes: nil, limitPerClass: nil, split: nil)
        XCTAssertEqual(info.count, 12)
        let ds = try PackedDataset(path: out)
        XCTAssertEqual(ds.count, 12)
        XCTAssertEqual(ds.shape, [3, 32, 32])
        XCTAssertEqual(ds.labels, l1 + l2)
        XCTAssertEqual(ds.classNames, CIFARReader.cifar10Names)
        XCTAssertEqual(Array(ds.image(8)), Array((i1 + i2)[(8 * 3072)..<(9 * 3072)]))
        XCTAssertEqual(ds.countsPerClass.reduce(0, +), 12)

        try prepareDataset(source: dir, out: dir + "/test.mcld", classes: nil, limitPerClass: nil, split: "test")
        let t = try PackedDataset(path: dir + "/test.mcld")
        XCTAssertEqual(t.labels, lt)
        XCTAssertEqual(Array(t.image(2)), Array(it[(2 * 3072)...]))

        try prepareDataset(source: dir + "/test_batch.bin", out: dir + "/t2.mcld", classes: nil, limitPerClass: nil, split: nil)
        XCTAssertEqual(try PackedDataset(path: dir + "/t2.mcld").labels, lt)
    }

    func testCIFAR100UsesFineLabel() throws {
        let dir = makeTempDir("cifar100")
        let (f, labels, images) = cifarRecords(6, labelBytes: 2, seed: 9)
        _ = FileManager.default.createFile(atPath: dir + "/train.bin", contents: Data(f))
        try prepareDataset(source: dir, out: dir + "/c.mcld", classes: nil, limitPerClass: nil, split: "train")
        let ds = try PackedDataset(path: dir + "/c.mcld")
        XCTAssertEqual(ds.labels, labels)
        XCTAssertEqual(ds.numClasses, 100)
        XCTAssertEqual(ds.classNames[0], "apple")
        XCTAssertEqual(Array(ds.image(5)), Array(images[(5 * 3072)...]))
    }

    // MARK: IDX

    func idx(images n: Int, side: Int, seed: UInt64) -> ([UInt8], [UInt8], [UInt8], [Int32]) {
        let px = randomBytes(n * side * side, seed: seed)
        var img: [UInt8] = [0, 0, 8, 3]
        for v in [n, side, side] { img += [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        img += px
        var lab: [UInt8] = [0, 0, 8, 1, UInt8(n >> 24 & 255), UInt8(n >> 16 & 255), UInt8(n >> 8 & 255), UInt8(n & 255)]
        let labels = (0..<n).map { Int32(($0 * 3) % 10) }
        lab += labels.map { UInt8($0) }
        return (img, lab, px, labels)
    }

    func testIDXGzipPaddedAndReplicated() throws {
        let dir = makeTempDir("idx")
        let (img, lab, px, labels) = idx(images: 9, side: 28, seed: 5)
        try Gzip.writeFile(dir + "/train-images-idx3-ubyte.gz", img)
        try Gzip.writeFile(dir + "/train-labels-idx1-ubyte.gz", lab)
        // Test split: plain images with gzip labels.
        let (timg, tlab, _, tlabels) = idx(images: 4, side: 28, seed: 6)
        _ = FileManager.default.createFile(atPath: dir + "/t10k-images-idx3-ubyte", contents: Data(timg))
        try Gzip.writeFile(dir + "/t10k-labels-idx1-ubyte.gz", tlab)

        try prepareDataset(source: dir + "/train-images-idx3-ubyte.gz", out: dir + "/a.mcld", classes: nil, limitPerClass: nil, split: nil)
        let ds = try PackedDataset(path: dir + "/a.mcld")
        XCTAssertEqual(ds.count, 9)
        XCTAssertEqual(ds.labels, labels)
        XCTAssertEqual(ds.classNames, (0..<10).map(String.init))
        let im = Array(ds.image(4))
        for c in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 {
                    let inside = (2..<30).contains(y) && (2..<30).contains(x)
                    let want: UInt8 = inside ? px[4 * 784 + (y - 2) * 28 + (x - 2)] : 0
                    XCTAssertEqual(im[c * 1024 + y * 32 + x], want)
                }
            }
        }
        try prepareDataset(source: dir, out: dir + "/b.mcld", classes: nil, limitPerClass: nil, split: "test")
        XCTAssertEqual(try PackedDataset(path: dir + "/b.mcld").labels, tlabels)
    }

    // MARK: image folders

    func testImageFolderPNGAndJPEG() throws {
        let dir = makeTempDir("folder")
        let root = dir + "/train"
        for cls in ["b_dogs", "a_cats"] { try FileManager.default.createDirectory(atPath: root + "/" + cls, withIntermediateDirectories: true) }
        let rgb = randomBytes(32 * 32 * 3, seed: 11)
        try ImageCodec.writePNG(path: root + "/a_cats/0.png", pixels: rgb, width: 32, height: 32, channels: 3)
        let gray = randomBytes(32 * 32, seed: 12)
        try ImageCodec.writePNG(path: root + "/a_cats/1.png", pixels: gray, width: 32, height: 32, channels: 1)
        let gray28 = randomBytes(28 * 28, seed: 13)
        try ImageCodec.writePNG(path: root + "/b_dogs/0.png", pixels: gray28, width: 28, height: 28, channels: 1)
        let smooth = smoothImage(side: 32, seed: 1)
        try ImageCodec.writeJPEG(path: root + "/b_dogs/1.JPG", pixels: smooth, width: 32, height: 32, channels: 3, quality: 98)
        _ = FileManager.default.createFile(atPath: root + "/b_dogs/notes.txt", contents: Data("ignored".utf8))

        try prepareDataset(source: dir, out: dir + "/f.mcld", classes: nil, limitPerClass: nil, split: "train")
        let ds = try PackedDataset(path: dir + "/f.mcld")
        XCTAssertEqual(ds.classNames, ["a_cats", "b_dogs"])
        XCTAssertEqual(ds.labels, [0, 0, 1, 1])
        XCTAssertEqual(ds.countsPerClass, [2, 2])
        XCTAssertEqual(Array(ds.image(0)), chw(rgb, side: 32))
        XCTAssertEqual(Array(ds.image(1)), gray + gray + gray)
        let padded = Array(ds.image(2))
        XCTAssertEqual(padded[0], 0)
        XCTAssertEqual(padded[2 * 32 + 2], gray28[0])
        XCTAssertEqual(padded[2048 + 29 * 32 + 29], gray28[27 * 28 + 27])
        let jpg = Array(ds.image(3)), ref = chw(smooth, side: 32)
        let maxDiff = zip(jpg, ref).map { abs(Int($0) - Int($1)) }.max()!
        XCTAssertLessThanOrEqual(maxDiff, 12, "JPEG round trip differs by \(maxDiff) levels")

        // Flat folder = unlabelled.
        let flat = dir + "/flat"
        try FileManager.default.createDirectory(atPath: flat, withIntermediateDirectories: true)
        try ImageCodec.writePNG(path: flat + "/x.png", pixels: rgb, width: 32, height: 32, channels: 3)
        try ImageCodec.writeJPEG(path: flat + "/y.jpeg", pixels: smooth, width: 32, height: 32, channels: 3)
        let info = try prepareDataset(source: flat, out: dir + "/u.mcld", classes: nil, limitPerClass: nil, split: nil)
        XCTAssertEqual(info.count, 2)
        XCTAssertEqual(info.unlabelled, 2)
        XCTAssertTrue(info.classes.isEmpty)
        let u = try PackedDataset(path: dir + "/u.mcld")
        XCTAssertEqual(u.labels, [-1, -1])
        XCTAssertFalse(u.isLabelled)
    }

    func testParallelDecodeMatchesSerial() throws {
        let dir = makeTempDir("par")
        var paths: [String] = []
        for i in 0..<300 {
            let p = dir + "/\(i).jpg"
            try ImageCodec.writeJPEG(path: p, pixels: randomBytes(32 * 32 * 3, seed: UInt64(i)), width: 32, height: 32, channels: 3)
            paths.append(p)
        }
        let a = try ImageCodec.loadImages(paths: paths, threads: 1)
        let b = try ImageCodec.loadImages(paths: paths, threads: 3)
        XCTAssertEqual(a, b)
    }

    // MARK: selection

    func testClassesRelabelAndLimit() throws {
        let dir = makeTempDir("select")
        let (f, labels, images) = cifarRecords(60, labelBytes: 1, seed: 4)
        _ = FileManager.default.createFile(atPath: dir + "/data_batch_1.bin", contents: Data(f))
        let info = try prepareDataset(source: dir + "/data_batch_1.bin", out: dir + "/s.mcld", classes: [7, 2, 5], limitPerClass: 3, split: nil)
        let ds = try PackedDataset(path: dir + "/s.mcld")
        XCTAssertEqual(ds.classNames, ["horse", "bird", "dog"])
        XCTAssertEqual(ds.countsPerClass, [3, 3, 3])
        XCTAssertEqual(info.classes.map(\.name), ["horse", "bird", "dog"])
        // Expected: original order, first 3 of each kept class, relabelled.
        var taken = [Int32: Int](), want: [Int32] = [], wantImages: [UInt8] = []
        let map: [Int32: Int32] = [7: 0, 2: 1, 5: 2]
        for (i, l) in labels.enumerated() {
            guard let n = map[l], taken[l, default: 0] < 3 else { continue }
            taken[l, default: 0] += 1
            want.append(n)
            wantImages += images[(i * 3072)..<((i + 1) * 3072)]
        }
        XCTAssertEqual(ds.labels, want)
        XCTAssertEqual((0..<ds.count).flatMap { Array(ds.image($0)) }, wantImages)

        XCTAssertEqual(try parseClassList("7, 2,5"), [7, 2, 5])
        XCTAssertThrowsError(try parseClassList("1,x"))
        XCTAssertThrowsError(try parseClassList(""))
        XCTAssertThrowsError(try prepareDataset(source: dir + "/data_batch_1.bin", out: dir + "/bad.mcld", classes: [1, 1], limitPerClass: nil, split: nil))
        XCTAssertThrowsError(try prepareDataset(source: dir + "/data_batch_1.bin", out: dir + "/bad.mcld", classes: [10], limitPerClass: nil, split: nil))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.mcld"))
    }

    func testInfoJSONAndMeanStd() throws {
        var images = [UInt8](repeating: 0, count: 2 * 3072)
        for i in 0..<1024 { images[i] = 255; images[3072 + 1024 + i] = UInt8(i % 2 == 0 ? 0 : 255) }
        let raw = RawDataset(images: images, labels: [0, 1], classNames: ["x", "y"])
        let dir = makeTempDir("info")
        try PackedFormat.write(raw, to: dir + "/i.mcld")
        let info = try datasetInfo(path: dir + "/i.mcld")
        XCTAssertEqual(info.mean[0], 0.5, accuracy: 1e-12)   // half the pixels 1
        XCTAssertEqual(info.std[0], 0.5, accuracy: 1e-12)
        XCTAssertEqual(info.mean[1], 0.25, accuracy: 1e-12)
        XCTAssertEqual(info.std[1], (0.25 * 0.75).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(info.mean[2], 0)
        let json = try datasetInfoJSON(path: dir + "/i.mcld")
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertEqual(obj["count"] as? Int, 2)
        XCTAssertEqual(obj["shape"] as? [Int], [3, 32, 32])
        let classes = obj["classes"] as! [[String: Any]]
        XCTAssertEqual(classes.map { $0["name"] as? String }, ["x", "y"])
        XCTAssertEqual(classes.map { $0["count"] as? Int }, [1, 1])
        XCTAssertEqual((obj["mean"] as? [Double])?.count, 3)
        XCTAssertEqual((obj["std"] as? [Double])?.count, 3)
    }

    // MARK: bad input

    /// Runs prepare, expects an error mentioning `names`, and checks nothing was written.
    func expectPrepareError(_ source: String, split: String? = nil, mentions names: [String], _ line: UInt = #line) {
        let outDir = makeTempDir("out")
        let out = outDir + "/o.mcld"
        do {
            try prepareDataset(source: source, out: out, classes: nil, limitPerClass: nil, split: split)
            XCTFail("no error for \(source)", line: line)
        } catch {
            let msg = "\(error)"; if ProcessInfo.processInfo.environment["MCL_SHOW_ERRORS"] != nil { print("expected error: \(msg)") }
            for n in names { XCTAssertTrue(msg.contains(n), "error '\(msg)' does not name \(n)", line: line) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), line: line)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: outDir))?.count, 0, "leftover files", line: line)
    }

    func testBadInputsNameTheFile() throws {
        let dir = makeTempDir("bad")
        // Truncated CIFAR.
        let (f, _, _) = cifarRecords(3, labelBytes: 1, seed: 1)
        let cifar = dir + "/data_batch_1.bin"
        _ = FileManager.default.createFile(atPath: cifar, contents: Data(f.prefix(3073 * 2 + 100)))
        expectPrepareError(cifar, mentions: [cifar, "truncated"])

        // Wrong IDX magic.
        let (img, lab, _, _) = idx(images: 3, side: 28, seed: 1)
        var bad = img; bad[3] = 1
        let idxDir = dir + "/idx"
        try FileManager.default.createDirectory(atPath: idxDir, withIntermediateDirectories: true)
        try Gzip.writeFile(idxDir + "/train-images-idx3-ubyte.gz", bad)
        try Gzip.writeFile(idxDir + "/train-labels-idx1-ubyte.gz", lab)
        expectPrepareError(idxDir + "/train-images-idx3-ubyte.gz", mentions: [idxDir + "/train-images-idx3-ubyte.gz", "magic"])

        // Labels/images count mismatch.
        let (img4, _, _, _) = idx(images: 4, side: 28, seed: 2)
        try Gzip.writeFile(idxDir + "/train-images-idx3-ubyte.gz", img4)
        expectPrepareError(idxDir, mentions: [idxDir + "/train-labels-idx1-ubyte.gz", "mismatch"])

        // Truncated IDX gzip stream.
        let gzPath = idxDir + "/t10k-images-idx3-ubyte.gz"
        try Gzip.writeFile(gzPath, idx(images: 30, side: 28, seed: 3).0)
        let whole = try Data(contentsOf: URL(fileURLWithPath: gzPath))
        _ = FileManager.default.createFile(atPath: gzPath, contents: whole.prefix(whole.count / 2))
        try Gzip.writeFile(idxDir + "/t10k-labels-idx1-ubyte.gz", lab)
        expectPrepareError(idxDir, split: "test", mentions: [gzPath, "truncated"])

        // Unreadable images: garbage, a JPEG libjpeg rejects (fatal error path), a truncated JPEG
        // (warning path), a broken PNG, a wrong size.
        let smooth = smoothImage(side: 32, seed: 2)
        let good = dir + "/good.jpg"
        try ImageCodec.writeJPEG(path: good, pixels: smooth, width: 32, height: 32, channels: 3)
        let jpeg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var badPrecision = jpeg
        if let sof = (0..<(jpeg.count - 1)).first(where: { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }) { badPrecision[sof + 4] = 12 }
        let png = dir + "/good.png"
        try ImageCodec.writePNG(path: png, pixels: smooth, width: 32, height: 32, channels: 3)
        let pngBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: png)))
        let cases: [(String, [UInt8], String)] = [
            ("garbage.jpg", Array("hello, not an image".utf8), "not a JPEG or PNG"),
            ("precision.jpg", badPrecision, "unreadable JPEG"),
            ("truncated.jpg", Array(jpeg.prefix(jpeg.count - 60)), "corrupt JPEG"),
            ("broken.png", Array(pngBytes.prefix(40)), "PNG"),
        ]
        for (name, bytes, what) in cases {
            let root = dir + "/imgs-\(name)"
            try FileManager.default.createDirectory(atPath: root + "/cls", withIntermediateDirectories: true)
            for i in 0..<5 { try FileManager.default.copyItem(atPath: good, toPath: root + "/cls/\(i).jpg") }
            _ = FileManager.default.createFile(atPath: root + "/cls/" + name, contents: Data(bytes))
            expectPrepareError(root, mentions: [root + "/cls/" + name, what])
        }
        let big = dir + "/big"
        try FileManager.default.createDirectory(atPath: big + "/cls", withIntermediateDirectories: true)
        try ImageCodec.writePNG(path: big + "/cls/a.png", pixels: randomBytes(40 * 40 * 3, seed: 1), width: 40, height: 40, channels: 3)
        expectPrepareError(big, mentions: [big + "/cls/a.png", "40x40"])

        // The decoder still works after a fatal libjpeg error ended a decoder thread.
        XCTAssertEqual(try ImageCodec.loadImage(path: good).count, 3072)

        // Empty class folder.
        let empty = dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty + "/a", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: empty + "/b", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: good, toPath: empty + "/a/0.jpg")
        expectPrepareError(empty, mentions: [empty + "/b", "empty class folder"])

        // Missing source.
        expectPrepareError(dir + "/nothing", mentions: [dir + "/nothing"])
    }

    func testPackedFileErrors() throws {
        let dir = makeTempDir("packed")
        let raw = RawDataset(images: randomBytes(3 * 3072, seed: 1), labels: [0, 1, 0], classNames: ["p", "q"])
        let path = dir + "/p.mcld"
        try PackedFormat.write(raw, to: path)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))

        let truncated = dir + "/t.mcld"
        _ = FileManager.default.createFile(atPath: truncated, contents: data.prefix(data.count - 5))
        XCTAssertThrowsError(try PackedDataset(path: truncated)) { e in
            XCTAssertTrue("\(e)".contains(truncated) && "\(e)".contains("truncated"), "\(e)")
        }
        let flipped = dir + "/f.mcld"
        var d = data; d[200 + 3072] ^= 0x10
        _ = FileManager.default.createFile(atPath: flipped, contents: d)
        XCTAssertThrowsError(try PackedDataset(path: flipped)) { e in
            XCTAssertTrue("\(e)".contains(flipped) && "\(e)".contains("checksum"), "\(e)")
        }
        XCTAssertNoThrow(try PackedDataset(path: flipped, verify: false))
        let magic = dir + "/m.mcld"
        var m = data; m[0] = 0x41
        _ = FileManager.default.createFile(atPath: magic, contents: m)
        XCTAssertThrowsError(try PackedDataset(path: magic)) { e in
            XCTAssertTrue("\(e)".contains(magic) && "\(e)".contains("magic"), "\(e)")
        }
        let ds = try PackedDataset(path: path)
        XCTAssertEqual(Array(ds.image(2)), Array(raw.images[(2 * 3072)...]))
        XCTAssertEqual(ds.classNames, ["p", "q"])
    }
}
