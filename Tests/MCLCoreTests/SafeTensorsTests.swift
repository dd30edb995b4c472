import XCTest
import Foundation
@testable import MCLCore

final class SafeTensorsTests: XCTestCase {
    func tmpPath(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "mcl-core-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/" + name
    }

    func testRoundTrip() throws {
        var w = SafeTensorsWriter()
        w.metadata = ["format": "pt", "note": "a \"quoted\" value"]
        w.add("enc.conv1.weight", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6.5])
        w.add("labels", shape: [3], int32s: [7, -1, 2])
        w.add("d", shape: [1], doubles: [0.25])
        let p = tmpPath("rt.safetensors")
        try w.write(to: p)
        let f = try SafeTensorsFile(path: p)
        XCTAssertEqual(try f.floats("enc.conv1.weight"), [1, 2, 3, 4, 5, 6.5])
        XCTAssertEqual(try f.ints("labels"), [7, -1, 2])
        XCTAssertEqual(try f.doubles("d"), [0.25])
        XCTAssertEqual(f.metadata["note"], "a \"quoted\" value")
        XCTAssertEqual(try f.shape("enc.conv1.weight"), [2, 3])
    }

    func testBadInputNamesTensorAndFile() throws {
        var w = SafeTensorsWriter()
        w.add("a.weight", shape: [4], floats: [1, 2, 3, 4])
        w.add("b.weight", shape: [2], floats: [1, 2])
        let data = w.serialize()
        let p = tmpPath("trunc.safetensors")
        try data.prefix(data.count - 3).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try SafeTensorsFile(path: p)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(p) && s.contains("truncated") && s.contains("b.weight"), s)
        }
        let good = tmpPath("good.safetensors")
        try data.write(to: URL(fileURLWithPath: good))
        let f = try SafeTensorsFile(path: good)
        XCTAssertThrowsError(try f.check("a.weight", shape: [2, 2])) { e in
            XCTAssertTrue("\(e)".contains("a.weight") && "\(e)".contains(good), "\(e)")
        }
        XCTAssertThrowsError(try f.floats("missing.bias")) { e in
            XCTAssertTrue("\(e)".contains("missing.bias") && "\(e)".contains(good), "\(e)")
        }
        XCTAssertThrowsError(try f.check("a.weight", shape: [4], dtype: .f64)) { e in
            XCTAssertTrue("\(e)".contains("dtype"), "\(e)")
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try SafeTensorsFile(path: p))
    }

    func testSplitMixUniformInt() {
        var g = SplitMix64(seed: 1, 2, 3)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70000 { counts[g.nextInt(7)] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 10000, accuracy: 400) }
        var a = SplitMix64(seed: 5, 9), b = SplitMix64(seed: 5, 9), c = SplitMix64(seed: 5, 10)
        XCTAssertEqual(a.next(), b.next())
        XCTAssertNotEqual(a.next(), c.next())
    }
}

/// Headers a corrupt or hostile safetensors file can hold: each is an error naming the file and
/// the tensor, never a trap (before: a shape of [2^62] trapped with "arithmetic overflow").
final class SafeTensorsHostileTests: XCTestCase {
    func file(header: String, payload: Int) -> Data {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var d = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: h)
        d.append(Data(count: payload))
        return d
    }

    func expectError(_ header: String, payload: Int = 16, mentions words: [String], line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(data: file(header: header, payload: payload), path: "x.safetensors"), line: line) { e in
            for w in ["x.safetensors"] + words { XCTAssertTrue("\(e)".contains(w), "'\(e)' lacks '\(w)'", line: line) }
        }
    }

    func testShapesOffsetsAndOverlap() {
        expectError(#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}}"#, mentions: ["'a'", "shape"])
        expectError(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#, mentions: ["'a'", "shape"])
        expectError(#"{"a":{"dtype":"F32","shape":[-4,-1],"data_offsets":[0,16]}}"#, mentions: ["'a'", "negative"])
        expectError(#"{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,16]}}"#, mentions: ["'a'", "not an integer"])
        expectError(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, mentions: ["'b'", "overlaps"])
        expectError(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, mentions: ["'a'", "belong to no tensor"])
        expectError(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, mentions: ["after the last tensor"])
        expectError(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}}"#, mentions: ["'a'", "data_offsets"])
        expectError(#"{"__metadata__":{"n":5},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, mentions: ["metadata 'n'"])
        var huge = Data()
        withUnsafeBytes(of: UInt64.max.littleEndian) { huge.append(contentsOf: $0) }
        XCTAssertThrowsError(try SafeTensorsFile(data: huge + Data(count: 8), path: "x.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("truncated"), "\(e)")
        }
    }

    /// Every tensor's CRC-32 is written into the metadata and checked on reading: one flipped
    /// payload bit is named; a file without checksums (written elsewhere) still reads.
    func testChecksums() throws {
        var w = SafeTensorsWriter()
        w.add("a.weight", shape: [4], floats: [1, 2, 3, 4])
        w.add("b.bias", shape: [2], floats: [5, 6])
        var d = w.serialize()
        let f = try SafeTensorsFile(data: d, path: "c.safetensors")
        XCTAssertTrue(f.hasChecksums)
        XCTAssertEqual(f.metadata["crc32:a.weight"]?.count, 8)
        d[d.count - 1] ^= 0x04   // inside b.bias (stored last)
        XCTAssertThrowsError(try SafeTensorsFile(data: d, path: "c.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("'b.bias'") && "\(e)".contains("checksum mismatch"), "\(e)")
        }
        w.checksums = false
        let plain = try SafeTensorsFile(data: w.serialize(), path: "p.safetensors")
        XCTAssertFalse(plain.hasChecksums)
        XCTAssertEqual(try plain.floats("b.bias"), [5, 6])
    }
}
