import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// What an evaluation computes: the feature, the SEI ways and aggregations, R, ridge, batch, limits.
/// Which features the Gaussians are fitted to (SPEC 8).
public enum EvalFeature: String, Sendable, Codable, CaseIterable {
    /// The L2-normalised projection-head output u = z / max(||z||, 1e-12) (official).
    case projection
    /// The encoder feature after global average pooling (8w values).
    case backbone
}

/// Options of `runEvaluation` / `evaluateFeatures`.
public struct EvalOptions: Sendable {
    /// SEI ways to report, a subset of {1, 4, 8}. The test and OOD sets are encoded once under
    /// the largest requested layout (8 if requested, else 4, else 1); smaller ways use its views.
    public var seiWays: [Int]
    /// Aggregations of the multi-view ways (1-way has the single row "none").
    public var aggregations: [Aggregation]
    public var feature: EvalFeature
    /// R: 4 when the model was trained with the rotation task, 1 otherwise.
    public var rotations: Int
    /// Ridge added to every covariance (SPEC 8).
    public var ridge: Double
    /// Images (network inputs, i.e. views) per forward pass.
    public var batch: Int
    /// Use only this many training images (evenly spaced over the file, so class-sorted files
    /// keep every class); nil = all.
    public var trainLimit: Int?
    /// Use only this many images of the test set and of each OOD set (evenly spaced); nil = all.
    public var testLimit: Int?
    /// Also feed each training image horizontally flipped (in its original frame) at every
    /// rotation, as the authors' code does; off by default (SPEC 8: un-augmented images).
    public var trainFlipped: Bool
    /// Name of the in-distribution set in the report; nil = the test file's base name.
    public var inDistributionName: String?
    /// Fraction of the training images (every k-th of each class) kept out of the Gaussians' fit
    /// and scored like test images, to set the detector's threshold; 0 = fit on all, no detector.
    public var calibrationFraction: Double = 0
    /// The true-positive rate the detector's threshold keeps on those held-out images.
    public var targetTPR: Double = 0.95
    /// The scorers of the report: SEI always, and the post-hoc scorers listed (`PostHocScoring`).
    public var scorers: [Scorer] = [.sei]
    /// ODIN's temperature T and perturbation size epsilon (Liang et al.'s CIFAR-10 values).
    public var odinTemperature = 1000.0
    public var odinEpsilon = 0.0014

    public init(seiWays: [Int] = [1, 4, 8], aggregations: [Aggregation] = Aggregation.allCases,
                feature: EvalFeature = .projection, rotations: Int = 4, ridge: Double = 1e-6,
                batch: Int = 256, trainLimit: Int? = nil, testLimit: Int? = nil,
                trainFlipped: Bool = false, inDistributionName: String? = nil) {
        self.seiWays = seiWays
        self.aggregations = aggregations
        self.feature = feature
        self.rotations = rotations
        self.ridge = ridge
        self.batch = batch
        self.trainLimit = trainLimit
        self.testLimit = testLimit
        self.trainFlipped = trainFlipped
        self.inDistributionName = inDistributionName
    }

    /// The requested ways, sorted ascending without duplicates.
    public var ways: [Int] { Array(Set(seiWays)).sorted() }

    /// The SEI layout the test and OOD sets are encoded under: 8 if requested, else 4, else 1.
    public var encodedViews: Int { ways.last ?? 1 }

    /// Throws an `EvalError` describing the first invalid option.
    public func validate() throws {
        guard !seiWays.isEmpty else { throw EvalError("evaluation: no SEI ways requested (choose from 1, 4, 8)") }
        for w in seiWays where ![1, 4, 8].contains(w) {
            throw EvalError("evaluation: SEI way \(w) is not supported (choose from 1, 4, 8)")
        }
        if seiWays.contains(where: { $0 > 1 }) && aggregations.isEmpty {
            throw EvalError("evaluation: no aggregations requested for the multi-view SEI ways (choose from avg, max, wavg)")
        }
        guard rotations == 1 || rotations == 4 else {
            throw EvalError("evaluation: rotations must be 4 (model trained with the rotation task) or 1 (without), got \(rotations)")
        }
        guard ridge >= 0, ridge.isFinite else { throw EvalError("evaluation: ridge must be a finite number >= 0, got \(ridge)") }
        guard batch >= 1 else { throw EvalError("evaluation: batch must be at least 1, got \(batch)") }
        if let l = trainLimit, l < 1 { throw EvalError("evaluation: train limit must be at least 1, got \(l)") }
        if let l = testLimit, l < 1 { throw EvalError("evaluation: test limit must be at least 1, got \(l)") }
        guard calibrationFraction >= 0, calibrationFraction <= 0.5 else { throw EvalError("evaluation: calibration fraction must lie in [0, 0.5], got \(calibrationFraction)") }
        guard targetTPR > 0, targetTPR < 1 else { throw EvalError("evaluation: target TPR must lie in (0, 1), got \(targetTPR)") }
    }
}
