import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

// Eval-mode encoding of data sets: training images at every rotation, test images under the SEI views.
/// Writes the evaluation features of the last forward (n rows) into `out` (n * dim values).
func copyFeatures(_ out: UnsafeMutablePointer<Float>, model: ResNetModel, feature: UnsafeMutablePointer<Float>,
                  z: UnsafeMutablePointer<Float>, n: Int, kind: EvalFeature) {
    switch kind {
    case .backbone:
        out.update(from: feature, count: n * model.config.featureDim)
    case .projection:
        let d = model.config.projectionDim
        for i in 0..<n {
            let src = z + i * d, dst = out + i * d
            var s: Float = 0
            for j in 0..<d { s += src[j] * src[j] }
            let inv = 1 / max(s.squareRoot(), 1e-12)
            for j in 0..<d { dst[j] = src[j] * inv }
        }
    }
}

/// The feature dimension of `kind` for `model`.
public func evalFeatureDim(_ model: ResNetModel, _ kind: EvalFeature) -> Int {
    kind == .backbone ? model.config.featureDim : model.config.projectionDim
}

/// Splits `indices` into runs of consecutive values (so the Range-based view builders apply).
func consecutiveRuns(_ indices: ArraySlice<Int>) -> [Range<Int>] {
    var runs: [Range<Int>] = []
    var start = indices.first ?? 0, prev = start - 1
    for i in indices {
        if i != prev + 1 { if prev >= start { runs.append(start..<(prev + 1)) }; start = i }
        prev = i
    }
    if !indices.isEmpty { runs.append(start..<(prev + 1)) }
    return runs
}

/// Encodes images `indices` of `dataset`, each seen in `viewsPerImage` network inputs built by
/// `makeViews(range)` ([range.count * viewsPerImage, 3, side, side]), in eval mode, at most
/// `batch` inputs per forward. Returns [indices.count * viewsPerImage, dim] features.
func encode(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>, viewsPerImage: Int,
            kind: EvalFeature, batch: Int, makeViews: (Range<Int>) -> [Float]) -> [Float] {
    let dim = evalFeatureDim(model, kind)
    let side = dataset.height, per = 3 * side * side
    var out = [Float](repeating: 0, count: indices.count * viewsPerImage * dim)
    let perForward = imagesPerForward(batch: batch, viewsPerImage: viewsPerImage)
    var pos = indices.startIndex
    var row = 0
    var input = [Float]()
    while pos < indices.endIndex {
        let end = min(pos + perForward, indices.endIndex)
        input.removeAll(keepingCapacity: true)
        for run in consecutiveRuns(indices[pos..<end]) { input += makeViews(run) }
        let n = input.count / per
        precondition(n == (end - pos) * viewsPerImage)
        input.withUnsafeBufferPointer { ip in
            let (f, z) = model.forward(ip.baseAddress!, n: n, h: side, w: side, train: false, updateRunning: false)
            out.withUnsafeMutableBufferPointer { op in
                copyFeatures(op.baseAddress! + row * dim, model: model, feature: f, z: z, n: n, kind: kind)
            }
        }
        row += n
        pos = end
    }
    return out
}

/// Training features of images `indices` at every rotation r in 0..<rotations (and flipped, when
/// `flipped`), rows ordered image, rotation[, plain/flipped]: [indices.count * R * F, dim].
public func encodeTrainingFeatures(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>,
                                   rotations: Int, flipped: Bool, kind: EvalFeature, batch: Int) -> [Float] {
    encode(model: model, dataset: dataset, indices: indices, viewsPerImage: rotations * (flipped ? 2 : 1),
           kind: kind, batch: batch) { range in
        rotatedTrainingViews(dataset: dataset, indices: range, rotations: rotations, includeFlipped: flipped).views
    }
}

/// SEI view features of images `indices` ([indices.count, ways, dim] row-major, `evalViews`).
public func encodeViewFeatures(model: ResNetModel, dataset: PackedDataset, indices: ArraySlice<Int>,
                               ways: Int, kind: EvalFeature, batch: Int) -> [Float] {
    encode(model: model, dataset: dataset, indices: indices, viewsPerImage: ways, kind: kind, batch: batch) { range in
        evalViews(dataset: dataset, indices: range, ways: ways)
    }
}
