import XCTest
import Foundation
import MCLCore
@testable import MCLData

/// Checks the deterministic augmentation operations against torchvision (golden `augment-*`).
final class AugmentGoldenTests: XCTestCase {
    func testGoldenAugmentOps() throws {
        let cases = Golden.cases(prefix: "augment-")
        XCTAssertFalse(cases.isEmpty, "no golden augment-* cases in \(Golden.directory)")
        var failures: [String] = []
        for name in cases {
            do {
                let (err, problems) = try check(name)
                if problems.isEmpty {
                    Golden.report(name, maxRelErr: err)
                } else {
                    let why = problems.joined(separator: "; ")
                    Golden.reportFailure(name, why)
                    failures.append("\(name): \(why)")
                }
            } catch {
                Golden.reportFailure(name, "\(error)")
                failures.append("\(name): \(error)")
            }
        }
        XCTAssertTrue(failures.isEmpty, failures.joined(separator: "\n"))
    }

    /// Returns the largest error (relative to the largest reference element, per op and image)
    /// and the list of ops over tolerance.
    private func check(_ name: String) throws -> (Double, [String]) {
        let f = try Golden.open(name)
        let shape = try f.shape("input")
        XCTAssertEqual(shape.count, 4)
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let input = try f.floats("input")
        func meta(_ k: String) throws -> Float {
            guard let s = f.metadata[k], let v = Float(s) else { throw DataError(f.path, "metadata '\(k)' missing") }
            return v
        }
        var crop = (top: 3, left: 5, height: 20, width: 24)
        if let s = f.metadata["crop"] {
            var d: [String: Int] = [:]
            for part in s.split(separator: ",") {
                let kv = part.split(separator: "=")
                if kv.count == 2, let v = Int(kv[1]) { d[String(kv[0]).trimmingCharacters(in: .whitespaces)] = v }
            }
            crop = (d["top"] ?? 3, d["left"] ?? 5, d["height"] ?? 20, d["width"] ?? 24)
        }
        let k = Int(f.metadata["rot90_k"] ?? f.metadata["k"] ?? "1") ?? 1
        let per = c * h * w
        func image(_ i: Int) -> FloatImage {
            FloatImage(channels: c, height: h, width: w, pixels: Array(input[(i * per)..<((i + 1) * per)]))
        }
        typealias Op = (String, Double, (FloatImage) -> FloatImage)
        var ops: [Op] = []
        if f.has("brightness") { let v = try meta("brightness"); ops.append(("brightness", 1e-4, { $0.adjustBrightness(v) })) }
        if f.has("contrast") { let v = try meta("contrast"); ops.append(("contrast", 1e-4, { $0.adjustContrast(v) })) }
        if f.has("saturation") { let v = try meta("saturation"); ops.append(("saturation", 1e-4, { $0.adjustSaturation(v) })) }
        if f.has("hue") { let v = try meta("hue"); ops.append(("hue", 1e-4, { $0.adjustHue(v) })) }
        if f.has("grayscale") { ops.append(("grayscale", 1e-4, { $0.toGrayscale() })) }
        if f.has("resized_crop") {
            let cr = crop
            ops.append(("resized_crop", 1e-3, { $0.resizedCrop(top: cr.top, left: cr.left, height: cr.height, width: cr.width, outHeight: h, outWidth: w) }))
        }
        if f.has("hflip") { ops.append(("hflip", 1e-4, { $0.hflip() })) }
        if f.has("rot90") { ops.append(("rot90", 1e-4, { $0.rot90(k) })) }
        XCTAssertFalse(ops.isEmpty, "\(name): no known outputs")
        var worst = 0.0
        var problems: [String] = []
        for (op, tol, fn) in ops {
            let ref = try f.floats(op)
            XCTAssertEqual(ref.count, n * per, "\(name).\(op)")
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
