import XCTest
import MCLCore
@testable import MCLObjective

/// Checks the float implementation against the double reference and central finite differences.
final class GradientCheckTests: XCTestCase {
    /// 8 images: classes 0 and 1 with rotations; image 7 (class 2) is alone, so its views have an
    /// empty B+ with the auxiliary task on or off; with it on, image 4 (1, 2) is alone too.
    static let labels: [(Int32, Int32)] = [(0, 0), (0, 0), (0, 1), (1, 0), (1, 2), (1, 0), (0, 1), (2, 3)]

    /// Every kind and SPA mode, the auxiliary task on and off, no floor / the official floor / a
    /// floor of 0.1 (active on roughly half the pairs).
    static var configs: [LossConfig] {
        var all: [LossConfig] = []
        for useAux in [true, false] {
            for floor in [nil, 1e-7, 0.1] as [Double?] {
                for kind in LossKind.allCases where !kind.isSupervised {
                    let modes: [SPAMode] = (kind == .spa || kind == .mcl) ? SPAMode.allCases : [.official]
                    for mode in modes {
                        all.append(LossConfig(kind: kind, spa: mode, tau: 0.3, alpha: 0.1, beta: 2.5,
                                              spaWeight: 0.7, floor: floor, useAux: useAux))
                    }
                }
            }
        }
        return all
    }

    func testFiniteDifferences() throws {
        let dim = 5
        var seed: UInt64 = 11
        var batch = TestBatch(imageLabels: Self.labels, dim: dim, seed: seed)
        // Keep every similarity away from the floors so the finite differences do not cross a kink.
        while !Self.clearOfKinks(batch, floors: [1e-7, 0.1], margin: 1e-3) {
            seed += 1
            batch = TestBatch(imageLabels: Self.labels, dim: dim, seed: seed)
        }
        let v = batch.views
        let zd = batch.z.map(Double.init)
        var checked = 0
        for config in Self.configs {
            let targets = sampleSPATargets(main: batch.main, aux: batch.aux, useAux: config.useAux,
                                           mode: config.spa, seed: 5, step: 3)
            if config.needsSPATargets {
                XCTAssertTrue(targets.contains(-1) && targets.contains { $0 >= 0 }, "want both kinds of targets")
            }
            let name = "\(config.kind.rawValue)/\(config.spa.rawValue) aux=\(config.useAux) floor=\(config.floor.map { "\($0)" } ?? "none")"
            let out = contrastiveLoss(z: batch.z, views: v, dim: dim, main: batch.main, aux: batch.aux,
                              spaTargets: targets, config: config)
            let ref = ReferenceLoss(z: zd, views: v, dim: dim, main: batch.main, aux: batch.aux,
                                    targets: targets, config: config)
            XCTAssertEqual(out.loss, ref.loss, accuracy: 1e-5 * abs(ref.loss), name)
            XCTAssertEqual(out.ccm, ref.ccm, accuracy: 1e-5 * max(abs(ref.ccm), 1e-3), name)
            XCTAssertEqual(out.spa, ref.spa, accuracy: 1e-5 * max(abs(ref.spa), 1e-3), name)
            if config.kind == .mcl {
                // MCL = CCM + lambda SPA (SPEC 3): the MCL kind against the two losses computed alone.
                var ccmOnly = config, spaOnly = config
                ccmOnly.kind = .ccm
                spaOnly.kind = .spa
                let c = contrastiveLoss(z: batch.z, views: v, dim: dim, main: batch.main, aux: batch.aux, spaTargets: targets, config: ccmOnly)
                let s = contrastiveLoss(z: batch.z, views: v, dim: dim, main: batch.main, aux: batch.aux, spaTargets: targets, config: spaOnly)
                XCTAssertEqual(out.loss, c.loss + config.spaWeight * s.loss, accuracy: 1e-6 * abs(out.loss), name)
                let composed = zip(c.gradZ, s.gradZ).map { Double($0) + config.spaWeight * Double($1) }
                XCTAssertLessThan(Compare.relToMax(out.gradZ.map(Double.init), composed), 1e-5, "dL/dz of MCL vs CCM + lambda SPA, \(name)")
            }
            // Central differences of the double reference.
            let h = 1e-6
            var fd = [Double](repeating: 0, count: zd.count)
            for j in 0..<zd.count {
                var zp = zd, zm = zd
                zp[j] += h
                zm[j] -= h
                let lp = ReferenceLoss(z: zp, views: v, dim: dim, main: batch.main, aux: batch.aux, targets: targets,
                                       config: config, gradRows: []).loss
                let lm = ReferenceLoss(z: zm, views: v, dim: dim, main: batch.main, aux: batch.aux, targets: targets,
                                       config: config, gradRows: []).loss
                fd[j] = (lp - lm) / (2 * h)
            }
            let implErr = Compare.relToMax(out.gradZ.map(Double.init), fd)
            let refErr = Compare.relToMax(ref.grad, fd)
            XCTAssertLessThan(implErr, 1e-4, "float dL/dz vs finite differences, \(name)")
            XCTAssertLessThan(refErr, 1e-6, "reference dL/dz vs finite differences, \(name)")
            XCTAssertGreaterThan(fd.map(abs).max()!, 1e-4, "degenerate gradient, \(name)")
            checked += 1
        }
        XCTAssertEqual(checked, 54)
    }

    /// The floor makes the gradient vanish on floored pairs: a batch whose similarities all lie
    /// below the floor has zero gradient for SimCLR.
    func testFloorBlocksGradient() {
        // Two orthogonal pairs: every off-pair similarity is 0 or negative, partners are opposite.
        let z: [Float] = [1, 0, -1, 0, 0, 1, 0, -1]
        let out = contrastiveLoss(z: z, views: 4, dim: 2, main: [0, 0, 1, 1], aux: [0, 0, 0, 0], spaTargets: nil,
                          config: LossConfig(kind: .simclr, floor: 1e-7, useAux: false))
        XCTAssertEqual(out.gradZ, [Float](repeating: 0, count: 8))
        XCTAssertEqual(out.loss, log(3), accuracy: 1e-6)  // all three logits equal 1e-7 / tau
    }

    /// A view with an empty B+ contributes 0 to SPA, and the mean still divides by 2N: checked
    /// against the formula written out by hand for a 3-image batch whose image 2 is alone.
    func testEmptyPositiveBatchDividesByAllViews() {
        let batch = TestBatch(imageLabels: [(0, 0), (0, 0), (1, 0)], dim: 4, seed: 3)
        let tau = 0.2, alpha = 0.05
        let z = batch.z.map(Double.init)
        func u(_ i: Int) -> [Double] {
            let row = Array(z[(4 * i)..<(4 * i + 4)])
            let n = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return row.map { $0 / n }
        }
        func sim(_ i: Int, _ k: Int) -> Double { zip(u(i), u(k)).reduce(0) { $0 + $1.0 * $1.1 } }
        let targets: [Int32] = [2, 3, 0, 1, -1, -1]
        var sum = 0.0
        for i in 0..<4 {
            // parent(k) != parent(i): the two views of the other class-0 image (alpha) and image 2 (1/tau).
            let others = (0..<6).filter { $0 / 2 != i / 2 }
            let denom = others.reduce(0.0) { $0 + exp(sim(i, $1) * ($1 < 4 ? alpha : 1 / tau)) }
            sum += -sim(i, Int(targets[i])) / tau + log(denom)
        }
        let config = LossConfig(kind: .spa, spa: .paperSample, tau: tau, alpha: alpha, floor: nil, useAux: false)
        let out = contrastiveLoss(z: batch.z, views: 6, dim: 4, main: batch.main, aux: batch.aux, spaTargets: targets, config: config)
        XCTAssertEqual(out.loss, sum / 6, accuracy: 1e-6)
        XCTAssertEqual(out.spa, sum / 6, accuracy: 1e-6)
        XCTAssertEqual(out.ccm, 0)
        XCTAssertEqual(sampleSPATargets(main: batch.main, aux: batch.aux, useAux: false, mode: .official, seed: 1, step: 1),
                       [2, 3, 0, 1, -1, -1])
    }

    static func clearOfKinks(_ b: TestBatch, floors: [Double], margin: Double) -> Bool {
        let z = b.z.map(Double.init)
        let d = b.dim
        for i in 0..<b.views {
            for k in 0..<i {
                var dot = 0.0, ni = 0.0, nk = 0.0
                for q in 0..<d {
                    dot += z[i * d + q] * z[k * d + q]
                    ni += z[i * d + q] * z[i * d + q]
                    nk += z[k * d + q] * z[k * d + q]
                }
                let s = dot / (ni * nk).squareRoot()
                if floors.contains(where: { abs(s - $0) < margin }) { return false }
            }
        }
        return true
    }
}
