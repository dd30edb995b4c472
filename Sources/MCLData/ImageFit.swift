import Foundation
import CImageCodecs
import MCLCore

/// Images of any size for `mcl-dist detect`, brought to the network's `side` x `side` input:
/// - exactly side x side: as is (the pixels `data prepare` would pack);
/// - 28 x 28 (MNIST-style): zero-padded by 2 on every side, as `data prepare` does;
/// - any other size: the centred square crop (the shorter side), then area-averaged down (or
///   box-up-sampled) to side x side: each output pixel is the mean of the source pixels it
///   covers, fractional coverage weighted.
/// Grayscale is replicated to RGB; PNG alpha is composited on black. Decoding goes through the
/// same libjpeg shim and libpng as `data prepare`; an image above 100 megapixels is refused
/// before any allocation.
public enum ImageFit {
    public static let maxPixels = 100_000_000

    /// Decodes a JPEG or PNG file to 8-bit RGB, interleaved.
    public static func decodeRGB(path: String) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        let bytes = try readWholeFile(path)
        guard !bytes.isEmpty else { throw DataError(path, "empty file, not an image") }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
            var message = [CChar](repeating: 0, count: Int(MCL_JPEG_MESSAGE_LENGTH))
            var w: Int32 = 0, h: Int32 = 0
            let rc = bytes.withUnsafeBufferPointer { mcl_jpeg_read_size($0.baseAddress, $0.count, &w, &h, &message) }
            if rc == MCL_JPEG_FATAL { throw DataError(path, "unreadable JPEG: \(String(cString: message))") }
            try checkSize(Int(w), Int(h), path)
            var rgb = [UInt8](repeating: 0, count: 3 * Int(w) * Int(h))
            let d = bytes.withUnsafeBufferPointer { src in
                rgb.withUnsafeMutableBufferPointer { mcl_jpeg_decode_rgb(src.baseAddress, src.count, w, h, $0.baseAddress, &message) }
            }
            switch d {
            case Int32(MCL_JPEG_OK): return (Int(w), Int(h), rgb)
            case Int32(MCL_JPEG_CORRUPT): throw DataError(path, "corrupt JPEG: \(String(cString: message))")
            default: throw DataError(path, "unreadable JPEG: \(String(cString: message))")
            }
        }
        if bytes.count >= 8 && bytes[0] == 0x89 && bytes[1] == 0x50 && bytes[2] == 0x4E && bytes[3] == 0x47 {
            // libpng reads the file from this pointer in both calls (IDAT in the second), so both
            // run inside one closure: with the begin call alone inside it, the optimiser could end
            // `bytes`'s lifetime early and the freed buffer was reused for `rgb` ("IDAT: unknown
            // compression method" on a valid PNG, now and then, with 2 threads).
            return try bytes.withUnsafeBufferPointer { src in
                var image = png_image()
                image.version = UInt32(PNG_IMAGE_VERSION)
                guard png_image_begin_read_from_memory(&image, src.baseAddress, src.count) != 0 else {
                    throw DataError(path, "unreadable PNG: \(PNGCodec.message(image))")
                }
                let w = Int(image.width), h = Int(image.height)
                do { try checkSize(w, h, path) } catch { png_image_free(&image); throw error }
                image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
                var rgb = [UInt8](repeating: 0, count: 3 * w * h)
                var black = png_color(red: 0, green: 0, blue: 0)
                let ok = rgb.withUnsafeMutableBytes { png_image_finish_read(&image, &black, $0.baseAddress, Int32(3 * w), nil) } != 0
                guard ok else {
                    let m = PNGCodec.message(image)
                    png_image_free(&image)
                    throw DataError(path, "unreadable PNG: \(m)")
                }
                return (w, h, rgb)
            }
        }
        let head = bytes.prefix(4).map { String(format: "0x%02x", $0) }.joined(separator: " ")
        throw DataError(path, "not a JPEG or PNG image (starts with \(head))")
    }

    static func checkSize(_ w: Int, _ h: Int, _ path: String) throws {
        guard w > 0, h > 0, w <= maxPixels / h else {
            throw DataError(path, "image of \(w)x\(h) pixels: empty or beyond \(maxPixels / 1_000_000) megapixels")
        }
    }

    /// `rgb` (w x h, interleaved) fitted to side x side, CHW (the rules above).
    public static func fit(rgb: [UInt8], width w: Int, height h: Int, side: Int) -> [UInt8] {
        let plane = side * side
        var out = [UInt8](repeating: 0, count: 3 * plane)
        if w == side && h == side || (side == 32 && w == 28 && h == 28) {
            let off = w == side ? 0 : 2 * side + 2
            for y in 0..<h { for x in 0..<w { for c in 0..<3 { out[c * plane + off + y * side + x] = rgb[3 * (y * w + x) + c] } } }
            return out
        }
        let s = min(w, h), x0 = (w - s) / 2, y0 = (h - s) / 2
        let wts = areaWeights(source: s, target: side)
        // Horizontal pass: [h rows of the crop][side][3], then vertical.
        var tmp = [Float](repeating: 0, count: s * side * 3)
        for y in 0..<s {
            let row = (y0 + y) * w
            for (X, taps) in wts.enumerated() {
                var acc: (Float, Float, Float) = (0, 0, 0)
                for (i, wt) in taps {
                    let p = 3 * (row + x0 + i)
                    acc.0 += wt * Float(rgb[p]); acc.1 += wt * Float(rgb[p + 1]); acc.2 += wt * Float(rgb[p + 2])
                }
                let t = 3 * (y * side + X)
                tmp[t] = acc.0; tmp[t + 1] = acc.1; tmp[t + 2] = acc.2
            }
        }
        for (Y, taps) in wts.enumerated() {
            for X in 0..<side {
                for c in 0..<3 {
                    var acc: Float = 0
                    for (i, wt) in taps { acc += wt * tmp[3 * (i * side + X) + c] }
                    out[c * plane + Y * side + X] = UInt8(max(0, min(255, acc.rounded())))
                }
            }
        }
        return out
    }

    /// For each of `target` output cells, the source pixels of 0..<source it covers and their
    /// weights (coverage / cell width, summing to 1).
    static func areaWeights(source: Int, target: Int) -> [[(Int, Float)]] {
        let scale = Double(source) / Double(target)
        return (0..<target).map { X in
            let a = Double(X) * scale, b = Double(X + 1) * scale
            var taps: [(Int, Float)] = []
            var i = Int(a.rounded(.down))
            while Double(i) < b && i < source {
                let cover = min(b, Double(i + 1)) - max(a, Double(i))
                if cover > 1e-12 { taps.append((i, Float(cover / (b - a)))) }
                i += 1
            }
            return taps
        }
    }

    /// Decodes and fits one file (see the type's rules) to side x side CHW bytes.
    public static func load(path: String, side: Int = 32) throws -> [UInt8] {
        let (w, h, rgb) = try decodeRGB(path: path)
        return fit(rgb: rgb, width: w, height: h, side: side)
    }
}
