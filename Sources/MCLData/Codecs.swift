import Foundation
import Dispatch
import CImageCodecs
import MCLCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Image decoding (JPEG through libjpeg, PNG through libpng's simplified API)

/// Decoding images into the packed layout: uint8 RGB, channel-major (CHW), `side` x `side`.
///
/// Rules (SPEC 7): grayscale images are replicated to 3 channels; 28x28 images are zero-padded by
/// 2 pixels on every side to 32x32; any other size is an error naming the file (resize such data
/// beforehand: silently resampling would hide a wrong input). PNG alpha is composited onto black.
///
/// JPEG errors: libjpeg reports a fatal error through `error_exit`, which must not return; the C
/// shim `mcl_jpeg_decode_rgb` (Sources/CImageCodecs/jpeg_shim.c) catches it with setjmp/longjmp
/// inside C, so no jump crosses a Swift frame, and returns libjpeg's message. libjpeg warnings
/// (e.g. "Premature end of JPEG file" for a truncated image) are errors too, so no grey-filled
/// image slips in.
public enum ImageCodec {
    /// Decodes image files (JPEG or PNG, detected by their first bytes) into one buffer of
    /// `paths.count` images of 3 x side x side bytes each, CHW, using `threads` decoder threads.
    /// Throws the error of the first (lowest-index) file that fails.
    public static func loadImages(paths: [String], side: Int = 32, threads: Int = 1) throws -> [UInt8] {
        let n = paths.count
        let per = 3 * side * side
        var out = [UInt8](repeating: 0, count: n * per)
        if n == 0 { return out }
        let t = max(1, min(threads, n / 64 + 1))
        let chunk = (n + t - 1) / t
        let failures = UnsafeMutableBufferPointer<(index: Int, message: String)?>.allocate(capacity: t)
        failures.initialize(repeating: nil)
        defer { failures.deinitialize(); failures.deallocate() }
        out.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            nonisolated(unsafe) let dst = base
            nonisolated(unsafe) let fail = failures
            DispatchQueue.concurrentPerform(iterations: t) { k in
                let decoder = ImageDecoder(side: side)
                for i in (k * chunk)..<min(n, (k + 1) * chunk) {
                    if let m = decoder.decode(path: paths[i], into: dst + i * per) { fail[k] = (i, m); return }
                }
            }
        }
        if let f = failures.compactMap({ $0 }).min(by: { $0.index < $1.index }) { throw DataError(paths[f.index], f.message) }
        return out
    }

    /// Decodes one image file (JPEG or PNG) to 3 x side x side CHW bytes.
    public static func loadImage(path: String, side: Int = 32) throws -> [UInt8] {
        try loadImages(paths: [path], side: side, threads: 1)
    }

    /// Writes an image as PNG (`PNGCodec.encode`), atomically.
    public static func writePNG(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int) throws {
        do { try AtomicFile.write(try PNGCodec.encode(pixels: pixels, width: width, height: height, channels: channels), to: path) }
        catch let e as MCLError { throw DataError(path, e.description) }
    }

    /// Encodes an image as baseline JPEG with libjpeg (`pixels` interleaved HWC, 1 or 3 channels).
    public static func writeJPEG(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int, quality: Int = 90) throws {
        precondition(channels == 1 || channels == 3)
        precondition(pixels.count == width * height * channels)
        var cinfo = jpeg_compress_struct()
        var jerr = jpeg_error_mgr()
        cinfo.err = jpeg_std_error(&jerr)
        // Encoding our own in-memory pixels cannot hit a data error; anything else is a bug.
        jerr.error_exit = { c in
            var buffer = [CChar](repeating: 0, count: Int(JMSG_LENGTH_MAX) + 1)
            c!.pointee.err.pointee.format_message(c, &buffer)
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            fatalError("libjpeg compression failed: \(text)")
        }
        jpeg_CreateCompress(&cinfo, JPEG_LIB_VERSION, MemoryLayout<jpeg_compress_struct>.size)
        var mem: UnsafeMutablePointer<UInt8>? = nil
        var memSize: UInt = 0
        jpeg_mem_dest(&cinfo, &mem, &memSize)
        cinfo.image_width = JDIMENSION(width)
        cinfo.image_height = JDIMENSION(height)
        cinfo.input_components = Int32(channels)
        cinfo.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE
        jpeg_set_defaults(&cinfo)
        jpeg_set_quality(&cinfo, Int32(quality), 1)
        jpeg_start_compress(&cinfo, 1)
        pixels.withUnsafeBufferPointer { p in
            var row: UnsafeMutablePointer<UInt8>? = nil
            while cinfo.next_scanline < cinfo.image_height {
                row = UnsafeMutablePointer(mutating: p.baseAddress! + Int(cinfo.next_scanline) * width * channels)
                _ = jpeg_write_scanlines(&cinfo, &row, 1)
            }
        }
        jpeg_finish_compress(&cinfo)
        let data = Data(bytes: mem!, count: Int(memSize))
        free(mem)
        jpeg_destroy_compress(&cinfo)
        if !FileManager.default.createFile(atPath: path, contents: data) {
            throw DataError(path, "cannot write JPEG file")
        }
    }
}

/// One decoder thread's state: a file buffer grown to the largest file read, and room for the
/// decoded RGB pixels.
final class ImageDecoder {
    let side: Int
    private var fileBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 16)
    private var capacity = 1 << 16
    private let pixels: UnsafeMutablePointer<UInt8>

    init(side: Int) {
        self.side = side
        pixels = .allocate(capacity: 3 * side * side)
    }

    deinit {
        fileBuffer.deallocate()
        pixels.deallocate()
    }

    /// Decodes one file into `dst` (3 x side x side, CHW); nil, or the error message.
    func decode(path: String, into dst: UnsafeMutablePointer<UInt8>) -> String? {
        let (size, err) = posixReadFile(path) { size in
            if size > capacity {
                fileBuffer.deallocate()
                capacity = size
                fileBuffer = .allocate(capacity: size)
            }
            return fileBuffer
        }
        if let err { return err }
        if size == 0 { return "empty file, not an image" }
        let p = UnsafePointer(fileBuffer)
        if size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF { return decodeJPEG(p, size, dst) }
        if size >= 8 && p[0] == 0x89 && p[1] == 0x50 && p[2] == 0x4E && p[3] == 0x47 { return decodePNG(p, size, dst) }
        let head = (0..<min(4, size)).map { String(format: "0x%02x", p[$0]) }.joined(separator: " ")
        return "not a JPEG or PNG image (starts with \(head))"
    }

    private func sizeError(_ w: Int, _ h: Int) -> String {
        "image is \(w)x\(h); data sets are \(side)x\(side) (28x28 is zero-padded): resize the images first"
    }

    /// Offset of the top-left pixel in the `side` x `side` plane for an image of w x h, or nil.
    private func placement(_ w: Int, _ h: Int) -> Int? {
        if w == side && h == side { return 0 }
        if side == 32 && w == 28 && h == 28 { return 2 * side + 2 }
        return nil
    }

    /// Copies interleaved RGB rows of a w x h image into the CHW plane at `offset`.
    private func place(_ rgb: UnsafePointer<UInt8>, _ w: Int, _ h: Int, at offset: Int, _ dst: UnsafeMutablePointer<UInt8>) {
        let plane = side * side
        for y in 0..<h {
            for x in 0..<w {
                let s = 3 * (y * w + x), o = offset + y * side + x
                dst[o] = rgb[s]
                dst[plane + o] = rgb[s + 1]
                dst[2 * plane + o] = rgb[s + 2]
            }
        }
    }

    private func decodeJPEG(_ data: UnsafePointer<UInt8>, _ size: Int, _ dst: UnsafeMutablePointer<UInt8>) -> String? {
        var message = [CChar](repeating: 0, count: Int(MCL_JPEG_MESSAGE_LENGTH))
        var w: Int32 = 0, h: Int32 = 0
        let rc = mcl_jpeg_read_size(data, size, &w, &h, &message)
        if rc == MCL_JPEG_FATAL { return "unreadable JPEG: \(String(cString: message))" }
        guard let offset = placement(Int(w), Int(h)) else { return sizeError(Int(w), Int(h)) }
        let d = mcl_jpeg_decode_rgb(data, size, w, h, pixels, &message)
        switch d {
        case Int32(MCL_JPEG_OK): break
        case Int32(MCL_JPEG_CORRUPT): return "corrupt JPEG: \(String(cString: message))"
        case Int32(MCL_JPEG_SIZE): return "corrupt JPEG: its size changed while decoding"
        default: return "unreadable JPEG: \(String(cString: message))"
        }
        place(pixels, Int(w), Int(h), at: offset, dst)
        return nil
    }

    private func decodePNG(_ data: UnsafePointer<UInt8>, _ size: Int, _ dst: UnsafeMutablePointer<UInt8>) -> String? {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        func msg() -> String {
            withUnsafeBytes(of: image.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        if png_image_begin_read_from_memory(&image, data, size) == 0 {
            let m = msg()
            png_image_free(&image)
            return "unreadable PNG: \(m)"
        }
        let w = Int(image.width), h = Int(image.height)
        guard let offset = placement(w, h) else {
            png_image_free(&image)
            return sizeError(w, h)
        }
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR)  // 8-bit sRGB RGB; alpha composited on black
        let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: 3 * w * h)
        defer { pixels.deallocate() }
        pixels.initialize(repeating: 0, count: 3 * w * h)
        var black = png_color(red: 0, green: 0, blue: 0)
        if png_image_finish_read(&image, &black, pixels, Int32(3 * w), nil) == 0 {
            let m = msg()
            png_image_free(&image)
            return "unreadable PNG: \(m)"
        }
        let plane = side * side
        for y in 0..<h {
            for x in 0..<w {
                let s = 3 * (y * w + x), o = offset + y * side + x
                dst[o] = pixels[s]
                dst[plane + o] = pixels[s + 1]
                dst[2 * plane + o] = pixels[s + 2]
            }
        }
        return nil
    }
}

// MARK: - PNG in memory

/// Whole PNG images in memory through libpng's simplified API: the one PNG encoder of mcl-dist
/// (figures, exported samples) and a decoder of any size.
public enum PNGCodec {
    /// Encodes interleaved (HWC) 8-bit pixels with 1 (gray) or 3 (RGB) channels.
    public static func encode(pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> Data {
        precondition(channels == 1 || channels == 3)
        precondition(pixels.count == width * height * channels)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = channels == 3 ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0
        var size: Int = 0
        let stride = Int32(width * channels)
        let sized = pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }
        var out = Data(count: size)
        let written = sized != 0 && out.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, stride, nil) } != 0
        }
        guard written else {
            let msg = message(image)
            png_image_free(&image)
            throw MCLError("cannot encode PNG: \(msg)")
        }
        return out.prefix(size)
    }

    /// Decodes a PNG to 8-bit RGB, interleaved (alpha composited on black).
    public static func decodeRGB(_ data: Data) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        // Both libpng calls read from the pointer, so both run inside one closure (it is valid
        // only there: see `ImageFit.decodeRGB`).
        try data.withUnsafeBytes { src in
            var image = png_image()
            image.version = UInt32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&image, src.baseAddress, src.count) != 0 else {
                throw MCLError("unreadable PNG: \(message(image))")
            }
            image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
            let w = Int(image.width), h = Int(image.height)
            var rgb = [UInt8](repeating: 0, count: 3 * w * h)
            var black = png_color(red: 0, green: 0, blue: 0)
            let ok = rgb.withUnsafeMutableBytes { png_image_finish_read(&image, &black, $0.baseAddress, Int32(3 * w), nil) }
            guard ok != 0 else {
                let msg = message(image)
                png_image_free(&image)
                throw MCLError("unreadable PNG: \(msg)")
            }
            return (w, h, rgb)
        }
    }

    static func message(_ image: png_image) -> String {
        withUnsafeBytes(of: image.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }
}

// MARK: - gzip

/// gzip files through zlib (`gzopen` reads plain files transparently too).
public enum Gzip {
    /// The whole (decompressed) content of a gzip or plain file.
    public static func readFile(_ path: String) throws -> [UInt8] {
        guard isRegularFile(path) else { throw DataError(path, "no such file") }
        guard let f = gzopen(path, "rb") else {
            throw DataError(path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(f) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let r = chunk.withUnsafeMutableBytes { gzread(f, $0.baseAddress, UInt32($0.count)) }
            if r < 0 {
                var code: Int32 = 0
                let m = String(cString: gzerror(f, &code)).replacingOccurrences(of: path + ": ", with: "")
                throw DataError(path, "truncated or corrupt gzip data: \(m)")
            }
            if r == 0 { break }
            result.append(contentsOf: chunk[0..<Int(r)])
        }
        // zlib reports a stream cut short as Z_BUF_ERROR ("unexpected end of file") after
        // returning the data it could decode.
        var code: Int32 = 0
        let m = String(cString: gzerror(f, &code)).replacingOccurrences(of: path + ": ", with: "")
        if code != Z_OK { throw DataError(path, "truncated or corrupt gzip data: \(m)") }
        return result
    }

    /// Writes `bytes` gzip-compressed.
    public static func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        guard let f = gzopen(path, "wb") else { throw DataError(path, "cannot create gzip file") }
        let n = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
        let rc = gzclose(f)
        if n != Int32(bytes.count) || rc != Z_OK { throw DataError(path, "gzip write failed") }
    }
}
