import Foundation
import MCLCore
import MCLNet
import MCLDistributed
import MCLData
import MCLEval

/// What `mcl-dist detect` is asked.
public struct DetectOptions: Sendable {
    public var detector: String
    /// nil = the checkpoint the detector names.
    public var checkpoint: String?
    /// Image files, folders (searched recursively for .jpg/.jpeg/.png) and packed `.mcld` files.
    public var inputs: [String]
    public enum Format: String, Sendable, CaseIterable { case csv, jsonl }
    public var format: Format = .csv
    /// nil = standard output.
    public var out: String? = nil
    /// Also output each SEI view's distance to the predicted class.
    public var views = false
    /// Unreadable images: skipped (named on stderr) or fatal.
    public var skipUnreadable = true
    public var batch = 256
    public init(detector: String, inputs: [String]) { self.detector = detector; self.inputs = inputs }
}

/// One input image: a file, or image `index` of a packed file.
struct DetectItem {
    var path: String
    var packed: (file: String, index: Int)?
    var name: String { packed.map { "\($0.file)#\($0.index)" } ?? path }
}

/// `mcl-dist detect`: scores images with a detector (`Detector`, written by `evaluate`) and the
/// checkpoint it was fitted on. Every rank expands the inputs the same way (folders recursively,
/// sorted; packed files image by image), decodes and fits its contiguous shard of whole forward
/// passes (`evalShard(align:)`, `ImageFit`), encodes it under the detector's SEI views and scores
/// it one forward pass at a time (so the output is byte-identical on any number of ranks); the per-image results are
/// summed into one array on every rank (exact doubles) and rank 0 writes them in input order as
/// CSV or JSON Lines. Returns the summary line (rank 0) for stderr.
public func runDetectJob(_ o: DetectOptions, comm: Communicator, log: (String) -> Void) throws -> String? {
    let t0 = ProcessStats.now()
    let detector = try Detector(contentsOf: o.detector)
    let checkpoint = o.checkpoint ?? detector.checkpoint
    let fingerprint = try fingerprintFile(checkpoint)
    guard fingerprint == detector.checkpointFingerprint else {
        throw ConfigError("detector \(o.detector) was fitted on the checkpoint \(detector.checkpoint) (fingerprint \(detector.checkpointFingerprint)), not on \(checkpoint) (fingerprint \(fingerprint)); use that checkpoint or fit a detector for this one with `mcl-dist evaluate`")
    }
    let (config, _) = try RunConfig.parse(yaml: detector.config, source: "\(o.detector): config")
    guard let kind = EvalFeature(rawValue: detector.feature) else { throw ConfigError("\(o.detector): unknown feature '\(detector.feature)'") }
    let model = try ResNetModel(config.model)
    try Checkpoints.load(weights: checkpoint, model: model, optimizer: nil)
    guard evalFeatureDim(model, kind) == detector.gaussians.dim, detector.classNames.count == detector.gaussians.numMain else {
        throw ConfigError("detector \(o.detector): its Gaussians have dimension \(detector.gaussians.dim) but the checkpoint's \(kind.rawValue) features have \(evalFeatureDim(model, kind))")
    }
    let items = try expandDetectInputs(o.inputs)
    guard !items.isEmpty else { throw ConfigError("detect: no images in \(o.inputs.joined(separator: ", ")) (.jpg, .jpeg, .png files, folders of them, or .mcld files)") }
    let tReady = ProcessStats.now()

    // This rank's shard, whole forward passes of the input list: decode and fit (unreadable ones
    // recorded), then encode and score.
    let V = detector.way, C = detector.gaussians.numMain
    let perForward = imagesPerForward(batch: o.batch, viewsPerImage: V)
    let mine = evalShard(count: items.count, rank: comm.rank, size: comm.size, align: perForward)
    let side = ResNetModel.inputShape[1], per = 3 * side * side
    var images: [UInt8] = [], ok: [Int] = [], failed: [(Int, String)] = []
    images.reserveCapacity(mine.count * per)
    var packedFiles: [String: PackedDataset] = [:]
    for i in mine {
        let item = items[i]
        do {
            if let (file, index) = item.packed {
                if packedFiles[file] == nil {
                    let d = try PackedDataset(path: file)
                    try d.requireShape(ResNetModel.inputShape, for: "detect input")
                    packedFiles[file] = d
                }
                images += packedFiles[file]!.image(index)
            } else {
                images += try ImageFit.load(path: item.path, side: side)
            }
            ok.append(i)
        } catch {
            failed.append((i, "\(error)"))
            FileHandle.standardError.write(Data("mcl-dist: rank \(comm.rank): \(o.skipUnreadable ? "skipping" : "cannot read") \(item.name): \(error)\n".utf8))
        }
    }
    var anyFailed = [failed.isEmpty ? 0.0 : 1.0]
    comm.allreduceMax(&anyFailed)
    if anyFailed[0] > 0 && !o.skipUnreadable {
        throw ConfigError("detect: unreadable image(s) (named above); pass --on-unreadable skip to score the others")
    }
    let tDecoded = ProcessStats.now()
    let width = 3 + V   // status (1 scored, 2 unreadable), class, score, V distances to the class
    var table = [Double](repeating: 0, count: items.count * width)
    if !ok.isEmpty {
        let raw = RawDataset(images: images, labels: [Int32](repeating: -1, count: ok.count), classNames: [])
        let data = PackedDataset(raw)
        // One forward and one scoring per block of `perForward` inputs (its readable images),
        // as on one rank: the GEMMs and the triangular solves see the same batches whatever the
        // number of ranks, so the results are bitwise the same.
        var k0 = 0
        while k0 < ok.count {
            var k1 = k0 + 1
            while k1 < ok.count && ok[k1] / perForward == ok[k0] / perForward { k1 += 1 }
            let features = encodeViewFeatures(model: model, dataset: data, indices: Array(k0..<k1)[...], ways: V, kind: kind, batch: o.batch)
            let (pred, score, D) = detector.score(viewFeatures: features, count: k1 - k0)
            for k in k0..<k1 {
                let i = ok[k], j = k - k0
                table[i * width] = 1
                table[i * width + 1] = Double(pred[j])
                table[i * width + 2] = score[j]
                let p = pred[j], base = i * width + 3
                for v in 0..<V { table[base + v] = D[(j * V + v) * C + p] }
            }
            k0 = k1
        }
    }
    for (i, _) in failed { table[i * width] = 2 }
    comm.allreduceSum(&table)
    let tScored = ProcessStats.now()
    guard comm.isRoot else { return nil }

    var text = ""
    var nIn = 0, nOut = 0, nBad = 0
    if o.format == .csv {
        text = "path,class,score,decision" + (o.views ? (0..<V).map { ",distance_view\($0)" }.joined() : "") + "\n"
    }
    for (i, item) in items.enumerated() {
        let row = table[(i * width)..<((i + 1) * width)].map { $0 }
        if row[0] != 1 { nBad += 1; continue }
        let c = Int(row[1]), s = row[2]
        let isIn = s >= detector.threshold
        if isIn { nIn += 1 } else { nOut += 1 }
        let className = detector.classNames[c]
        let distances = (0..<V).map { row[3 + $0] }
        switch o.format {
        case .csv:
            text += [csvField(item.name), csvField(className), "\(s)", isIn ? "in" : "out"].joined(separator: ",")
            if o.views { text += distances.map { ",\($0)" }.joined() }
            text += "\n"
        case .jsonl:
            var obj: [String: Any] = ["path": item.name, "class": className, "class_index": c, "score": s, "decision": isIn ? "in" : "out"]
            if o.views { obj["view_distances"] = distances }
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            text += String(decoding: d, as: UTF8.self) + "\n"
        }
    }
    if let out = o.out {
        try AtomicFile.write(Data(text.utf8), to: out)
    } else {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
    let scored = nIn + nOut
    return String(format: "detect: %d image(s): %d in, %d out%@ (threshold %.6g = %.0f%% TPR on %d held-out images; %d-way %@); %.1f images/s over %d rank(s): decode %.2f s, encode and score %.2f s (startup %.2f s)",
                  items.count, nIn, nOut, nBad > 0 ? ", \(nBad) unreadable skipped" : "", detector.threshold, 100 * detector.targetTPR,
                  detector.calibrationImages, V, detector.aggregation.rawValue,
                  Double(scored) / max(tScored - tReady, 1e-9), comm.size, tDecoded - tReady, tScored - tDecoded, tReady - t0)
}

/// A CSV field, quoted when it holds a comma, quote or line break.
func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

/// The images of the inputs, in order: a folder's image files recursively in sorted path order,
/// a packed file's images in file order, a file as itself. A missing input is an error.
func expandDetectInputs(_ inputs: [String]) throws -> [DetectItem] {
    let exts: Set<String> = ["jpg", "jpeg", "png"]
    var items: [DetectItem] = []
    for input in inputs {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else { throw ConfigError("detect: \(input): no such file or folder") }
        if isDir.boolValue {
            guard let e = FileManager.default.enumerator(atPath: input) else { throw ConfigError("detect: \(input): cannot list the folder") }
            var found: [String] = []
            while let rel = e.nextObject() as? String {
                let name = (rel as NSString).lastPathComponent
                if name.hasPrefix(".") { continue }
                if exts.contains((name as NSString).pathExtension.lowercased()) { found.append(rel) }
            }
            items += found.sorted().map { DetectItem(path: (input as NSString).appendingPathComponent($0), packed: nil) }
        } else if input.hasSuffix(".mcld") {
            let d = try PackedDataset(path: input)
            items += (0..<d.count).map { DetectItem(path: input, packed: (input, $0)) }
        } else {
            items.append(DetectItem(path: input, packed: nil))
        }
    }
    return items
}
