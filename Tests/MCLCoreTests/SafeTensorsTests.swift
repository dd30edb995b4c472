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
