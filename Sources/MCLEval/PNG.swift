import Foundation
import CImageCodecs
import MCLCore

/// A minimal PNG encoder: 8-bit truecolour (colour type 2), no interlace, filter type 0 (None) on
/// every scanline, the scanlines deflated by zlib (`compress2`) into one IDAT chunk.
///
/// File = signature 89 50 4E 47 0D 0A 1A 0A, then chunks IHDR, IDAT, IEND; each chunk is
/// length (4 bytes, big-endian) | type (4) | data | CRC-32 (ISO 3309, over type and data).
public enum PNGEncoder {
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// CRC-32 (reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF).
    public static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8)
        }
        return c ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Encodes `rgb` (height rows of width*3 bytes, top row first) as a PNG file.
    public static func encode(width: Int, height: Int, rgb: [UInt8], level: Int32 = 6) -> Data {
        precondition(width > 0 && height > 0 && rgb.count == width * height * 3,
                     "PNG: \(rgb.count) bytes for \(width)x\(height) RGB")
        var out = Data(signature)
        var ihdr = Data()
        ihdr.appendBE(UInt32(width))
        ihdr.appendBE(UInt32(height))
        ihdr.append(contentsOf: [8, 2, 0, 0, 0])  // bit depth 8, truecolour, deflate, filter set 0, no interlace
        appendChunk(&out, "IHDR", ihdr)

        let stride = width * 3
        var raw = [UInt8](repeating: 0, count: height * (stride + 1))
        for y in 0..<height {
            raw[y * (stride + 1)] = 0  // filter type None
            for x in 0..<stride { raw[y * (stride + 1) + 1 + x] = rgb[y * stride + x] }
        }
        var destLen = compressBound(uLong(raw.count))
        var dest = [UInt8](repeating: 0, count: Int(destLen))
        let rc = compress2(&dest, &destLen, raw, uLong(raw.count), level)
        precondition(rc == Z_OK, "zlib compress2 failed with \(rc)")
        appendChunk(&out, "IDAT", Data(dest[0..<Int(destLen)]))
        appendChunk(&out, "IEND", Data())
        return out
    }

    static func appendChunk(_ out: inout Data, _ type: String, _ data: Data) {
        out.appendBE(UInt32(data.count))
        var body = Data(type.utf8)
        body.append(data)
        out.append(body)
        out.appendBE(crc32(body))
    }
}

extension Data {
    mutating func appendBE(_ v: UInt32) {
        append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)])
    }
}
