import Foundation
import MCLCore

/// "Nice" tick positions covering [lo, hi]: multiples of a step 1, 2 or 5 x 10^k chosen so that
/// about `target` ticks fall inside.
public func niceTicks(_ lo: Double, _ hi: Double, target: Int = 6) -> (ticks: [Double], step: Double) {
    guard lo.isFinite, hi.isFinite, hi > lo else { return ([lo], 1) }
    let raw = (hi - lo) / Double(max(1, target))
    let mag = pow(10, (log10(raw)).rounded(.down))
    let f = raw / mag
    let step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag
    var ticks: [Double] = []
    var t = (lo / step).rounded(.up) * step
    while t <= hi + step * 1e-9 {
        ticks.append(abs(t) < step * 1e-9 ? 0 : t)
        t += step
    }
    return (ticks, step)
}

func tickLabel(_ v: Double, step: Double) -> String {
    let decimals = max(0, Int(-(log10(step)).rounded(.down)))
    return String(format: "%.\(decimals)f", v)
}

/// The plotting box of a figure and its data ranges; maps data to pixel coordinates.
struct PlotFrame {
    var left: Int, top: Int, right: Int, bottom: Int
    var xmin: Double, xmax: Double, ymin: Double, ymax: Double

    func px(_ x: Double) -> Double { Double(left) + (x - xmin) / (xmax - xmin) * Double(right - left) }
    func py(_ y: Double) -> Double { Double(bottom) - (y - ymin) / (ymax - ymin) * Double(bottom - top) }

    /// Grid, frame, ticks with numbers, axis labels and title.
    func drawAxes(_ cv: inout Canvas, title: String, xLabel: String, yLabel: String, s: Int) {
        let xt = niceTicks(xmin, xmax), yt = niceTicks(ymin, ymax)
        for t in xt.ticks {
            let x = Int(px(t).rounded(.down))
            cv.fillRect(x0: x, y0: top, x1: x + 1, y1: bottom, .lightGray)
            cv.fillRect(x0: x, y0: bottom, x1: x + 1, y1: bottom + 3 * s, .black)
            cv.text(tickLabel(t, step: xt.step), x: x, y: bottom + 5 * s, scale: s, .black, align: .center)
        }
        for t in yt.ticks {
            let y = Int(py(t).rounded(.down))
            cv.fillRect(x0: left, y0: y, x1: right, y1: y + 1, .lightGray)
            cv.fillRect(x0: left - 3 * s, y0: y, x1: left, y1: y + 1, .black)
            cv.text(tickLabel(t, step: yt.step), x: left - 5 * s, y: y - Canvas.textHeight(scale: s) / 2,
                    scale: s, .black, align: .right)
        }
        cv.strokeRect(x0: left, y0: top, x1: right, y1: bottom, .black)
        cv.text(xLabel, x: (left + right) / 2, y: bottom + 5 * s + Canvas.textHeight(scale: s) + 6 * s,
                scale: s, .black, align: .center)
        cv.textVertical(yLabel, x: 6 * s, y: (top + bottom) / 2, scale: s, .black)
        cv.text(title, x: (left + right) / 2, y: max(2, top - Canvas.textHeight(scale: s) - 8 * s),
                scale: s, .black, align: .center)
    }

    /// A legend box in the given corner: one colour swatch and label per entry.
    func legend(_ cv: inout Canvas, _ entries: [(String, RGB, Bool)], s: Int, corner: Int) {
        guard !entries.isEmpty else { return }
        let lineH = Canvas.textHeight(scale: s) + 5 * s
        let w = entries.map { Canvas.textWidth($0.0, scale: s) }.max()! + 22 * s
        let h = entries.count * lineH + 4 * s
        let x0 = corner == 0 || corner == 3 ? left + 8 * s : right - 8 * s - w   // 0 tl, 1 tr, 2 br, 3 bl
        let y0 = corner <= 1 ? top + 8 * s : bottom - 8 * s - h
        cv.fillRect(x0: x0, y0: y0, x1: x0 + w, y1: y0 + h, .white, alpha: 0.9)
        cv.strokeRect(x0: x0, y0: y0, x1: x0 + w, y1: y0 + h, .gray)
        for (k, e) in entries.enumerated() {
            let y = y0 + 4 * s + k * lineH
            if e.2 {  // line swatch
                cv.line(Double(x0 + 4 * s), Double(y) + 3.5 * Double(s), Double(x0 + 16 * s), Double(y) + 3.5 * Double(s), e.1, width: Double(s) * 1.5)
            } else {
                cv.fillRect(x0: x0 + 4 * s, y0: y, x1: x0 + 16 * s, y1: y + 7 * s, e.1, alpha: 0.6)
            }
            cv.text(e.0, x: x0 + 20 * s, y: y, scale: s, .black)
        }
    }
}

/// One ROC curve for `rocFigure`.
public struct ROCCurveData: Sendable {
    public var name: String
    public var fpr: [Double]
    public var tpr: [Double]
    public var auroc: Double  // percent
    public init(name: String, fpr: [Double], tpr: [Double], auroc: Double) {
        self.name = name
        self.fpr = fpr
        self.tpr = tpr
        self.auroc = auroc
    }

    /// The curve of in-distribution vs one OOD set's scores (`rocCurve`, `oodMetrics`).
    public init(name: String, inScores: [Double], oodScores: [Double]) {
        let c = rocCurve(inScores: inScores, oodScores: oodScores)
        self.init(name: name, fpr: c.fpr, tpr: c.tpr, auroc: oodMetrics(inScores: inScores, oodScores: oodScores).auroc)
    }
}

/// ROC curves (FPR on x, TPR on y, both 0..1), one colour per OOD set, the chance diagonal
/// dashed, a dotted line at TPR = 0.95 (where FPR@95 is read), "name (AUROC xx.xx)" in the legend.
public func rocFigure(curves: [ROCCurveData], title: String = "ROC", width: Int = 720, height: Int = 600) -> Canvas {
    var cv = Canvas(width: width, height: height)
    let s = 2
    let f = PlotFrame(left: 110, top: 56, right: width - 30, bottom: height - 90, xmin: 0, xmax: 1, ymin: 0, ymax: 1)
    f.drawAxes(&cv, title: title, xLabel: "False positive rate (OOD accepted)", yLabel: "True positive rate (IND accepted)", s: s)
    cv.line(f.px(0), f.py(0), f.px(1), f.py(1), .gray, width: 1.5, dash: (8, 6))
    cv.line(f.px(0), f.py(0.95), f.px(1), f.py(0.95), RGB(160, 160, 160), width: 1, dash: (2, 4))
    cv.text("TPR 0.95", x: f.right - 6, y: Int(f.py(0.95)) + 5, scale: 1, .gray, align: .right)
    var legend: [(String, RGB, Bool)] = []
    for (k, c) in curves.enumerated() {
        let col = RGB.palette[k % RGB.palette.count]
        let pts = zip(c.fpr, c.tpr).map { (f.px($0), f.py($1)) }
        cv.strokePolyline(pts, col, width: 2.5)
        legend.append(("\(c.name) (AUROC \(String(format: "%.2f", c.auroc)))", col, true))
    }
    legend.append(("chance", .gray, true))
    f.legend(&cv, legend, s: s, corner: 2)
    return cv
}

/// Gaussian kernel density estimate of `xs` at `grid`, bandwidth h = 1.06 sigma n^(-1/5)
/// (Silverman's rule): p(x) = (1 / (n h)) sum_i phi((x - x_i) / h).
func kde(_ xs: [Double], grid: [Double]) -> [Double] {
    let n = Double(xs.count)
    guard xs.count >= 2 else { return grid.map { _ in 0 } }
    let mean = xs.reduce(0, +) / n
    let sd = (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
    guard sd > 0 else { return grid.map { _ in 0 } }
    let h = 1.06 * sd * pow(n, -0.2)
    let norm = 1 / (n * h * (2 * Double.pi).squareRoot())
    return grid.map { g in
        var acc = 0.0
        for x in xs { let u = (g - x) / h; if abs(u) < 8 { acc += exp(-0.5 * u * u) } }
        return acc * norm
    }
}

/// Score histograms as in the paper's Figure 5: correctly classified in-distribution samples,
/// misclassified in-distribution samples and OOD samples, each normalised to a density
/// (count / (n * bin width)), drawn as translucent bars with a kernel density curve (the "PDF").
/// The x range is the 0.5..99.5% quantile range of all scores; how many fall outside is shown.
public func scoreHistogramFigure(correctIn: [Double], wrongIn: [Double], ood: [Double],
                                 oodName: String = "OOD", title: String = "Score histogram",
                                 bins: Int = 50, width: Int = 800, height: Int = 600) -> Canvas {
    var cv = Canvas(width: width, height: height)
    let s = 2
    let groups: [(String, [Double], RGB)] = [
        ("IND correct (n=\(correctIn.count))", correctIn.filter(\.isFinite), RGB(31, 119, 180)),
        ("IND wrong (n=\(wrongIn.count))", wrongIn.filter(\.isFinite), RGB(255, 127, 14)),
        ("\(oodName) (n=\(ood.count))", ood.filter(\.isFinite), RGB(214, 39, 40)),
    ]
    let all = groups.flatMap(\.1).sorted()
    var lo = 0.0, hi = 1.0
    if !all.isEmpty {
        func q(_ p: Double) -> Double { all[min(all.count - 1, max(0, Int((p * Double(all.count - 1)).rounded())))] }
        lo = q(0.005); hi = q(0.995)
        if !(hi > lo) { lo = all.first! - 0.5; hi = all.last! + 0.5 }
        if !(hi > lo) { lo -= 0.5; hi += 0.5 }
    }
    let bw = (hi - lo) / Double(bins)
    var dens: [[Double]] = []
    var outside = 0
    for (_, xs, _) in groups {
        var h = [Double](repeating: 0, count: bins)
        for x in xs {
            if x < lo || x > hi { outside += 1; continue }
            h[min(bins - 1, Int((x - lo) / bw))] += 1
        }
        dens.append(h.map { xs.isEmpty ? 0 : $0 / (Double(xs.count) * bw) })
    }
    let gridN = 300
    let grid = (0..<gridN).map { lo + (hi - lo) * Double($0) / Double(gridN - 1) }
    let pdfs = groups.map { kde($0.1, grid: grid) }
    let ymax = max(dens.flatMap { $0 }.max() ?? 1, pdfs.flatMap { $0 }.max() ?? 1, 1e-12) * 1.08
    let f = PlotFrame(left: 120, top: 56, right: width - 30, bottom: height - 90, xmin: lo, xmax: hi, ymin: 0, ymax: ymax)
    f.drawAxes(&cv, title: title, xLabel: "score = -distance (higher = more in-distribution)", yLabel: "density", s: s)
    // Bars of all groups first, then outlines, then density curves, so no curve is hidden.
    for (g, (_, _, col)) in groups.enumerated() {
        for b in 0..<bins where dens[g][b] > 0 {
            let x0 = Int(f.px(lo + Double(b) * bw).rounded()), x1 = Int(f.px(lo + Double(b + 1) * bw).rounded())
            let y0 = Int(f.py(dens[g][b]).rounded())
            cv.fillRect(x0: x0, y0: y0, x1: x1, y1: f.bottom, col, alpha: 0.3)
        }
    }
    for (g, (_, _, col)) in groups.enumerated() {
        var pts: [(Double, Double)] = [(f.px(lo), f.py(0))]
        for b in 0..<bins {
            pts.append((f.px(lo + Double(b) * bw), f.py(dens[g][b])))
            pts.append((f.px(lo + Double(b + 1) * bw), f.py(dens[g][b])))
        }
        pts.append((f.px(hi), f.py(0)))
        cv.strokePolyline(pts, col, width: 1, alpha: 0.8)
    }
    for (g, (_, _, col)) in groups.enumerated() {
        cv.strokePolyline(zip(grid, pdfs[g]).map { (f.px($0), f.py($1)) }, col, width: 3)
    }
    cv.strokeRect(x0: f.left, y0: f.top, x1: f.right, y1: f.bottom, .black)
    // Legend in the upper corner whose side of the plot is emptier.
    let third = max(1, bins * 2 / 5)
    let leftPeak = dens.map { $0[0..<third].max() ?? 0 }.max() ?? 0
    let rightPeak = dens.map { $0[(bins - third)..<bins].max() ?? 0 }.max() ?? 0
    f.legend(&cv, groups.map { ($0.0, $0.2, false) }, s: s, corner: leftPeak <= rightPeak ? 0 : 1)
    if outside > 0 {
        cv.text("\(outside) scores outside the 0.5-99.5% range not shown", x: f.right, y: height - 16, scale: 1, .gray, align: .right)
    }
    return cv
}

/// The histogram figure of one SEI result: in-distribution samples split by pred == label.
public func scoreHistogramFigure(inScores: [Double], inPred: [Int], inLabels: [Int], oodScores: [Double],
                                 oodName: String, title: String) -> Canvas {
    precondition(inScores.count == inPred.count && inPred.count == inLabels.count)
    var ok: [Double] = [], bad: [Double] = []
    for i in 0..<inScores.count { if inPred[i] == inLabels[i] { ok.append(inScores[i]) } else { bad.append(inScores[i]) } }
    return scoreHistogramFigure(correctIn: ok, wrongIn: bad, ood: oodScores, oodName: oodName, title: title)
}

/// One line of a training-curve figure.
public struct CurveSeries: Sendable {
    public var name: String
    public var x: [Double]
    public var y: [Double]
    public var color: RGB
    public var lineWidth: Double
    public init(name: String, x: [Double], y: [Double], color: RGB, lineWidth: Double = 2) {
        self.name = name; self.x = x; self.y = y; self.color = color; self.lineWidth = lineWidth
    }
}

/// Training curves (e.g. loss per step and its moving average) on shared axes.
public func curveFigure(series: [CurveSeries], title: String, xLabel: String = "step", yLabel: String = "loss",
                        width: Int = 800, height: Int = 560) -> Canvas {
    var cv = Canvas(width: width, height: height)
    let s = max(1, width / 400)
    let xs = series.flatMap { $0.x }.filter { $0.isFinite }, ys = series.flatMap { $0.y }.filter { $0.isFinite }
    let xmin = xs.min() ?? 0, xmax = max(xs.max() ?? 1, xmin + 1)
    var ymin = ys.min() ?? 0, ymax = ys.max() ?? 1
    if ymax - ymin < 1e-9 { ymin -= 0.5; ymax += 0.5 }
    let pad = 0.05 * (ymax - ymin)
    let frame = PlotFrame(left: 70 * s, top: 30 * s, right: width - 20 * s, bottom: height - 50 * s,
                          xmin: xmin, xmax: xmax, ymin: ymin - pad, ymax: ymax + pad)
    frame.drawAxes(&cv, title: title, xLabel: xLabel, yLabel: yLabel, s: s)
    for ser in series {
        let pts = zip(ser.x, ser.y).filter { $0.1.isFinite }.map { (frame.px($0.0), frame.py($0.1)) }
        cv.strokePolyline(pts, ser.color, width: ser.lineWidth * Double(s) / 2)
    }
    frame.legend(&cv, series.map { ($0.name, $0.color, true) }, s: s, corner: 1)
    return cv
}

/// The loss-curve figure of a run from its metrics.jsonl rows: the total loss per step (light),
/// its moving average over `window` steps, and the moving averages of the CCM and SPA parts.
public func lossCurveFigure(steps: [Int], loss: [Double], ccm: [Double], spa: [Double], title: String, window: Int = 20) -> Canvas {
    func movingAverage(_ v: [Double]) -> [Double] {
        var out: [Double] = [], acc = 0.0
        for i in 0..<v.count {
            acc += v[i]
            if i >= window { acc -= v[i - window] }
            out.append(acc / Double(min(i + 1, window)))
        }
        return out
    }
    let x = steps.map(Double.init)
    var series = [CurveSeries(name: "loss", x: x, y: loss, color: RGB(170, 190, 225), lineWidth: 1),
                  CurveSeries(name: "loss (\(window)-step mean)", x: x, y: movingAverage(loss), color: RGB.palette[0], lineWidth: 2.5)]
    if ccm.contains(where: { $0 != 0 }) { series.append(CurveSeries(name: "CCM part (mean)", x: x, y: movingAverage(ccm), color: RGB.palette[1])) }
    if spa.contains(where: { $0 != 0 }) { series.append(CurveSeries(name: "SPA part (mean)", x: x, y: movingAverage(spa), color: RGB.palette[2])) }
    return curveFigure(series: series, title: title)
}
