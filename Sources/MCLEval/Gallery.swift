import Foundation
import MCLCore

/// One image of the decision gallery with what the detector made of it, and its nearest training
/// images (by feature) with their classes.
public struct GalleryEntry: Sendable {
    /// side x side RGB, CHW.
    public var image: [UInt8]
    public var caption: [String]
    public var neighbours: [(image: [UInt8], caption: String)]
    public init(image: [UInt8], caption: [String], neighbours: [(image: [UInt8], caption: String)]) {
        self.image = image; self.caption = caption; self.neighbours = neighbours
    }
}

/// The paper's Figure 4 as a PNG: sections of rows, each row an image (enlarged `zoom` times)
/// with its caption, then its nearest training images with their classes.
public func galleryFigure(title: String, sections: [(title: String, entries: [GalleryEntry])], side: Int, zoom: Int = 3) -> Canvas {
    let cell = side * zoom, gap = 10, captionLines = 3, lineH = 10
    let rowH = cell + captionLines * lineH + 14
    let k = sections.flatMap { $0.entries.map(\.neighbours.count) }.max() ?? 0
    let width = 20 + cell + 30 + max(1, k) * (cell + gap) + 10
    let height = 40 + sections.reduce(0) { $0 + 30 + max(1, $1.entries.count) * rowH } + 10
    var cv = Canvas(width: width, height: height)
    cv.text(title, x: 20, y: 14, scale: 1)
    let maxChars = cell / 6
    func clip(_ s: String) -> String { s.count <= maxChars ? s : String(s.prefix(maxChars - 1)) + "~" }
    func draw(_ img: [UInt8], x: Int, y: Int, frame: RGB) {
        let plane = side * side
        for py in 0..<side {
            for px in 0..<side {
                let c = RGB(img[py * side + px], img[plane + py * side + px], img[2 * plane + py * side + px])
                cv.fillRect(x0: x + px * zoom, y0: y + py * zoom, x1: x + (px + 1) * zoom, y1: y + (py + 1) * zoom, c)
            }
        }
        cv.strokeRect(x0: x - 1, y0: y - 1, x1: x + cell, y1: y + cell, frame)
    }
    var y = 40
    for section in sections {
        cv.text(section.title, x: 20, y: y + 8, scale: 1)
        y += 30
        if section.entries.isEmpty { cv.text("(none)", x: 20, y: y, scale: 1, RGB(110, 110, 110)); y += rowH; continue }
        for e in section.entries {
            draw(e.image, x: 20, y: y, frame: RGB(214, 39, 40))
            for (l, line) in e.caption.prefix(captionLines).enumerated() { cv.text(clip(line), x: 20, y: y + cell + 4 + l * lineH, scale: 1) }
            for (j, n) in e.neighbours.enumerated() {
                let x = 20 + cell + 30 + j * (cell + gap)
                draw(n.image, x: x, y: y, frame: RGB(150, 150, 150))
                cv.text(clip(n.caption), x: x, y: y + cell + 4, scale: 1, RGB(60, 60, 60))
            }
            y += rowH
        }
    }
    return cv
}
