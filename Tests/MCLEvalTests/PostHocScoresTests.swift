import XCTest
import MCLCore
@testable import MCLEval

/// Known answers of the post-hoc scorers' formulas.
final class PostHocScoresTests: XCTestCase {
    func testMaxSoftmaxKnownAnswers() {
        // softmax([0, ln 3, 0]) = [1/5, 3/5, 1/5]; at T = 2: [1, sqrt 3, 1] / (2 + sqrt 3).
        let l: [Float] = [0, Float(log(3.0)), 0, 5, -1, 2]
        let (s, p) = maxSoftmaxScores(logits: l, count: 2, classes: 3)
        XCTAssertEqual(s[0], 0.6, accuracy: 1e-7)
        XCTAssertEqual(p, [1, 0])
        XCTAssertEqual(s[1], exp(5) / (exp(5) + exp(-1) + exp(2)), accuracy: 1e-7)
        let (t, _) = maxSoftmaxScores(logits: l, count: 2, classes: 3, temperature: 2)
        XCTAssertEqual(t[0], 3.0.squareRoot() / (2 + 3.0.squareRoot()), accuracy: 1e-7)
    }

    func testRotationScoreKnownAnswers() {
        // Image 0: uniform class prediction (KL = 0), each rotation predicted with p = 3/6 = 1/2
        // (CE = ln 2): score -ln 2. Image 1: p = [0.9, 0.1] (KL(U||p) = -ln 2 - (ln 0.9 + ln 0.1) / 2),
        // every rotation certain-ish: logits 20 on the true rotation.
        let c: [Float] = [0, 0, Float(log(9.0)), 0]
        var q = [Float](repeating: 0, count: 2 * 16)
        for r in 0..<4 { q[r * 4 + r] = Float(log(3.0)); q[16 + r * 4 + r] = 20 }
        let s = rotationScores(classLogits: c, rotationLogits: q, count: 2, classes: 2)
        XCTAssertEqual(s[0], -log(2.0), accuracy: 1e-6)
        let kl = -log(2.0) - (log(0.9) + log(0.1)) / 2
        let ce = log(exp(20.0) + 3) - 20
        XCTAssertEqual(s[1], kl - ce, accuracy: 1e-6)
    }

    func testTiedGaussianKnownAnswers() throws {
        // Two classes of 4 points at (+-1, +-1) around (1, 1) and (11, 1): the pooled covariance
        // (1/n sum of centred outer products) is the identity.
        let pts: [[Float]] = [[0, 0], [2, 0], [0, 2], [2, 2], [10, 0], [12, 0], [10, 2], [12, 2]]
        let g = try TiedGaussian(features: pts.flatMap { $0 }, labels: [0, 0, 0, 0, 1, 1, 1, 1], numClasses: 2, dim: 2, ridge: 0)
        let cov = g.gaussians.covariance(main: 0, aux: 0)
        for (i, want) in [1.0, 0, 0, 1].enumerated() { XCTAssertEqual(cov[i], want, accuracy: 1e-12) }
        XCTAssertEqual(g.gaussians.covariance(main: 1, aux: 0), cov, "one covariance for every class")
        let (s, p) = g.scores([1, 1, 6, 1, 11, 3], count: 3)
        XCTAssertEqual(s[0], 0, accuracy: 1e-9); XCTAssertEqual(s[1], -25, accuracy: 1e-9); XCTAssertEqual(s[2], -4, accuracy: 1e-9)
        XCTAssertEqual(p[0], 0); XCTAssertEqual(p[2], 1)
        // A stretched second coordinate: variance 4 along y (points at y = -1, 3 around 1).
        let tall: [[Float]] = [[0, -1], [2, -1], [0, 3], [2, 3]]
        let h = try TiedGaussian(features: tall.flatMap { $0 }, labels: [0, 0, 0, 0], numClasses: 1, dim: 2, ridge: 0)
        XCTAssertEqual(h.scores([1, 5], count: 1).score[0], -4, accuracy: 1e-9)   // (5 - 1)^2 / 4
    }
}
