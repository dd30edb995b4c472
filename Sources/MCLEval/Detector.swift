import Foundation
import MCLCore

/// A fitted out-of-distribution detector: everything `mcl-dist detect` needs besides the
/// checkpoint, written by `evaluate` next to its report.
///
/// For an image x seen in the V views of a `way`-way SEI, with features u_v (the `feature` kind
/// of the checkpoint's model), the distances D[v][c] = Mahalanobis distance of u_v to the Gaussian
/// of class c at the view's rotation, aggregated over views (`aggregation`) to A[c]; the image's
/// class is argmin_c A[c] and its score -A[class] (higher = more in-distribution). The decision is
/// "in" when score >= `threshold`, the threshold being set on held-out in-distribution images
/// (training images kept out of the Gaussians' fit) so that a fraction `targetTPR` of them is in.
///
/// File: `detector.safetensors` (tensors `means` [C, R, d] and `cholesky` [C, R, d, d] in
/// float64, `counts` [C, R] int64, `ridges` [C, R] float64; every other field as JSON in the
/// metadata key `mcl_detector`) and the same JSON beside it as `detector.json`, both written
/// atomically. numpy/PyTorch read them with `safetensors.numpy.load_file` / `json.load`.
public struct Detector: Sendable {
    public static let formatVersion = 1
    public var gaussians: ClassGaussians
    public var classNames: [String]
    /// "projection" or "backbone" (`EvalFeature` of MCLTrain).
    public var feature: String
    public var way: Int
    public var aggregation: Aggregation
    public var threshold: Double
    public var targetTPR: Double
    /// Held-out in-distribution images the threshold was set on, and the fraction of them at or
    /// above it.
    public var calibrationImages: Int
    public var calibrationTPR: Double
    /// The fingerprint (`fingerprintFile`) and path of the checkpoint the features come from.
    public var checkpointFingerprint: String
    public var checkpoint: String
    /// The resolved run configuration (YAML) of the checkpoint's model.
    public var config: String
    /// Extra facts measured when fitting (e.g. "test_tpr"), kept in the JSON.
    public var measured: [String: Double]

    public init(gaussians: ClassGaussians, classNames: [String], feature: String, way: Int, aggregation: Aggregation,
                threshold: Double, targetTPR: Double, calibrationImages: Int, calibrationTPR: Double,
                checkpointFingerprint: String, checkpoint: String, config: String, measured: [String: Double] = [:]) {
        self.gaussians = gaussians; self.classNames = classNames; self.feature = feature; self.way = way
        self.aggregation = aggregation; self.threshold = threshold; self.targetTPR = targetTPR
        self.calibrationImages = calibrationImages; self.calibrationTPR = calibrationTPR
        self.checkpointFingerprint = checkpointFingerprint; self.checkpoint = checkpoint; self.config = config
        self.measured = measured
    }

    /// The threshold that keeps a fraction >= `tpr` of `scores` (higher = more in-distribution):
    /// the k-th highest score, k = ceil(tpr * n). Returns it and the fraction actually kept.
    public static func threshold(scores: [Double], tpr: Double) throws -> (threshold: Double, kept: Double) {
        let finite = scores.filter { !$0.isNaN }
        guard !finite.isEmpty else { throw EvalError("detector: no held-out scores to set the threshold on") }
        guard tpr > 0, tpr < 1 else { throw EvalError("detector: target true-positive rate \(tpr) is not in (0, 1)") }
        let sorted = finite.sorted(by: >)
        let k = min(sorted.count, max(1, Int((tpr * Double(sorted.count)).rounded(.up))))
        let t = sorted[k - 1]
        return (t, Double(finite.filter { $0 >= t }.count) / Double(finite.count))
    }

    /// Scores T images given their view features [T, V, d] (V = `way`): the predicted class, the
    /// score (higher = more in-distribution) and the distances D [T, V, C].
    public func score(viewFeatures: [Float], count: Int) -> (pred: [Int], score: [Double], distances: [Double]) {
        let D = seiDistances(gaussians: gaussians, testViews: viewFeatures, tests: count, views: way)
        let (pred, score) = seiScores(distances: D, tests: count, views: way, classes: gaussians.numMain, aggregation: aggregation)
        return (pred, score, D)
    }

    var json: [String: Any] {
        ["format": "mcl-dist detector", "format_version": Detector.formatVersion, "class_names": classNames,
         "feature": feature, "sei_way": way, "aggregation": aggregation.rawValue, "threshold": threshold,
         "target_tpr": targetTPR, "calibration_images": calibrationImages, "calibration_tpr": calibrationTPR,
         "checkpoint_fingerprint": checkpointFingerprint, "checkpoint": checkpoint, "config": config,
         "num_classes": gaussians.numMain, "rotations": gaussians.numAux, "dim": gaussians.dim, "ridge": gaussians.ridge,
         "measured": measured, "decision": "in-distribution when score >= threshold; score = -aggregated Mahalanobis distance to the predicted class"]
    }

    /// Writes `path` (safetensors) and the JSON beside it (`.json` for `.safetensors`), atomically.
    public func write(to path: String) throws {
        let g = gaussians
        let jsonData = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        var w = SafeTensorsWriter()
        w.metadata = ["format": "pt", "producer": "mcl-dist", "mcl_detector": String(decoding: jsonData, as: UTF8.self)]
        w.add("means", shape: [g.numMain, g.numAux, g.dim], doubles: g.means)
        w.add("cholesky", shape: [g.numMain, g.numAux, g.dim, g.dim], doubles: g.cholesky)
        w.add("counts", shape: [g.numMain, g.numAux], int64s: g.counts.map(Int64.init))
        w.add("ridges", shape: [g.numMain, g.numAux], doubles: g.ridges)
        try w.write(to: path)
        try AtomicFile.write(jsonData, to: Detector.jsonPath(path))
    }

    public static func jsonPath(_ path: String) -> String {
        (path.hasSuffix(".safetensors") ? String(path.dropLast(".safetensors".count)) : path) + ".json"
    }

    /// Reads a detector, checking every field and every tensor's shape against the sizes the
    /// JSON states; errors name the file and the field.
    public init(contentsOf path: String) throws {
        let f = try SafeTensorsFile(path: path)
        func bad(_ what: String) -> EvalError { EvalError("\(path): not a valid mcl-dist detector: \(what)") }
        guard let text = f.metadata["mcl_detector"], let obj = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw bad("the metadata lacks 'mcl_detector' (a JSON object); write one with `mcl-dist evaluate`")
        }
        func int(_ k: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let n = obj[k] as? NSNumber, let v = Int(exactly: n.doubleValue), range.contains(v) else { throw bad("'\(k)' is missing or outside \(range)") }
            return v
        }
        func double(_ k: String) throws -> Double {
            guard let n = obj[k] as? NSNumber, n.doubleValue.isFinite else { throw bad("'\(k)' is missing or not a finite number") }
            return n.doubleValue
        }
        func string(_ k: String) throws -> String {
            guard let s = obj[k] as? String else { throw bad("'\(k)' is missing or not a string") }
            return s
        }
        guard try int("format_version", 0...1000) == Detector.formatVersion else { throw bad("format_version is not \(Detector.formatVersion)") }
        let C = try int("num_classes", 1...100_000), R = try int("rotations", 1...4), d = try int("dim", 1...65_536)
        guard let names = obj["class_names"] as? [String], names.count == C else { throw bad("'class_names' is not a list of \(C) names") }
        let way = try int("sei_way", 1...8)
        guard [1, 4, 8].contains(way) else { throw bad("sei_way \(way) is not 1, 4 or 8") }
        guard let agg = Aggregation(rawValue: try string("aggregation")) else { throw bad("'aggregation' is not one of avg, max, wavg") }
        let feature = try string("feature")
        guard ["projection", "backbone"].contains(feature) else { throw bad("'feature' is not projection or backbone") }
        let g = try ClassGaussians(numMain: C, numAux: R, dim: d, ridge: try double("ridge"),
                                   means: try f.doubles("means", shape: [C, R, d]),
                                   cholesky: try f.doubles("cholesky", shape: [C, R, d, d]),
                                   counts: try f.ints("counts", shape: [C, R]),
                                   ridges: try f.doubles("ridges", shape: [C, R]), warnings: [])
        guard g.means.allSatisfy(\.isFinite), g.cholesky.allSatisfy(\.isFinite), g.ridges.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw bad("a mean, Cholesky factor or ridge is not finite (or a ridge is negative)")
        }
        for k in 0..<(C * R) {
            for i in 0..<d where !(g.cholesky[(k * d + i) * d + i] > 0) {
                throw bad("Cholesky factor \(k) has a diagonal entry \(g.cholesky[(k * d + i) * d + i]) that is not positive")
            }
        }
        self.init(gaussians: g, classNames: names, feature: feature, way: way, aggregation: agg,
                  threshold: try double("threshold"), targetTPR: try double("target_tpr"),
                  calibrationImages: try int("calibration_images", 0...Int.max >> 1), calibrationTPR: try double("calibration_tpr"),
                  checkpointFingerprint: try string("checkpoint_fingerprint"), checkpoint: try string("checkpoint"),
                  config: try string("config"),
                  measured: (obj["measured"] as? [String: NSNumber])?.mapValues(\.doubleValue) ?? [:])
    }
}

/// A fingerprint of a file's bytes (FNV-1a 64, hex): equal files, equal fingerprints.
public func fingerprintFile(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw MCLError("\(path): cannot read") }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    data.withUnsafeBytes { for b in $0 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
    return String(format: "%016llx", h)
}
