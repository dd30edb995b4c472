import XCTest
import Foundation
import MCLCore
@testable import MCLData

/// Checks the deterministic augmentation operations against torchvision (golden `augment-*`).
final class AugmentGoldenTests: XCTestCase {
    func testGoldenAugmentOps() throws {
        let failures = GoldenSet().run("augment-") { c in
            let (err, problems) = try check(c)
            guard problems.isEmpty else { throw GoldenMismatch(problems.joined(separator: "; ")) }
            return err
        }
        XCTAssertTrue(failures.isEmpty, failures.joined(separator: "\n"))
    }

    /// The crop box of `resized_crop`, from metadata `crop` = "top=T,left=L,height=H,width=W".
    static func cropBox(_ c: GoldenCase) throws -> (top: Int, left: Int, height: Int, width: Int) {
        let s = try c.string("crop")
        var d: [String: Int] = [:]
        for part in s.split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let v = Int(kv[1]) else { throw GoldenMismatch("metadata crop = '\(s)': '\(part)' is not key=integer") }
            d[String(kv[0]).trimmingCharacters(in: .whitespaces)] = v
        }
        guard let t = d["top"], let l = d["left"], let h = d["height"], let w = d["width"] else {
            throw GoldenMismatch("metadata crop = '\(s)' lacks one of top, left, height, width")
        }
        return (t, l, h, w)
    }

    /// Returns the largest error (relative to the largest reference element, per op and image)
    /// and the list of ops over tolerance. `rot90` is one quarter turn counter-clockwise (the
    /// format's definition, golden/README.md).
    private func check(_ c: GoldenCase) throws -> (Double, [String]) {
        let f = c.file
        let shape = try f.shape("input")
        guard shape.count == 4 else { throw GoldenMismatch("input has shape \(shape)") }
        let (n, ch, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let input = try f.floats("input")
        func meta(_ k: String) throws -> Float { Float(try c.double(k)) }
        let crop = try Self.cropBox(c)
        let per = ch * h * w
        func image(_ i: Int) -> FloatImage {
            FloatImage(channels: ch, height: h, width: w, pixels: Array(input[(i * per)..<((i + 1) * per)]))
        }
        let (b, con, sat, hue) = (try meta("brightness"), try meta("contrast"), try meta("saturation"), try meta("hue"))
        // Every output of the format is required: a case that lacks one fails in `f.floats`.
        let ops: [(String, Double, (FloatImage) -> FloatImage)] = [
            ("brightness", 1e-4, { $0.adjustBrightness(b) }),
            ("contrast", 1e-4, { $0.adjustContrast(con) }),
            ("saturation", 1e-4, { $0.adjustSaturation(sat) }),
            ("hue", 1e-4, { $0.adjustHue(hue) }),
            ("grayscale", 1e-4, { $0.toGrayscale() }),
            ("resized_crop", 1e-3, { $0.resizedCrop(top: crop.top, left: crop.left, height: crop.height, width: crop.width, outHeight: h, outWidth: w) }),
            ("hflip", 1e-4, { $0.hflip() }),
            ("rot90", 1e-4, { $0.rot90(1) }),
        ]
        var worst = 0.0
        var problems: [String] = []
        for (op, tol, fn) in ops {
            let ref = try f.floats(op)
            guard ref.count == n * per else { throw GoldenMismatch("\(op) has \(ref.count) values, want \(n * per)") }
            var opWorst = 0.0
            for i in 0..<n {
                let got = fn(image(i)).pixels
                let want = Array(ref[(i * per)..<((i + 1) * per)])
                opWorst = max(opWorst, Compare.relToMax(got, want))
            }
            worst = max(worst, opWorst)
            if !(opWorst <= tol) { problems.append("\(op) rel err \(String(format: "%.3e", opWorst)) > \(tol)") }
        }
        return (worst, problems)
    }
}
