import XCTest
import Foundation
import CImageCodecs
import MCLCore
@testable import MCLEval

/// Decodes our PNG output independently: signature, chunk layout, CRCs checked with zlib's
/// crc32, IDAT inflated with zlib's uncompress, scanlines unfiltered (type 0 expected).
func decodeOwnPNG(_ data: Data) throws -> (width: Int, height: Int, rgb: [UInt8]) {
    let b = [UInt8](data)
    struct Bad: Error, CustomStringConvertible { let description: String }
    guard b.count > 8, Array(b[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw Bad(description: "bad signature") }
    func be32(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
    var pos = 8, width = 0, height = 0
    var idat: [UInt8] = []
    var types: [String] = []
    while pos < b.count {
        let len = be32(pos)
        let type = String(decoding: b[(pos + 4)..<(pos + 8)], as: UTF8.self)
        types.append(type)
        let body = Array(b[(pos + 4)..<(pos + 8 + len)])
        let crc = body.withUnsafeBufferPointer { UInt32(CImageCodecs.crc32(0, $0.baseAddress, uInt($0.count))) }
        guard crc == UInt32(be32(pos + 8 + len)) else { throw Bad(description: "CRC mismatch in \(type)") }
        if type == "IHDR" {
            width = be32(pos + 8); height = be32(pos + 12)
            guard Array(b[(pos + 16)..<(pos + 21)]) == [8, 2, 0, 0, 0] else { throw Bad(description: "IHDR fields") }
        }
        if type == "IDAT" { idat += b[(pos + 8)..<(pos + 8 + len)] }
        pos += 12 + len
    }
    guard types.first == "IHDR", types.last == "IEND", pos == b.count else { throw Bad(description: "chunks \(types)") }
    let stride = width * 3
    var raw = [UInt8](repeating: 0, count: height * (stride + 1))
    var rawLen = uLong(raw.count)
    let rc = uncompress(&raw, &rawLen, idat, uLong(idat.count))
    guard rc == Z_OK, Int(rawLen) == raw.count else { throw Bad(description: "inflate rc \(rc), \(rawLen) bytes") }
    var rgb: [UInt8] = []
    for y in 0..<height {
        guard raw[y * (stride + 1)] == 0 else { throw Bad(description: "filter type \(raw[y * (stride + 1)]) on row \(y)") }
        rgb += raw[(y * (stride + 1) + 1)..<((y + 1) * (stride + 1))]
    }
    return (width, height, rgb)
}

final class PNGTests: XCTestCase {
    func testEncoderRoundTrip() throws {
        var rng = SplitMix64(seed: 3)
        for (w, h) in [(1, 1), (7, 3), (64, 48)] {
            let px = (0..<(w * h * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let png = PNGEncoder.encode(width: w, height: h, rgb: px)
            let dec = try decodeOwnPNG(png)
            XCTAssertEqual(dec.width, w); XCTAssertEqual(dec.height, h)
            XCTAssertEqual(dec.rgb, px)
        }
        // Our CRC agrees with zlib's on the standard check string.
        let check = Array("123456789".utf8)
        XCTAssertEqual(PNGEncoder.crc32(check), 0xCBF4_3926)
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
        let dec = try decodeOwnPNG(cv.pngData())
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
            let dec = try decodeOwnPNG(FileManager.default.contents(atPath: dir + "/" + name)!)
            XCTAssertEqual(dec.rgb, cv.pixels)
            XCTAssertEqual(dec.width, cv.width)
        }
        print("figures written to \(dir)")
    }
}
