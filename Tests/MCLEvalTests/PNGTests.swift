import XCTest
import Foundation
import MCLData
import MCLCore
@testable import MCLEval

/// Decodes a PNG with libpng's reader (independent of the writer's code path).
func decodePNG(_ data: Data) throws -> (width: Int, height: Int, rgb: [UInt8]) { try PNGCodec.decodeRGB(data) }

final class PNGTests: XCTestCase {
    func testEncoderRoundTrip() throws {
        var rng = SplitMix64(seed: 3)
        for (w, h) in [(1, 1), (7, 3), (64, 48)] {
            let px = (0..<(w * h * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let png = try PNGCodec.encode(pixels: px, width: w, height: h, channels: 3)
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            let dec = try decodePNG(png)
            XCTAssertEqual(dec.width, w); XCTAssertEqual(dec.height, h)
            XCTAssertEqual(dec.rgb, px)
        }
        XCTAssertThrowsError(try decodePNG(Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3])))
    }

    func testCanvasDrawingAndText() throws {
        var cv = Canvas(width: 120, height: 40)
        cv.fillRect(x0: 0, y0: 0, x1: 10, y1: 10, RGB(255, 0, 0))
        XCTAssertEqual(cv.pixel(5, 5), RGB(255, 0, 0))
        XCTAssertEqual(cv.pixel(15, 5), .white)
        cv.text("AUROC 93.20", x: 20, y: 20, scale: 1, .black)
        let inked = (0..<40).flatMap { y in (0..<120).map { cv.pixel($0, y) } }.filter { $0 == .black }.count
        XCTAssertGreaterThan(inked, 60)
        // The 'T' of the tiny font: full top row.
        var t = Canvas(width: 5, height: 7)
        t.text("T", x: 0, y: 0)
        XCTAssertTrue((0..<5).allSatisfy { t.pixel($0, 0) == .black })
        XCTAssertEqual(t.pixel(0, 3), .white)
        XCTAssertEqual(t.pixel(2, 6), .black)
        cv.line(0, 39.5, 119, 0.5, .black, width: 1.5)
        let dec = try decodePNG(try cv.pngData())
        XCTAssertEqual(dec.rgb, cv.pixels)
        XCTAssertEqual(TinyFont.table.count, 95)
    }

    /// Builds both figures from synthetic scores and writes them to $MCL_FIGURE_DIR (default: a
    /// temporary folder) so they can be looked at; checks that they decode.
    func testFigures() throws {
        var rng = SplitMix64(seed: 12)
        let dir = ProcessInfo.processInfo.environment["MCL_FIGURE_DIR"] ?? (NSTemporaryDirectory() + "mcl-eval-figures-\(getpid())")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ins = (0..<5000).map { _ in -abs(rng.nextGaussian()) * 2 - 4 }
        let near = (0..<3000).map { _ in -abs(rng.nextGaussian()) * 3 - 6 }
        let far = (0..<3000).map { _ in -abs(rng.nextGaussian()) * 4 - 9 }
        let roc = rocFigure(curves: [ROCCurveData(name: "tinyimagenet", inScores: ins, oodScores: near),
                                     ROCCurveData(name: "fmnist", inScores: ins, oodScores: far)],
                            title: "ROC, 8-way wavg SEI")
        try roc.writePNG(to: dir + "/roc.png")
        let correct = (0..<4600).map { _ in -abs(rng.nextGaussian()) * 1.5 - 4 }
        let wrong = (0..<400).map { _ in -abs(rng.nextGaussian()) * 3 - 6.5 }
        let hist = scoreHistogramFigure(correctIn: correct, wrongIn: wrong, ood: near, oodName: "OOD tinyimagenet",
                                        title: "Scores, 8-way wavg SEI")
        try hist.writePNG(to: dir + "/histogram.png")
        for (name, cv) in [("roc.png", roc), ("histogram.png", hist)] {
            let dec = try decodePNG(FileManager.default.contents(atPath: dir + "/" + name)!)
            XCTAssertEqual(dec.rgb, cv.pixels)
            XCTAssertEqual(dec.width, cv.width)
        }
        print("figures written to \(dir)")
    }
}
