import XCTest
import MCLCore
@testable import MCLObjective

/// A golden loss case's metadata as a loss configuration. Every field the loss reads must be in
/// the metadata; fields a kind does not read (alpha and beta for SimCLR/SupCon, the SPA mode
/// except for SPA/MCL, the SPA weight except for MCL) are set to NaN / an unused mode, so a kind
/// that read them anyway would fail its case.
func goldenConfig(_ c: GoldenCase) throws -> LossConfig {
    let kindName = try c.string("kind")
    guard let kind = LossKind(rawValue: kindName) else { throw GoldenMismatch("unknown kind '\(kindName)'") }
    let masked = kind == .ccm || kind == .spa || kind == .mcl
    let sampled = kind == .spa || kind == .mcl
    var spa = SPAMode.official
    if sampled {
        let s = try c.string("spa")
        guard let m = SPAMode(rawValue: s) else { throw GoldenMismatch("unknown spa mode '\(s)'") }
        spa = m
    }
    let floor: Double? = try c.string("floor") == "none" ? nil : try c.double("floor")
    return LossConfig(kind: kind, spa: spa, tau: try c.double("tau"),
                      alpha: masked ? try c.double("alpha") : .nan, beta: masked ? try c.double("beta") : .nan,
                      spaWeight: kind == .mcl ? try c.double("spa_weight") : .nan, floor: floor,
                      useAux: try c.bool("use_aux"))
}

final class GoldenLossTests: XCTestCase {
    /// Every listed `loss-*` case: loss to 1e-5 relative, dL/dz to 1e-4 relative to its largest element.
    func testGoldenLosses() throws {
        let failures = GoldenSet().run("loss-") { c in
            let f = c.file
            let config = try goldenConfig(c)
            let v = try c.int("views"), d = try c.int("dim")
            let z = try f.floats("z", shape: [v, d])
            let main = try f.ints("main", shape: [v]).map(Int32.init)
            let aux = try f.ints("aux", shape: [v]).map(Int32.init)
            let C = try c.int("num_main"), R = try c.int("num_aux")
            guard main.allSatisfy({ $0 >= 0 && $0 < C }), aux.allSatisfy({ $0 >= 0 && $0 < R }) else {
                throw GoldenMismatch("labels outside num_main \(C) / num_aux \(R)")
            }
            var targets: [Int32]? = nil
            if config.needsSPATargets { targets = try f.ints("spa_target", shape: [v]).map(Int32.init) }
            let wantLoss = try f.doubles("loss", shape: [1])[0]
            let wantGrad = try f.floats("grad_z", shape: [v, d])
            let out = contrastiveLoss(z: z, views: v, dim: d, main: main, aux: aux, spaTargets: targets, config: config)
            let lossErr = abs(out.loss - wantLoss) / max(abs(wantLoss), 1e-30)
            let gradErr = Compare.relToMax(out.gradZ, wantGrad)
            guard lossErr <= 1e-5 else { throw GoldenMismatch("loss \(out.loss) vs \(wantLoss) (rel \(lossErr))") }
            guard gradErr <= 1e-4 else { throw GoldenMismatch("grad_z rel-to-max error \(gradErr) (loss rel \(lossErr))") }
            return max(lossErr, gradErr)
        }
        XCTAssertTrue(failures.isEmpty, "golden loss cases failed: \(failures)")
    }
}
