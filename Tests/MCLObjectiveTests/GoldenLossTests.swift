import XCTest
import MCLCore
@testable import MCLObjective

/// Parses a golden case's metadata into a loss configuration (absent keys take the defaults).
func goldenConfig(_ md: [String: String], name: String) throws -> LossConfig {
    func number(_ key: String, _ fallback: Double) throws -> Double {
        guard let s = md[key] else { return fallback }
        guard let v = Double(s) else { throw SafeTensorsError("\(name): metadata \(key) = '\(s)' is not a number") }
        return v
    }
    guard let k = md["kind"], let kind = LossKind(rawValue: k) else {
        throw SafeTensorsError("\(name): unknown kind '\(md["kind"] ?? "<missing>")'")
    }
    let spaName = md["spa"] ?? SPAMode.official.rawValue
    guard let spa = SPAMode(rawValue: spaName) else { throw SafeTensorsError("\(name): unknown spa mode '\(spaName)'") }
    var floor: Double? = 1e-7
    if let f = md["floor"] { floor = f == "none" ? nil : try number("floor", 0) }
    let useAux: Bool
    switch md["use_aux"] ?? "true" {
    case "true", "True", "1": useAux = true
    case "false", "False", "0": useAux = false
    case let other: throw SafeTensorsError("\(name): use_aux = '\(other)' is not a boolean")
    }
    return LossConfig(kind: kind, spa: spa, tau: try number("tau", 0.2), alpha: try number("alpha", 0.05),
                      beta: try number("beta", 2.0), spaWeight: try number("spa_weight", 1), floor: floor,
                      useAux: useAux)
}

final class GoldenLossTests: XCTestCase {
    /// Every `loss-*` golden file: loss to 1e-5 relative, dL/dz to 1e-4 relative to its largest element.
    func testGoldenLosses() throws {
        let cases = Golden.cases(prefix: "loss-")
        XCTAssertFalse(cases.isEmpty, "no loss-* golden files in \(Golden.directory)")
        var failures: [String] = []
        for name in cases {
            do {
                let f = try Golden.open(name)
                let config = try goldenConfig(f.metadata, name: name)
                let shape = try f.shape("z")
                guard shape.count == 2 else { throw SafeTensorsError("\(name): z has shape \(shape)") }
                let (v, d) = (shape[0], shape[1])
                let z = try f.floats("z")
                let main = try f.ints("main", shape: [v]).map(Int32.init)
                let aux = try f.ints("aux", shape: [v]).map(Int32.init)
                var targets: [Int32]? = nil
                if f.has("spa_target") { targets = try f.ints("spa_target", shape: [v]).map(Int32.init) }
                if config.needsSPATargets && targets == nil {
                    throw SafeTensorsError("\(name): \(config.spa.rawValue) SPA without spa_target")
                }
                let wantLoss = try f.doubles("loss", shape: [1])[0]
                let wantGrad = try f.floats("grad_z", shape: [v, d])
                let out = mclLoss(z: z, views: v, dim: d, main: main, aux: aux, spaTargets: targets, config: config)
                let lossErr = abs(out.loss - wantLoss) / max(abs(wantLoss), 1e-30)
                let gradErr = Compare.relToMax(out.gradZ, wantGrad)
                if !(lossErr <= 1e-5) {
                    failures.append(name)
                    Golden.reportFailure(name, "loss \(out.loss) vs \(wantLoss) (rel \(lossErr))")
                } else if !(gradErr <= 1e-4) {
                    failures.append(name)
                    Golden.reportFailure(name, "grad_z rel-to-max error \(gradErr) (loss rel \(lossErr))")
                } else {
                    Golden.report(name, maxRelErr: max(lossErr, gradErr))
                }
            } catch {
                failures.append(name)
                Golden.reportFailure(name, "\(error)")
            }
        }
        XCTAssertTrue(failures.isEmpty, "golden loss cases failed: \(failures)")
    }
}
