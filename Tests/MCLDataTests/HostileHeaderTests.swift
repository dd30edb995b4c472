import XCTest
import Foundation
import MCLCore
@testable import MCLData

/// Header fields set to values a corrupt or hostile file can hold (sizes of 2^31, 2^32 - 1, 2^63,
/// images of another size): each is a clear error naming the file and the field, never a trap.
final class HostileHeaderTests: XCTestCase {
    func packed(_ dir: String) throws -> (String, Data) {
        let raw = RawDataset(images: randomBytes(3 * 3072, seed: 4), labels: [0, 1, 0], classNames: ["p", "q"])
        let path = dir + "/p.mcld"
        try PackedFormat.write(raw, to: path)
        return (path, try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Writes `data` with a field changed and the CRC recomputed (so the check reaches the field).
    func mutated(_ data: Data, _ dir: String, _ name: String, _ edit: (inout Data) -> Void) -> String {
        var d = data
        edit(&d)
        let crc = d.withUnsafeBytes { PackedFormat.checksum($0.baseAddress!, d.count) }
        withUnsafeBytes(of: crc.littleEndian) { for k in 0..<8 { d[40 + k] = $0[k] } }
        let p = dir + "/" + name
        _ = FileManager.default.createFile(atPath: p, contents: d)
        return p
    }

    func put<T: FixedWidthInteger>(_ d: inout Data, _ v: T, at o: Int) {
        withUnsafeBytes(of: v.littleEndian) { for k in 0..<MemoryLayout<T>.size { d[o + k] = $0[k] } }
    }

    func expectError(_ path: String, mentions words: [String], line: UInt = #line) {
        XCTAssertThrowsError(try PackedDataset(path: path), line: line) { e in
            for w in [path] + words { XCTAssertTrue("\(e)".contains(w), "'\(e)' does not mention \(w)", line: line) }
        }
    }

    func testPackedHeaderFieldsAreBounded() throws {
        let dir = makeTempDir("hostile-mcld")
        let (_, data) = try packed(dir)
        expectError(mutated(data, dir, "count63.mcld") { put(&$0, UInt64(1) << 63, at: 16) }, mentions: ["image count", "byte 16"])
        expectError(mutated(data, dir, "countmax.mcld") { put(&$0, UInt64.max, at: 16) }, mentions: ["image count"])
        expectError(mutated(data, dir, "side.mcld") { put(&$0, UInt32.max, at: 28); put(&$0, UInt32.max, at: 32) }, mentions: ["image size"])
        expectError(mutated(data, dir, "channels.mcld") { put(&$0, UInt32(4), at: 24) }, mentions: ["channels"])
        expectError(mutated(data, dir, "header.mcld") { put(&$0, UInt32.max, at: 12) }, mentions: ["header size"])
        expectError(mutated(data, dir, "count2.mcld") { put(&$0, UInt64(1) << 39, at: 16) }, mentions: ["truncated"])
    }

    /// A valid file of 16x16 images opens (data info shows it) but training and evaluation refuse
    /// it naming the sizes; before, the step read it as 32x32 images and crashed.
    func testOtherImageSizeIsRefusedByConsumers() throws {
        let dir = makeTempDir("hostile-geometry")
        let (_, data) = try packed(dir)
        // 3 images of 3x16x16 = 768 bytes each: the same file re-laid out with a smaller side.
        let p = mutated(data, dir, "small.mcld") { d in
            self.put(&d, UInt32(16), at: 28); self.put(&d, UInt32(16), at: 32)
            let header = 128, images = 3 * 768
            let labelsAt = (header + images + 7) / 8 * 8
            var out = Data(d.prefix(header + images))
            out.append(Data(count: labelsAt - out.count))
            for l: Int32 in [0, 1, 0] { withUnsafeBytes(of: l.littleEndian) { out.append(contentsOf: $0) } }
            d = out
        }
        let ds = try PackedDataset(path: p)
        XCTAssertEqual(ds.shape, [3, 16, 16])
        XCTAssertThrowsError(try ds.requireShape([3, 32, 32], for: "data.train")) { e in
            for w in [p, "data.train", "[3, 16, 16]", "[3, 32, 32]"] { XCTAssertTrue("\(e)".contains(w), "'\(e)' lacks \(w)") }
        }
    }

    func testFolderGivenAsPackedFile() {
        let dir = makeTempDir("hostile-folder")
        XCTAssertThrowsError(try PackedDataset(path: dir)) { e in
            XCTAssertTrue("\(e)".contains(dir) && "\(e)".contains("is a folder"), "\(e)")
        }
    }

    /// IDX sizes of 2^31 and 2^32 - 1: refused by the side check before any size arithmetic.
    func testIDXHugeSizes() throws {
        let dir = makeTempDir("hostile-idx")
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        let labels = dir + "/x-labels-idx1-ubyte"
        _ = FileManager.default.createFile(atPath: labels, contents: Data([0, 0, 8, 1] + be(2) + [1, 2]))
        for (k, dims) in [[UInt32(1) << 31, 28, 28], [UInt32.max, UInt32.max, UInt32.max], [2, UInt32(1) << 31, 28], [2, 28, UInt32.max]].enumerated() {
            let images = dir + "/x\(k)-images-idx3-ubyte"
            _ = FileManager.default.createFile(atPath: images, contents: Data([0, 0, 8, 3] + dims.flatMap(be) + randomBytes(2 * 784, seed: 1)))
            XCTAssertThrowsError(try IDXReader.read(images: images, labels: labels)) { e in
                XCTAssertTrue("\(e)".contains(images) && ("\(e)".contains("truncated") || "\(e)".contains("32x32")), "\(e)")
            }
        }
    }
}
