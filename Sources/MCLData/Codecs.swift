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
/// libjpeg reports fatal errors through `error_exit`, which must not return, and Swift cannot
/// `setjmp`. JPEGs are therefore decoded on dedicated POSIX threads: `error_exit` records the
/// message, releases the decompressor and ends only that thread (`pthread_exit`); the caller joins
/// the thread and throws a `DataError` naming the file. libjpeg warnings (e.g. "Premature end of
/// JPEG file" for a truncated image) are also treated as errors, so no grey-filled image slips in.
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
        try out.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            var workers: [DecodeWorker] = []
            let chunk = (n + t - 1) / t
            for k in 0..<t {
                let lo = k * chunk, hi = min(n, lo + chunk)
                if lo >= hi { continue }
                workers.append(DecodeWorker(paths: paths, range: lo..<hi, out: base, side: side))
            }
            var started: [DecodeWorker] = []
            var startError: Error? = nil
            for w in workers {
                do { try w.start(); started.append(w) } catch { startError = error; break }
            }
            for w in started { w.join() }  // never leave a thread writing into `out`
            if let startError { throw startError }
            let failed = workers.filter { $0.failedIndex >= 0 }.min { $0.failedIndex < $1.failedIndex }
            if let f = failed { throw DataError(paths[f.failedIndex], f.failureMessage()) }
        }
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

/// One decoder thread's job: files `range` of `paths`, written into `out`.
/// All state the libjpeg callbacks touch lives in raw memory owned by this object.
final class DecodeWorker: @unchecked Sendable {
    let paths: [String]
    let range: Range<Int>
    let out: UnsafeMutablePointer<UInt8>
    let side: Int
    /// Index of the file that failed, -1 if none.
    var failedIndex = -1
    /// The failure described by Swift code (file errors, PNG, size); empty for libjpeg errors.
    var swiftFailure = ""
    let cinfo = UnsafeMutablePointer<jpeg_decompress_struct>.allocate(capacity: 1)
    let jerr = UnsafeMutablePointer<jpeg_error_mgr>.allocate(capacity: 1)
    /// libjpeg's message for an error (`error_exit`) or the first warning.
    let message = UnsafeMutablePointer<CChar>.allocate(capacity: Int(JMSG_LENGTH_MAX) + 1)
    var jpegFatal = false
    var jpegWarning = false
    var current = -1
    let finished = DispatchSemaphore(value: 0)
    var thread: pthread_t = pthread_t()
    var fileBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 16)
    var fileBufferCapacity = 1 << 16
    let rowBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 3 * 4096)

    init(paths: [String], range: Range<Int>, out: UnsafeMutablePointer<UInt8>, side: Int) {
        self.paths = paths
        self.range = range
        self.out = out
        self.side = side
        message.initialize(repeating: 0, count: Int(JMSG_LENGTH_MAX) + 1)
    }

    deinit {
        cinfo.deallocate()
        jerr.deallocate()
        message.deallocate()
        fileBuffer.deallocate()
        rowBuffer.deallocate()
    }

    func failureMessage() -> String {
        if !swiftFailure.isEmpty { return swiftFailure }
        let m = String(cString: message)
        return jpegFatal ? "unreadable JPEG: \(m)" : "corrupt JPEG: \(m)"
    }

    func start() throws {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let w = Unmanaged<DecodeWorker>.fromOpaque(arg!).takeUnretainedValue()
            w.run()
            w.finished.signal()
            return nil
        }, ctx)
        if rc != 0 {
            Unmanaged<DecodeWorker>.fromOpaque(ctx).release()
            throw DataError("cannot start a decoder thread: \(String(cString: strerror(rc)))")
        }
    }

    /// Waits for the thread (finished normally or ended by `error_exit`) and drops its reference.
    func join() {
        finished.wait()
        pthread_join(thread, nil)
        Unmanaged.passUnretained(self).release()
    }

    private func run() {
        cinfo.pointee = jpeg_decompress_struct()
        cinfo.pointee.err = jpeg_std_error(jerr)
        jerr.pointee.error_exit = { c in
            // Fatal libjpeg error: record it, free libjpeg's memory, end this thread only.
            let w = Unmanaged<DecodeWorker>.fromOpaque(c!.pointee.client_data!).takeUnretainedValue()
            c!.pointee.err.pointee.format_message(c, w.message)
            w.jpegFatal = true
            w.failedIndex = w.current
            jpeg_destroy(c)
            w.finished.signal()
            pthread_exit(nil)
        }
        jerr.pointee.emit_message = { c, level in
            guard level < 0 else { return }
            let w = Unmanaged<DecodeWorker>.fromOpaque(c!.pointee.client_data!).takeUnretainedValue()
            if !w.jpegWarning {
                c!.pointee.err.pointee.format_message(c, w.message)
                w.jpegWarning = true
            }
        }
        jpeg_CreateDecompress(cinfo, JPEG_LIB_VERSION, MemoryLayout<jpeg_decompress_struct>.size)
        cinfo.pointee.client_data = Unmanaged.passUnretained(self).toOpaque()
        defer { jpeg_destroy_decompress(cinfo) }
        for i in range {
            current = i
            if let err = decodeOne(i) {
                failedIndex = i
                swiftFailure = err
                return
            }
        }
    }

    /// Reads the file into `fileBuffer` (grown to the file's size); returns its length or an error message.
    private func readFile(_ path: String) -> (Int, String?) {
        posixReadFile(path) { size in
            if size > fileBufferCapacity {
                fileBuffer.deallocate()
                fileBufferCapacity = size
                fileBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            }
            return fileBuffer
        }
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

    private func decodeOne(_ i: Int) -> String? {
        let (size, err) = readFile(paths[i])
        if let err { return err }
        if size == 0 { return "empty file, not an image" }
        let dst = out + i * 3 * side * side
        if size >= 3 && fileBuffer[0] == 0xFF && fileBuffer[1] == 0xD8 && fileBuffer[2] == 0xFF {
            return decodeJPEG(size, dst)
        }
        if size >= 8 && fileBuffer[0] == 0x89 && fileBuffer[1] == 0x50 && fileBuffer[2] == 0x4E && fileBuffer[3] == 0x47 {
            return decodePNG(size, dst)
        }
        let head = (0..<min(4, size)).map { String(format: "0x%02x", fileBuffer[$0]) }.joined(separator: " ")
        return "not a JPEG or PNG image (starts with \(head))"
    }

    private func decodeJPEG(_ size: Int, _ dst: UnsafeMutablePointer<UInt8>) -> String? {
        jpegWarning = false
        jpeg_mem_src(cinfo, fileBuffer, UInt(size))
        _ = jpeg_read_header(cinfo, 1)
        let w = Int(cinfo.pointee.image_width), h = Int(cinfo.pointee.image_height)
        guard let offset = placement(w, h) else {
            jpeg_abort_decompress(cinfo)
            return sizeError(w, h)
        }
        cinfo.pointee.out_color_space = JCS_RGB
        _ = jpeg_start_decompress(cinfo)
        let plane = side * side
        var row: UnsafeMutablePointer<UInt8>? = rowBuffer
        while cinfo.pointee.output_scanline < cinfo.pointee.output_height {
            let y = Int(cinfo.pointee.output_scanline)
            _ = jpeg_read_scanlines(cinfo, &row, 1)
            let o = offset + y * side
            for x in 0..<w {
                dst[o + x] = rowBuffer[3 * x]
                dst[plane + o + x] = rowBuffer[3 * x + 1]
                dst[2 * plane + o + x] = rowBuffer[3 * x + 2]
            }
        }
        _ = jpeg_finish_decompress(cinfo)
        if jpegWarning { return "corrupt JPEG: \(String(cString: message))" }
        return nil
    }

    private func decodePNG(_ size: Int, _ dst: UnsafeMutablePointer<UInt8>) -> String? {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        func msg() -> String {
            withUnsafeBytes(of: image.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        if png_image_begin_read_from_memory(&image, fileBuffer, size) == 0 {
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
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let begun = data.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) } != 0
        guard begun else { throw MCLError("unreadable PNG: \(message(image))") }
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
        let w = Int(image.width), h = Int(image.height)
        var rgb = [UInt8](repeating: 0, count: 3 * w * h)
        var black = png_color(red: 0, green: 0, blue: 0)
        let ok = data.withUnsafeBytes { _ in rgb.withUnsafeMutableBytes { png_image_finish_read(&image, &black, $0.baseAddress, Int32(3 * w), nil) } }
        guard ok != 0 else {
            let msg = message(image)
            png_image_free(&image)
            throw MCLError("unreadable PNG: \(msg)")
        }
        return (w, h, rgb)
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
