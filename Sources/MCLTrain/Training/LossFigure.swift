import Foundation
import MCLEval

/// Draws DIR/loss.png from DIR/metrics.jsonl (also `mcl-dist plot-loss`).
@discardableResult
public func writeLossFigure(metricsPath: String, out: String, title: String) throws -> Bool {
    guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return false }
    var steps: [Int] = [], loss: [Double] = [], ccm: [Double] = [], spa: [Double] = []
    for line in text.split(separator: "\n") {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let s = obj["step"] as? Int, let l = obj["loss"] as? Double else { continue }
        steps.append(s); loss.append(l)
        ccm.append(obj["loss_ccm"] as? Double ?? 0); spa.append(obj["loss_spa"] as? Double ?? 0)
    }
    guard !steps.isEmpty else { return false }
    try lossCurveFigure(steps: steps, loss: loss, ccm: ccm, spa: spa, title: title).writePNG(to: out)
    return true
}
