import Foundation
import MCLCore
import MCLData

/// An sRGB colour, 8 bits per channel.
public struct RGB: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }
    public static let white = RGB(255, 255, 255)
    public static let black = RGB(0, 0, 0)
    public static let gray = RGB(128, 128, 128)
    public static let lightGray = RGB(225, 225, 225)
    /// Matplotlib's "tab10" cycle: blue, orange, green, red, purple, brown, pink, grey, olive, cyan.
    public static let palette: [RGB] = [
        RGB(31, 119, 180), RGB(255, 127, 14), RGB(44, 160, 44), RGB(214, 39, 40), RGB(148, 103, 189),
        RGB(140, 86, 75), RGB(227, 119, 194), RGB(127, 127, 127), RGB(188, 189, 34), RGB(23, 190, 207),
    ]
}

/// Horizontal text alignment relative to the anchor x.
public enum TextAlign: Sendable { case left, center, right }

/// A small RGB raster (origin top-left, y down) with antialiased lines, rectangles, alpha
/// blending and the built-in 5x7 bitmap font scaled by an integer factor.
public struct Canvas: Sendable {
    public let width: Int
    public let height: Int
    /// height rows of width*3 bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: RGB = .white) {
        precondition(width > 0 && height > 0)
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.r
            pixels[3 * i + 1] = background.g
            pixels[3 * i + 2] = background.b
        }
    }

    public func pixel(_ x: Int, _ y: Int) -> RGB {
        let i = 3 * (y * width + x)
        return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Blends colour c over pixel (x, y) with opacity a in [0, 1]: p <- (1 - a) p + a c.
    @inline(__always)
    public mutating func blend(_ x: Int, _ y: Int, _ c: RGB, _ a: Double = 1) {
        guard x >= 0, y >= 0, x < width, y < height, a > 0 else { return }
        let i = 3 * (y * width + x)
        if a >= 1 {
            pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
            return
        }
        func mix(_ p: UInt8, _ q: UInt8) -> UInt8 { UInt8((Double(p) * (1 - a) + Double(q) * a).rounded()) }
        pixels[i] = mix(pixels[i], c.r)
        pixels[i + 1] = mix(pixels[i + 1], c.g)
        pixels[i + 2] = mix(pixels[i + 2], c.b)
    }

    /// Fills the pixels x0..<x1, y0..<y1 (clipped).
    public mutating func fillRect(x0: Int, y0: Int, x1: Int, y1: Int, _ c: RGB, alpha: Double = 1) {
        for y in max(0, y0)..<max(max(0, y0), min(height, y1)) {
            for x in max(0, x0)..<max(max(0, x0), min(width, x1)) { blend(x, y, c, alpha) }
        }
    }

    /// One-pixel outline of the rectangle x0...x1, y0...y1.
    public mutating func strokeRect(x0: Int, y0: Int, x1: Int, y1: Int, _ c: RGB) {
        fillRect(x0: x0, y0: y0, x1: x1 + 1, y1: y0 + 1, c)
        fillRect(x0: x0, y0: y1, x1: x1 + 1, y1: y1 + 1, c)
        fillRect(x0: x0, y0: y0, x1: x0 + 1, y1: y1 + 1, c)
        fillRect(x0: x1, y0: y0, x1: x1 + 1, y1: y1 + 1, c)
    }

    /// An antialiased polyline of the given width through points in pixel coordinates (pixel
    /// centres at integer + 0.5). Coverage of a pixel = clamp(width/2 + 0.5 - distance to the
    /// path, 0, 1), maximised over segments before one blend, so joints are not darkened.
    /// `dash` = (on, off) lengths in pixels along each segment.
    public mutating func strokePolyline(_ pts: [(Double, Double)], _ c: RGB, width w: Double = 2,
                                        dash: (Double, Double)? = nil, alpha: Double = 1) {
        guard pts.count >= 2 else { return }
        var minX = width, minY = height, maxX = -1, maxY = -1
        let pad = w / 2 + 1
        for p in pts where p.0.isFinite && p.1.isFinite {
            minX = min(minX, Int((p.0 - pad).rounded(.down))); maxX = max(maxX, Int((p.0 + pad).rounded(.up)))
            minY = min(minY, Int((p.1 - pad).rounded(.down))); maxY = max(maxY, Int((p.1 + pad).rounded(.up)))
        }
        minX = max(0, minX); minY = max(0, minY); maxX = min(width - 1, maxX); maxY = min(height - 1, maxY)
        guard minX <= maxX, minY <= maxY else { return }
        let bw = maxX - minX + 1
        var cover = [Double](repeating: 0, count: bw * (maxY - minY + 1))
        for k in 0..<(pts.count - 1) {
            let (ax, ay) = pts[k], (bx, by) = pts[k + 1]
            guard ax.isFinite, ay.isFinite, bx.isFinite, by.isFinite else { continue }
            let dx = bx - ax, dy = by - ay
            let len2 = dx * dx + dy * dy
            let len = len2.squareRoot()
            let x0 = max(minX, Int((min(ax, bx) - pad).rounded(.down))), x1 = min(maxX, Int((max(ax, bx) + pad).rounded(.up)))
            let y0 = max(minY, Int((min(ay, by) - pad).rounded(.down))), y1 = min(maxY, Int((max(ay, by) + pad).rounded(.up)))
            if x0 > x1 || y0 > y1 { continue }
            for y in y0...y1 {
                for x in x0...x1 {
                    let px = Double(x) + 0.5, py = Double(y) + 0.5
                    var t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0
                    t = min(1, max(0, t))
                    if let (on, off) = dash, len > 0 {
                        let along = t * len
                        if along.truncatingRemainder(dividingBy: on + off) > on { continue }
                    }
                    let qx = ax + t * dx - px, qy = ay + t * dy - py
                    let dist = (qx * qx + qy * qy).squareRoot()
                    let cov = min(1, max(0, w / 2 + 0.5 - dist))
                    let i = (y - minY) * bw + (x - minX)
                    if cov > cover[i] { cover[i] = cov }
                }
            }
        }
        for y in minY...maxY {
            for x in minX...maxX {
                let cv = cover[(y - minY) * bw + (x - minX)]
                if cv > 0 { blend(x, y, c, cv * alpha) }
            }
        }
    }

    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: RGB,
                              width w: Double = 1, dash: (Double, Double)? = nil) {
        strokePolyline([(x0, y0), (x1, y1)], c, width: w, dash: dash)
    }

    /// Width in pixels of `text` at integer scale s (6 s per character, no trailing gap).
    public static func textWidth(_ text: String, scale s: Int = 1) -> Int {
        max(0, text.count * 6 * s - s)
    }

    public static func textHeight(scale s: Int = 1) -> Int { 7 * s }

    /// Draws `text` with its top edge at y, aligned at x; scale s multiplies the 5x7 glyphs.
    public mutating func text(_ text: String, x: Int, y: Int, scale s: Int = 1, _ c: RGB = .black,
                              align: TextAlign = .left) {
        let w = Canvas.textWidth(text, scale: s)
        var cx = align == .left ? x : align == .center ? x - w / 2 : x - w
        for ch in text {
            let rows = TinyFont.rows(ch)
            for (ry, bits) in rows.enumerated() {
                for rx in 0..<5 where bits & (1 << (4 - rx)) != 0 {
                    fillRect(x0: cx + rx * s, y0: y + ry * s, x1: cx + (rx + 1) * s, y1: y + (ry + 1) * s, c)
                }
            }
            cx += 6 * s
        }
    }

    /// Draws `text` rotated 90 degrees counter-clockwise (reading bottom to top), its glyph tops
    /// at column x, centred vertically on y (for y-axis labels).
    public mutating func textVertical(_ text: String, x: Int, y: Int, scale s: Int = 1, _ c: RGB = .black) {
        let w = Canvas.textWidth(text, scale: s)
        var cy = y + w / 2  // baseline runs upward from here
        for ch in text {
            let rows = TinyFont.rows(ch)
            for (ry, bits) in rows.enumerated() {
                for rx in 0..<5 where bits & (1 << (4 - rx)) != 0 {
                    // glyph (rx, ry) -> canvas (x + ry, cy - rx): rotated counter-clockwise
                    fillRect(x0: x + ry * s, y0: cy - (rx + 1) * s, x1: x + (ry + 1) * s, y1: cy - rx * s, c)
                }
            }
            cy -= 6 * s
        }
    }

    /// The canvas as a PNG file (libpng, through `PNGCodec`).
    public func pngData() throws -> Data { try PNGCodec.encode(pixels: pixels, width: width, height: height, channels: 3) }

    /// Writes the PNG atomically.
    public func writePNG(to path: String) throws { try AtomicFile.write(try pngData(), to: path) }
}
