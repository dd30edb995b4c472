import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

/// What `mcl-dist embed` is asked.
public struct EmbedOptions: Sendable {
    public var configPath: String
    public var overrides: [String] = []
    public var checkpoint: String
    public var data: String
    public var out: String
    /// Views per image: 1 (the image as is), 4 (rotations) or 8 (rotations x flip), SEI's layout.
    public var views = 1
    public var batch = 256
    public init(configPath: String, checkpoint: String, data: String, out: String) {
        self.configPath = configPath; self.checkpoint = checkpoint; self.data = data; self.out = out
    }
}

/// `mcl-dist embed`: the features of a packed data set for the user's own tools (t-SNE, UMAP:
/// the paper's Figure 1), one safetensors file: `projection` [N, V, d] (the L2-normalised
/// projection u the Gaussians use), `backbone` [N, V, 8w] (after global average pooling), `labels`
/// [N] int32 (-1 unlabelled); metadata `class_names` (JSON list), `views`, `checkpoint`,
/// `data`. Every rank encodes its contiguous shard in eval mode; rank 0 writes the file
/// atomically. Returns a summary line on rank 0.
public func runEmbedJob(_ o: EmbedOptions, comm: Communicator) throws -> String? {
    guard [1, 4, 8].contains(o.views) else { throw ConfigError("--views: \(o.views) is not 1, 4 or 8") }
    let (config, _) = try RunConfig.load(path: o.configPath, overrides: o.overrides)
    let model = try ResNetModel(config.model)
    try Checkpoints.load(weights: o.checkpoint, model: model, optimizer: nil)
    let data = try PackedDataset(path: o.data)
    try data.requireShape(ResNetModel.inputShape, for: "--data")
    let t0 = ProcessStats.now()
    let V = o.views, dz = model.config.projectionDim, df = model.config.featureDim
    let perForward = imagesPerForward(batch: o.batch, viewsPerImage: V)
    let mine = evalShard(count: data.count, rank: comm.rank, size: comm.size, align: perForward)
    let side = data.height, per = 3 * side * side
    var proj = [Float](), back = [Float]()
    proj.reserveCapacity(mine.count * V * dz); back.reserveCapacity(mine.count * V * df)
    var lo = mine.lowerBound
    while lo < mine.upperBound {
        let hi = min(mine.upperBound, lo + perForward)
        let input = evalViews(dataset: data, indices: lo..<hi, ways: V)
        let n = input.count / per
        input.withUnsafeBufferPointer { ip in
            let (f, z) = model.forward(ip.baseAddress!, n: n, h: side, w: side, train: false, updateRunning: false)
            var u = [Float](repeating: 0, count: n * dz)
            u.withUnsafeMutableBufferPointer { copyFeatures($0.baseAddress!, model: model, feature: f, z: z, n: n, kind: .projection) }
            proj += u
            back += UnsafeBufferPointer(start: f, count: n * df)
        }
        lo = hi
    }
    let allProj = comm.allgatherv(proj), allBack = comm.allgatherv(back)
    guard comm.isRoot else { return nil }
    var w = SafeTensorsWriter()
    let names = try JSONSerialization.data(withJSONObject: data.classNames)
    w.metadata = ["producer": "mcl-dist embed", "class_names": String(decoding: names, as: UTF8.self), "views": "\(V)",
                  "checkpoint": o.checkpoint, "data": o.data,
                  "view_order": V == 1 ? "as is" : V == 4 ? "rotation 0, 90, 180, 270 degrees" : "rotation v/2, odd views flipped"]
    w.add("projection", shape: [data.count, V, dz], floats: allProj)
    w.add("backbone", shape: [data.count, V, df], floats: allBack)
    w.add("labels", shape: [data.count], int32s: data.labels)
    try w.write(to: o.out)
    return String(format: "embed: %d images x %d view(s) of %@ -> %@ (projection %d, backbone %d values each) in %.1f s over %d rank(s)",
                  data.count, V, o.data, o.out, dz, df, ProcessStats.now() - t0, comm.size)
}
