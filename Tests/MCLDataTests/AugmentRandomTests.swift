import XCTest
import Foundation
import MCLCore
@testable import MCLData

/// Statistical checks of the random draws (generous tolerances: 5 standard deviations).
final class AugmentRandomTests: XCTestCase {
    /// |count - n p| <= 5 sqrt(n p (1 - p)).
    func assertBinomial(_ count: Int, _ n: Int, _ p: Double, _ what: String, line: UInt = #line) {
        let sd = (Double(n) * p * (1 - p)).squareRoot()
        XCTAssertLessThanOrEqual(abs(Double(count) - Double(n) * p), 5 * sd, "\(what): \(count) of \(n), expected p = \(p)", line: line)
    }

    /// Every bin within 5 sd of a uniform share.
    func assertUniform(_ values: [Double], _ lo: Double, _ hi: Double, bins: Int = 10, _ what: String, line: UInt = #line) {
        var counts = [Int](repeating: 0, count: bins)
        for v in values {
            XCTAssertTrue(v >= lo && v <= hi, "\(what) \(v) outside [\(lo), \(hi)]", line: line)
            counts[min(bins - 1, max(0, Int((v - lo) / (hi - lo) * Double(bins))))] += 1
        }
        for (b, c) in counts.enumerated() { assertBinomial(c, values.count, 1 / Double(bins), "\(what) bin \(b)", line: line) }
    }

    func testCropDraws() {
        var rng = SplitMix64(seed: 42)
        let opts = AugmentOptions.standard
        var scales: [Double] = [], logRatios: [Double] = [], fallbacks = 0
        let n = 40000
        for _ in 0..<n {
            let (box, s, lr, attempts) = Augment.randomResizedCropParams(height: 32, width: 32, scale: opts.cropScale, ratio: opts.cropRatio, rng: &rng)
            XCTAssertTrue(box.height >= 1 && box.width >= 1 && box.top + box.height <= 32 && box.left + box.width <= 32)
            guard let s, let lr else { fallbacks += 1; XCTAssertEqual(box, CropBox(top: 0, left: 0, height: 32, width: 32)); continue }
            XCTAssertTrue((1...10).contains(attempts))
            XCTAssertTrue(s >= 0.08 && s <= 1, "scale \(s)")
            XCTAssertTrue(lr >= Foundation.log(3.0 / 4) && lr <= Foundation.log(4.0 / 3), "log ratio \(lr)")
            // The rounded box matches the drawn area and ratio.
            XCTAssertEqual(box.width, Int((1024 * s * Foundation.exp(lr)).squareRoot().rounded(.toNearestOrEven)))
            XCTAssertEqual(box.height, Int((1024 * s / Foundation.exp(lr)).squareRoot().rounded(.toNearestOrEven)))
            scales.append(s); logRatios.append(lr)
        }
        XCTAssertLessThan(fallbacks, 5, "the central fallback is vanishingly rare for square images")
        // Below scale 0.74 every ratio fits in 32x32, so accepted draws are uniform there.
        assertUniform(scales.filter { $0 <= 0.74 }, 0.08, 0.74, "crop scale")
        assertUniform(logRatios.enumerated().filter { scales[$0.offset] <= 0.74 }.map(\.element),
                      Foundation.log(3.0 / 4), Foundation.log(4.0 / 3), "crop log ratio")
        // Offsets uniform over the free range: for the full-width boxes only left = 0.
        let tops = (0..<20000).map { _ -> Double in
            let (b, _, _, _) = Augment.randomResizedCropParams(height: 32, width: 32, scale: 0.25...0.25, ratio: 1...1, rng: &rng)
            XCTAssertEqual(b.height, 16)
            return Double(b.top) / 17
        }
        assertUniform(tops, 0, 1, bins: 17, "crop top")
    }

    func testCropFallbackIsTorchvisions() {
        var rng = SplitMix64(seed: 1)
        // Scale never fits -> central fallback.
        let (b, s, _, attempts) = Augment.randomResizedCropParams(height: 32, width: 32, scale: 2...3, ratio: (3.0 / 4)...(4.0 / 3), rng: &rng)
        XCTAssertNil(s)
        XCTAssertEqual(attempts, 11)
        XCTAssertEqual(b, CropBox(top: 0, left: 0, height: 32, width: 32))
        // Tall image (W/H = 10/32 < 3/4): w = W, h = round(W / (3/4)) = 13, centred.
        let (t, _, _, _) = Augment.randomResizedCropParams(height: 32, width: 10, scale: 2...3, ratio: (3.0 / 4)...(4.0 / 3), rng: &rng)
        XCTAssertEqual(t, CropBox(top: 9, left: 0, height: 13, width: 10))
        // Wide image (W/H = 32/10 > 4/3): h = H, w = round(10 * 4/3) = 13.
        let (w, _, _, _) = Augment.randomResizedCropParams(height: 10, width: 32, scale: 2...3, ratio: (3.0 / 4)...(4.0 / 3), rng: &rng)
        XCTAssertEqual(w, CropBox(top: 0, left: 9, height: 10, width: 13))
    }

    func testApplicationRatesAndJitterRanges() {
        let n = 20000
        var flips = 0, jitters = 0, grays = 0
        var orders: [[Int]: Int] = [:]
        var b: [Double] = [], c: [Double] = [], s: [Double] = [], h: [Double] = []
        for i in 0..<n {
            var rng = SplitMix64(seed: 7, UInt64(i))
            let p = Augment.drawParams(rotation: i % 4, options: .standard, rng: &rng)
            if p.flip { flips += 1 }
            if p.grayscale { grays += 1 }
            if let j = p.jitter {
                jitters += 1
                XCTAssertEqual(j.order.sorted(), [0, 1, 2, 3])
                orders[j.order, default: 0] += 1
                b.append(Double(j.brightness)); c.append(Double(j.contrast)); s.append(Double(j.saturation)); h.append(Double(j.hue))
            }
        }
        assertBinomial(flips, n, 0.5, "flip rate")
        assertBinomial(jitters, n, 0.8, "jitter rate")
        assertBinomial(grays, n, 0.2, "grayscale rate")
        XCTAssertEqual(orders.count, 24, "all 24 orders of the four jitter operations occur")
        for (o, k) in orders { assertBinomial(k, jitters, 1.0 / 24, "jitter order \(o)") }
        assertUniform(b, 0.6, 1.4, "brightness factor")
        assertUniform(c, 0.6, 1.4, "contrast factor")
        assertUniform(s, 0.6, 1.4, "saturation factor")
        assertUniform(h, -0.1, 0.1, "hue factor")
    }

    func testRenderMatchesComposedOps() {
        // One view rendered by the pipeline equals the composition of the golden-checked ops.
        let bytes = randomBytes(3072, seed: 99)
        let x = bytes.withUnsafeBufferPointer { FloatImage(bytes: $0, channels: 3, height: 32, width: 32) }
        for variant in FlipVariant.allCases {
            for k in 0..<4 {
                var rng = SplitMix64(seed: 3, UInt64(k))
                var p = Augment.drawParams(rotation: k, options: .standard, rng: &rng)
                p.flip = true
                p.jitter = JitterParams(order: [3, 1, 0, 2], brightness: 1.2, contrast: 0.7, saturation: 1.3, hue: 0.05)
                p.grayscale = false
                var out = [Float](repeating: 0, count: 3072), scratch = [Float](repeating: 0, count: 3072)
                bytes.withUnsafeBufferPointer { src in
                    out.withUnsafeMutableBufferPointer { o in
                        scratch.withUnsafeMutableBufferPointer { s in
                            Augment.render(src: src.baseAddress!, side: 32, params: p, variant: variant, dst: o.baseAddress!, scratch: s.baseAddress!)
                        }
                    }
                }
                // SPEC 7 official: horizontal for 0/180, vertical for 90/270, after the rotation;
                // rotated-frame: always horizontal after the rotation.
                let rotated = x.rot90(k)
                var y = (variant == .official && k % 2 == 1) ? rotated.vflip() : rotated.hflip()
                if variant == .official { XCTAssertEqual(y, x.hflip().rot90(k), "official flip = horizontal flip in the original frame") }
                y = y.resizedCrop(top: p.crop.top, left: p.crop.left, height: p.crop.height, width: p.crop.width)
                y = y.adjustHue(0.05).adjustContrast(0.7).adjustBrightness(1.2).adjustSaturation(1.3)
                XCTAssertLessThanOrEqual(Compare.relToMax(out, y.pixels), 1e-6, "variant \(variant) k \(k)")
                // Grayscale last.
                p.grayscale = true
                bytes.withUnsafeBufferPointer { src in
                    out.withUnsafeMutableBufferPointer { o in
                        scratch.withUnsafeMutableBufferPointer { s in
                            Augment.render(src: src.baseAddress!, side: 32, params: p, variant: variant, dst: o.baseAddress!, scratch: s.baseAddress!)
                        }
                    }
                }
                XCTAssertLessThanOrEqual(Compare.relToMax(out, y.toGrayscale().pixels), 1e-6)
                XCTAssertTrue(out.allSatisfy { $0 >= 0 && $0 <= 1 })
            }
        }
    }
}
