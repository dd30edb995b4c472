import XCTest
import MCLCore
@testable import MCLData

/// The standard supervised CIFAR recipe (`AugmentOptions.cifarStandard`): a random crop of the
/// 4-pixel zero-padded image and a horizontal flip.
final class PadCropTests: XCTestCase {
    func image() -> [UInt8] { (0..<3072).map { (i: Int) -> UInt8 in UInt8((i * 7 + 3) % 251) } }

    func render(_ src: [UInt8], top: Int, left: Int, flip: Bool = false, rotation: Int = 0) -> [Float] {
        var v = ViewParams(rotation: rotation, flip: flip, crop: CropBox(top: top, left: left, height: 32, width: 32),
                           cropScaleDraw: nil, cropLogRatioDraw: nil, cropAttempts: 0, jitter: nil, grayscale: false)
        v.padding = 4
        var dst = [Float](repeating: -1, count: 3 * 32 * 32), scratch = [Float](repeating: 0, count: 3 * 32 * 32)
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                scratch.withUnsafeMutableBufferPointer { Augment.render(src: s.baseAddress!, side: 32, params: v, variant: .official, dst: d.baseAddress!, scratch: $0.baseAddress!) }
            }
        }
        return dst
    }

    func testPaddedCropShiftsWithZeroBorder() {
        let src = image()
        let centre = render(src, top: 4, left: 4)
        for i in 0..<centre.count { XCTAssertEqual(centre[i], Float(src[i]) / 255, accuracy: 1e-7) }
        // Window at (0, 2) of the padded image: dst(y, x) = src(y - 4, x - 2), zero outside.
        let shifted = render(src, top: 0, left: 2)
        for c in 0..<3 { for y in 0..<32 { for x in 0..<32 {
            let sy = y - 4, sx = x - 2
            let want: Float = (sy >= 0 && sx >= 0) ? Float(src[(c * 32 + sy) * 32 + sx]) / 255 : 0
            XCTAssertEqual(shifted[(c * 32 + y) * 32 + x], want, accuracy: 1e-7, "c \(c) y \(y) x \(x)")
        } } }
        // The flip mirrors the image before the window is taken.
        let flipped = render(src, top: 4, left: 4, flip: true)
        XCTAssertEqual(flipped[0], Float(src[31]) / 255, accuracy: 1e-7)
    }

    func testDrawsCoverEveryOffsetAndFlipHalfTheTime() {
        var rng = SplitMix64(seed: 3)
        var tops = Set<Int>(), lefts = Set<Int>(), flips = 0
        for _ in 0..<2000 {
            let v = Augment.drawParams(rotation: 0, options: .cifarStandard, rng: &rng)
            XCTAssertEqual(v.padding, 4); XCTAssertNil(v.jitter); XCTAssertFalse(v.grayscale)
            tops.insert(v.crop.top); lefts.insert(v.crop.left)
            if v.flip { flips += 1 }
        }
        XCTAssertEqual(tops, Set(0...8)); XCTAssertEqual(lefts, Set(0...8))
        XCTAssertEqual(Double(flips) / 2000, 0.5, accuracy: 0.05)
    }
}
