import XCTest
import Foundation
import MCLCore
@testable import MCLData
@testable import MCLEval

/// The detector file and its threshold, and the image fitting `detect` uses: known answers.
final class DetectorTests: XCTestCase {
    func tmp(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "mcl-detector-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d + "/" + name
    }

    /// k = ceil(0.95 * 20) = 19: the 19th highest of 1..20 is 2; 19 of 20 scores are >= 2.
    func testThresholdKnownAnswer() throws {
        let scores = (1...20).map(Double.init).shuffled()
        let (t, kept) = try Detector.threshold(scores: scores, tpr: 0.95)
        XCTAssertEqual(t, 2)
        XCTAssertEqual(kept, 0.95)
        let (t2, kept2) = try Detector.threshold(scores: [5, 5, 5, 1], tpr: 0.5)   // ties keep more
        XCTAssertEqual(t2, 5); XCTAssertEqual(kept2, 0.75)
        XCTAssertThrowsError(try Detector.threshold(scores: [], tpr: 0.95))
        XCTAssertThrowsError(try Detector.threshold(scores: [1], tpr: 1))
    }

    func detector() throws -> Detector {
        let C = 2, R = 1, d = 3
        var x: [Float] = [], main: [Int] = [], aux: [Int] = []
        var g = SplitMix64(seed: 7)
        for i in 0..<40 { for j in 0..<d { x.append(Float(g.nextGaussian()) + (i % 2 == 0 ? 0 : 3) * Float(j == 0 ? 1 : 0)) }; main.append(i % 2); aux.append(0) }
        let gs = try ClassGaussians(features: x, dim: d, mainLabels: main, auxLabels: aux, numMain: C, numAux: R, ridge: 1e-3)
        return Detector(gaussians: gs, classNames: ["a", "b"], feature: "projection", way: 1, aggregation: .avg, threshold: -2.5,
                        targetTPR: 0.95, calibrationImages: 10, calibrationTPR: 0.95, checkpointFingerprint: "0123456789abcdef",
                        checkpoint: "ck.safetensors", config: "data: {train: x.mcld}\n", measured: ["test_tpr": 0.94])
    }

    func testWriteReadRoundTripAndChecks() throws {
        let d = try detector()
        let p = tmp("det.safetensors")
        try d.write(to: p)
        let r = try Detector(contentsOf: p)
        XCTAssertEqual(r.gaussians.means, d.gaussians.means)
        XCTAssertEqual(r.gaussians.cholesky, d.gaussians.cholesky)
        XCTAssertEqual(r.classNames, ["a", "b"]); XCTAssertEqual(r.threshold, -2.5); XCTAssertEqual(r.way, 1)
        XCTAssertEqual(r.checkpointFingerprint, "0123456789abcdef"); XCTAssertEqual(r.measured["test_tpr"], 0.94)
        let x: [Float] = [0, 0, 0, 3, 0, 0]
        XCTAssertEqual(r.score(viewFeatures: x, count: 2).pred, [0, 1])
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp("det.json")))
        // A detector whose JSON says other sizes than its tensors: refused naming the tensor.
        var w = SafeTensorsWriter()
        let f = try SafeTensorsFile(path: p)
        var meta = f.metadata.filter { !$0.key.hasPrefix("crc32:") }
        meta["mcl_detector"] = meta["mcl_detector"]!.replacingOccurrences(of: "\"dim\" : 3", with: "\"dim\" : 4")
        w.metadata = meta
        for n in f.names { w.add(n, shape: try f.shape(n), doubles: try f.doubles(n)) }
        try w.write(to: tmp("bad.safetensors"))
        XCTAssertThrowsError(try Detector(contentsOf: tmp("bad.safetensors"))) { e in
            XCTAssertTrue("\(e)".contains("'means' has shape"), "\(e)")
        }
        XCTAssertThrowsError(try Detector(contentsOf: tmp("det.json")))
    }

    /// A 64x48 image: centre 48x48 crop, then 2/3 of a 1.5-pixel cell... checked against a direct
    /// area average; a 64x64 image of 2x2 blocks becomes the block values exactly.
    func testImageFitAreaAverage() {
        var rgb = [UInt8](repeating: 0, count: 64 * 64 * 3)
        for y in 0..<64 { for x in 0..<64 { for c in 0..<3 { rgb[3 * (y * 64 + x) + c] = UInt8(((x / 2) * 5 + (y / 2) * 3 + c * 40) % 256) } } }
        let out = ImageFit.fit(rgb: rgb, width: 64, height: 64, side: 32)
        for Y in 0..<32 { for X in 0..<32 { for c in 0..<3 { XCTAssertEqual(out[c * 1024 + Y * 32 + X], UInt8((X * 5 + Y * 3 + c * 40) % 256)) } } }
        // 48 -> 32: cell of 1.5 pixels; output 0 = (p0 + 0.5 p1) / 1.5 in each direction.
        var g = [UInt8](repeating: 0, count: 64 * 48 * 3)
        for y in 0..<48 { for x in 0..<64 { for c in 0..<3 { g[3 * (y * 64 + x) + c] = UInt8((x * 3 + y) % 200) } } }
        let o2 = ImageFit.fit(rgb: g, width: 64, height: 48, side: 32)
        func src(_ x: Int, _ y: Int) -> Double { Double(((x + 8) * 3 + y) % 200) }
        let want = (src(0, 0) + 0.5 * src(1, 0) + 0.5 * src(0, 1) + 0.25 * src(1, 1)) / 2.25
        XCTAssertEqual(Double(o2[0]), want.rounded(), accuracy: 0.5)
        // 28x28: zero-padded by 2, as data prepare.
        let small = [UInt8](repeating: 200, count: 28 * 28 * 3)
        let o3 = ImageFit.fit(rgb: small, width: 28, height: 28, side: 32)
        XCTAssertEqual(o3[0], 0); XCTAssertEqual(o3[2 * 32 + 2], 200); XCTAssertEqual(o3[31 * 32 + 31], 0)
    }
}
