import Foundation
import MCLCore

/// The encoder + projector architecture (SPEC 5).
public struct ModelConfig: Codable, Sendable, Equatable {
    public var arch: String
    public var width: Int
    public var projectorHidden: Int
    public var projectionDim: Int
    /// Classes of the linear classifier on the encoder feature (`classifier.weight` [classes, 8w]);
    /// 0 = no classifier (the contrastive models).
    public var classes: Int = 0
    /// A 4-way rotation head on the encoder feature (`rotation_head.weight` [4, 8w]), the auxiliary
    /// task of Hendrycks et al. (2019).
    public var rotationHead: Bool = false

    public init(arch: String = "resnet18", width: Int = 64, projectorHidden: Int = 2048, projectionDim: Int = 128,
                classes: Int = 0, rotationHead: Bool = false) {
        self.arch = arch; self.width = width; self.projectorHidden = projectorHidden; self.projectionDim = projectionDim
        self.classes = classes; self.rotationHead = rotationHead
    }

    public static let architectures = ["resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]]

    public func blocks() throws -> [Int] {
        guard let b = ModelConfig.architectures[arch] else {
            throw ModelError("model.arch: unknown architecture '\(arch)' (expected resnet18 or resnet34)")
        }
        return b
    }

    public var featureDim: Int { 8 * width }
}

/// An invalid model configuration; the message names the key.
public typealias ModelError = MCLError

/// torchvision BasicBlock: `out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, the
/// shortcut being the identity or `bn(conv1x1, stride s)` where stride or width changes.
final class BasicBlock: @unchecked Sendable {
    let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d
    let downConv: Conv2d?, downBN: BatchNorm2d?
    let cin: Int, cout: Int, stride: Int
    let key: String
    // Saved by forward for backward.
    var x: UnsafePointer<Float>? = nil
    var n = 0, h = 0, w = 0
    var c1: UnsafeMutablePointer<Float>? = nil, a1: UnsafeMutablePointer<Float>? = nil
    var c2: UnsafeMutablePointer<Float>? = nil, out: UnsafeMutablePointer<Float>? = nil
    var cs: UnsafeMutablePointer<Float>? = nil

    init(_ store: ParameterStore, _ name: String, cin: Int, cout: Int, stride: Int) {
        self.cin = cin; self.cout = cout; self.stride = stride; key = name
        conv1 = Conv2d(store, name + ".conv1", cin: cin, cout: cout, kernel: 3, stride: stride, pad: 1)
        bn1 = BatchNorm2d(store, name + ".bn1", channels: cout)
        conv2 = Conv2d(store, name + ".conv2", cin: cout, cout: cout, kernel: 3, stride: 1, pad: 1)
        bn2 = BatchNorm2d(store, name + ".bn2", channels: cout)
        if stride != 1 || cin != cout {
            downConv = Conv2d(store, name + ".downsample.0", cin: cin, cout: cout, kernel: 1, stride: stride, pad: 0)
            downBN = BatchNorm2d(store, name + ".downsample.1", channels: cout)
        } else {
            downConv = nil; downBN = nil
        }
    }

    var convs: [Conv2d] { [conv1, conv2] + (downConv.map { [$0] } ?? []) }
    var bns: [BatchNorm2d] { [bn1, bn2] + (downBN.map { [$0] } ?? []) }

    func flops(n: Int, h: Int, w: Int) -> Double {
        let ho = conv1.outSize(h), wo = conv1.outSize(w)
        return conv1.flops(n: n, h: h, w: w) + conv2.flops(n: n, h: ho, w: wo) + (downConv?.flops(n: n, h: h, w: w) ?? 0)
    }

    func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, train: Bool, updateRunning: Bool,
                 reducer: StatReducer?, ws: Workspace) -> UnsafeMutablePointer<Float> {
        self.x = x; self.n = n; self.h = h; self.w = w
        let ho = conv1.outSize(h), wo = conv1.outSize(w)
        let m = n * ho * wo, size = cout * m
        let c1 = ws.get(key + ".c1", size), a1 = ws.get(key + ".a1", size)
        let c2 = ws.get(key + ".c2", size), out = ws.get(key + ".out", size)
        self.c1 = c1; self.a1 = a1; self.c2 = c2; self.out = out
        conv1.forward(x, n: n, h: h, w: w, c1, ws: ws)
        if train { bn1.forwardTrain(c1, m: m, a1, relu: true, reducer: reducer, updateRunning: updateRunning) }
        else { bn1.forwardEval(c1, m: m, a1, relu: true) }
        conv2.forward(a1, n: n, h: ho, w: wo, c2, ws: ws)
        // Shortcut first, so that bn2, the residual add and the ReLU run as one pass.
        var shortcut = x
        if let downConv, let downBN {
            let cs = ws.get(key + ".cs", size), s = ws.get("block.shortcut", size)
            self.cs = cs
            downConv.forward(x, n: n, h: h, w: w, cs, ws: ws)
            if train { downBN.forwardTrain(cs, m: m, s, relu: false, reducer: reducer, updateRunning: updateRunning) }
            else { downBN.forwardEval(cs, m: m, s, relu: false) }
            shortcut = UnsafePointer(s)
        }
        if train { bn2.forwardTrain(c2, m: m, out, relu: true, reducer: reducer, updateRunning: updateRunning, residual: shortcut) }
        else { bn2.forwardEval(c2, m: m, out, relu: true, residual: shortcut) }
        return out
    }

    /// Eval-mode input gradient (no parameter gradients): dOut (overwritten) -> dX, BatchNorm
    /// being `x * gamma / sqrt(running_var + eps) + shift` per channel.
    func backwardInput(dOut: UnsafeMutablePointer<Float>, dX: UnsafeMutablePointer<Float>, ws: Workspace) {
        let ho = conv1.outSize(h), wo = conv1.outSize(w)
        let m = n * ho * wo, size = cout * m
        let t1 = ws.get("grad.t1", size), t2 = ws.get("grad.t2", size)
        // relu(bn2(c2) + shortcut): mask dOut by the output once; both paths see the masked gradient.
        Elementwise.reluMask(dOut, out!, size)
        t1.update(from: dOut, count: size)
        bn2.backwardEval(dy: t1, m: m, reluOut: nil)
        conv2.backwardData(t1, n: n, h: ho, w: wo, dx: t2, accumulate: false, ws: ws)
        bn1.backwardEval(dy: t2, m: m, reluOut: a1!)
        conv1.backwardData(t2, n: n, h: h, w: w, dx: dX, accumulate: false, ws: ws)
        if let downConv, let downBN {
            downBN.backwardEval(dy: dOut, m: m, reluOut: nil)
            downConv.backwardData(dOut, n: n, h: h, w: w, dx: dX, accumulate: true, ws: ws)
        } else {
            Elementwise.add(dX, dOut, size)
        }
    }

    /// dOut (gradient w.r.t. this block's output; overwritten) -> dX (gradient w.r.t. its input).
    func backward(dOut: UnsafeMutablePointer<Float>, dX: UnsafeMutablePointer<Float>, reducer: StatReducer?, ws: Workspace) {
        let ho = conv1.outSize(h), wo = conv1.outSize(w)
        let m = n * ho * wo, size = cout * m
        let t1 = ws.get("grad.t1", size), t2 = ws.get("grad.t2", size)
        // The block ends in relu(bn2(c2) + shortcut): bn2's backward masks dOut by the block
        // output in place, so the shortcut path below sees the masked gradient too.
        bn2.backward(c2!, m: m, dy: dOut, reluOut: out!, dx: t1, reducer: reducer)
        conv2.backward(a1!, n: n, h: ho, w: wo, dy: t1, dx: t2, ws: ws)
        bn1.backward(c1!, m: m, dy: t2, reluOut: a1!, dx: t2, reducer: reducer)
        conv1.backward(x!, n: n, h: h, w: w, dy: t2, dx: dX, ws: ws)
        if let downConv, let downBN {
            downBN.backward(cs!, m: m, dy: dOut, reluOut: nil, dx: t1, reducer: reducer)
            downConv.backward(x!, n: n, h: h, w: w, dy: t1, dx: dX, accumulate: true, ws: ws)
        } else {
            Elementwise.add(dX, dOut, size)
        }
    }
}

/// ResNet-18/34 (CIFAR stem) encoder and projection head with explicit forward and backward.
///
/// Activations are CNHW internally; the input is NCHW [N, 3, 32, 32] in [0,1] and the outputs are
/// row-major `feature` [N, 8w] (after global average pooling) and `z` [N, projectionDim].
/// Parameter gradients accumulate into `store.grads` (zero them before a step), so chunks of a
/// batch can be back-propagated one after another.
public final class ResNetModel: @unchecked Sendable {
    /// The image shape [C, H, W] the training step and the evaluation feed the model.
    public static let inputShape = [3, 32, 32]
    public let config: ModelConfig
    public let store = ParameterStore()
    public let ws = Workspace()
    /// Sync BatchNorm: sums statistics across ranks. nil = per-rank statistics.
    public var reducer: StatReducer? = nil
    let stem: Conv2d, stemBN: BatchNorm2d
    let blocks: [BasicBlock]
    let fc1: Linear, fc2: Linear
    /// The heads of the supervised models (`ModelConfig.classes`, `.rotationHead`), nil otherwise.
    let classifier: Linear?, rotationHead: Linear?
    // Saved by forward.
    var n = 0, h = 0, w = 0
    var xin: UnsafeMutablePointer<Float>? = nil
    var c0: UnsafeMutablePointer<Float>? = nil, a0: UnsafeMutablePointer<Float>? = nil
    public private(set) var feature: UnsafeMutablePointer<Float>? = nil
    var h1: UnsafeMutablePointer<Float>? = nil
    public private(set) var z: UnsafeMutablePointer<Float>? = nil
    /// The last forward's class logits [n, classes] and rotation logits [n, 4] (with those heads).
    public private(set) var logits: UnsafeMutablePointer<Float>? = nil
    public private(set) var rotationLogits: UnsafeMutablePointer<Float>? = nil
    var lastTrain = false

    public init(_ config: ModelConfig) throws {
        self.config = config
        let counts = try config.blocks()
        let w = config.width
        guard w > 0, config.projectorHidden > 0, config.projectionDim > 0 else {
            throw ModelError("model: width, projector_hidden and projection_dim must be positive")
        }
        guard config.classes >= 0 && config.classes != 1 else {
            throw ModelError("model.classes: expected 0 (no classifier) or at least 2, got \(config.classes)")
        }
        stem = Conv2d(store, "enc.conv1", cin: 3, cout: w, kernel: 3, stride: 1, pad: 1)
        stemBN = BatchNorm2d(store, "enc.bn1", channels: w)
        var blocks: [BasicBlock] = []
        var cin = w
        for (stage, count) in counts.enumerated() {
            let cout = w << stage
            for b in 0..<count {
                let stride = (stage > 0 && b == 0) ? 2 : 1
                blocks.append(BasicBlock(store, "enc.layer\(stage + 1).\(b)", cin: cin, cout: cout, stride: stride))
                cin = cout
            }
        }
        self.blocks = blocks
        fc1 = Linear(store, "projector.0", inFeatures: config.featureDim, outFeatures: config.projectorHidden)
        fc2 = Linear(store, "projector.2", inFeatures: config.projectorHidden, outFeatures: config.projectionDim)
        classifier = config.classes > 0 ? Linear(store, "classifier", inFeatures: config.featureDim, outFeatures: config.classes) : nil
        rotationHead = config.rotationHead ? Linear(store, "rotation_head", inFeatures: config.featureDim, outFeatures: 4) : nil
        store.finalize()
    }

    public var convs: [Conv2d] { [stem] + blocks.flatMap { $0.convs } }
    public var batchNorms: [BatchNorm2d] { [stemBN] + blocks.flatMap { $0.bns } }
    /// The Linear layers after the encoder: projector, then the heads the model has.
    var linears: [Linear] { [fc1, fc2] + [classifier, rotationHead].compactMap { $0 } }
    /// Whether the model has a classifier (and so the post-hoc scorers apply).
    public var hasClassifier: Bool { classifier != nil }
    public var hasRotationHead: Bool { rotationHead != nil }

    /// SPEC 5 initialisation: block and shortcut convs kaiming-normal (fan_out, relu); the stem
    /// conv and Linear layers PyTorch's default kaiming-uniform(a = sqrt 5), i.e. U(-1/sqrt(fan_in),
    /// 1/sqrt(fan_in)), Linear bias likewise; BN weight 1, bias 0, running mean 0, var 1.
    public func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed, 0x1417)
        let p = store.values.ptr
        for conv in convs {
            let count = conv.cout * conv.kdim
            if conv === stem {
                let bound = Float(1.0 / Double(conv.kdim).squareRoot())
                for i in 0..<count { conv.weight[i] = (2 * rng.nextFloat() - 1) * bound }
            } else {
                let std = (2.0 / Double(conv.cout * conv.kernel * conv.kernel)).squareRoot()
                for i in 0..<count { conv.weight[i] = Float(rng.nextGaussian() * std) }
            }
        }
        for lin in linears {
            let bound = Float(1.0 / Double(lin.inFeatures).squareRoot())
            for i in 0..<(lin.inFeatures * lin.outFeatures) { p[lin.wOffset + i] = (2 * rng.nextFloat() - 1) * bound }
            for i in 0..<lin.outFeatures { p[lin.bOffset + i] = (2 * rng.nextFloat() - 1) * bound }
        }
        for bn in batchNorms { bn.initialise() }
    }

    /// Forward FLOPs (multiply-add = 2) for n images of h x w.
    public func forwardFlops(n: Int, h: Int = 32, w: Int = 32) -> Double {
        var f = stem.flops(n: n, h: h, w: w)
        var hh = h, ww = w
        for b in blocks {
            f += b.flops(n: n, h: hh, w: ww)
            hh = b.conv1.outSize(hh); ww = b.conv1.outSize(ww)
        }
        return f + linears.reduce(0) { $0 + $1.flops(n: n) }
    }

    /// Runs the network on `n` NCHW images. In train mode BN uses batch statistics (updating the
    /// running ones when `updateRunning`); in eval mode the running statistics. The weights must not
    /// change between a training forward and its `backward`.
    /// Returns pointers valid until the next forward: feature [n, 8w] and z [n, projectionDim].
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, n: Int, h: Int = 32, w: Int = 32, train: Bool,
                        updateRunning: Bool = true) -> (feature: UnsafeMutablePointer<Float>, z: UnsafeMutablePointer<Float>) {
        self.n = n; self.h = h; self.w = w; lastTrain = train
        // A training forward keeps the 4x4 layers' transformed kernels for their dX (no weight
        // changes before `backward`); inference does not hold that memory.
        for c in convs { c.keepsTransformedKernels = train && Conv2d.keepsKernelsForDataGradient }
        let wd = config.width
        let xin = ws.get("net.in", 3 * n * h * w)
        Elementwise.toCNHW(input, n: n, c: 3, hw: h * w, xin)
        self.xin = xin
        let m = n * h * w
        let c0 = ws.get("net.c0", wd * m), a0 = ws.get("net.a0", wd * m)
        self.c0 = c0; self.a0 = a0
        stem.forward(xin, n: n, h: h, w: w, c0, ws: ws)
        if train { stemBN.forwardTrain(c0, m: m, a0, relu: true, reducer: reducer, updateRunning: updateRunning) }
        else { stemBN.forwardEval(c0, m: m, a0, relu: true) }
        var x = UnsafeMutablePointer(a0)
        var hh = h, ww = w
        for b in blocks {
            x = b.forward(x, n: n, h: hh, w: ww, train: train, updateRunning: updateRunning, reducer: reducer, ws: ws)
            hh = b.conv1.outSize(hh); ww = b.conv1.outSize(ww)
        }
        let fd = config.featureDim
        let feature = ws.get("net.feature", n * fd)
        Elementwise.avgPool(x, c: fd, n: n, hw: hh * ww, feature)
        let h1 = ws.get("net.h1", n * config.projectorHidden)
        fc1.forward(feature, n: n, h1)
        Elementwise.relu(h1, h1, n * config.projectorHidden)
        let z = ws.get("net.z", n * config.projectionDim)
        fc2.forward(h1, n: n, z)
        self.feature = feature; self.h1 = h1; self.z = z
        if let classifier {
            let l = ws.get("net.logits", n * classifier.outFeatures)
            classifier.forward(feature, n: n, l)
            logits = l
        }
        if let rotationHead {
            let l = ws.get("net.rotlogits", n * 4)
            rotationHead.forward(feature, n: n, l)
            rotationLogits = l
        }
        return (feature, z)
    }

    /// Back-propagates the gradients of the last train-mode forward's outputs, accumulating every
    /// parameter's gradient into `store.grads`: dL/dz (nil: the projector is not in the loss),
    /// an extra dL/dfeature, and dL/dlogits of the classifier and of the rotation head.
    public func backward(dZ: UnsafePointer<Float>?, dFeature: UnsafePointer<Float>? = nil,
                         dLogits: UnsafePointer<Float>? = nil, dRotationLogits: UnsafePointer<Float>? = nil) {
        precondition(lastTrain, "backward needs a train-mode forward")
        let dfeat = headsBackward(dZ: dZ, dFeature: dFeature, dLogits: dLogits, dRotationLogits: dRotationLogits, weights: true)
        encoderBackward(dFeature: dfeat)
    }

    /// dL/dfeature from the projector and the heads (each output's gradient optional); their
    /// parameter gradients accumulate when `weights`.
    func headsBackward(dZ: UnsafePointer<Float>?, dFeature: UnsafePointer<Float>?, dLogits: UnsafePointer<Float>?,
                       dRotationLogits: UnsafePointer<Float>?, weights: Bool) -> UnsafeMutablePointer<Float> {
        let n = self.n
        let hid = config.projectorHidden, fd = config.featureDim
        let dfeat = ws.get("grad.feature", n * fd)
        dfeat.update(repeating: 0, count: n * fd)
        if let dZ {
            let dh1 = ws.get("grad.h1", n * hid)
            fc2.backward(h1!, n: n, dy: dZ, dx: dh1)
            Elementwise.reluMask(dh1, h1!, n * hid)
            fc1.backward(feature!, n: n, dy: dh1, dx: dfeat, accumulate: true)
        }
        for (head, dy) in [(classifier, dLogits), (rotationHead, dRotationLogits)] {
            guard let dy else { continue }
            guard let head else { preconditionFailure("a gradient for a head the model does not have") }
            if weights { head.backward(feature!, n: n, dy: dy, dx: dfeat, accumulate: true) }
            else { head.backwardInput(n: n, dy: dy, dx: dfeat) }
        }
        if let dFeature { Elementwise.add(dfeat, dFeature, n * fd) }
        return dfeat
    }

    /// The encoder's part of `backward`: from dL/dfeature down to the stem's weights.
    func encoderBackward(dFeature dfeat: UnsafeMutablePointer<Float>) {
        let n = self.n
        let fd = config.featureDim
        // Spatial size at the last stage.
        var hh = h, ww = w
        for b in blocks { hh = b.conv1.outSize(hh); ww = b.conv1.outSize(ww) }
        let maxSize = config.width * n * h * w
        var gA = ws.get("grad.A", maxSize), gB = ws.get("grad.B", maxSize)
        Elementwise.avgPoolBackward(dfeat, c: fd, n: n, hw: hh * ww, gA)
        for b in blocks.reversed() {
            b.backward(dOut: gA, dX: gB, reducer: reducer, ws: ws)
            swap(&gA, &gB)
        }
        let m = n * h * w
        stemBN.backward(c0!, m: m, dy: gA, reluOut: a0!, dx: gA, reducer: reducer)
        stem.backward(xin!, n: n, h: h, w: w, dy: gA, dx: nil, ws: ws)
    }

    /// The gradient of a function of the class logits with respect to the input images, through the
    /// last eval-mode forward (BatchNorm with its running statistics: an affine map per channel,
    /// so each layer's input gradient is exact). Parameter gradients are not touched. `dLogits` is
    /// [n, classes]; returns [n, 3, h, w] (NCHW, as the input). ODIN's perturbation uses it.
    public func inputGradient(dLogits: UnsafePointer<Float>) -> [Float] {
        precondition(!lastTrain, "inputGradient needs an eval-mode forward")
        precondition(classifier != nil, "inputGradient needs a classifier")
        let n = self.n
        let dfeat = headsBackward(dZ: nil, dFeature: nil, dLogits: dLogits, dRotationLogits: nil, weights: false)
        var hh = h, ww = w
        for b in blocks { hh = b.conv1.outSize(hh); ww = b.conv1.outSize(ww) }
        let maxSize = config.width * n * h * w
        var gA = ws.get("grad.A", maxSize), gB = ws.get("grad.B", maxSize)
        Elementwise.avgPoolBackward(dfeat, c: config.featureDim, n: n, hw: hh * ww, gA)
        for b in blocks.reversed() {
            b.backwardInput(dOut: gA, dX: gB, ws: ws)
            swap(&gA, &gB)
        }
        let m = n * h * w
        stemBN.backwardEval(dy: gA, m: m, reluOut: a0!)
        let dx = ws.get("grad.input", 3 * m)
        stem.backwardData(gA, n: n, h: h, w: w, dx: dx, accumulate: false, ws: ws)
        var out = [Float](repeating: 0, count: 3 * m)
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<n { for ch in 0..<3 { (o.baseAddress! + (b * 3 + ch) * h * w).update(from: dx + (ch * n + b) * h * w, count: h * w) } }
        }
        return out
    }
}
