import Foundation
import MCLCore
import CDirectConv

/// A bias-free 2-D convolution on activations in CNHW layout ([channels][batch][height][width]).
///
/// Forward: `Y[co, (n,oh,ow)] = sum_{ci,i,j} W[co, ci, i, j] * X[ci, n, oh*s - p + i, ow*s - p + j]`,
/// computed as one GEMM `Y = W · col(X)` per chunk of images, where `col(X)` is the im2col matrix
/// `[Cin*k*k, n*Ho*Wo]`. CNHW makes the GEMM output land directly in the output layout.
/// Backward: `dW += dY · col(X)^T`, `dcol = W^T · dY`, `dX = col2im(dcol)`. The im2col matrix is
/// rebuilt in backward instead of being stored, which keeps activation memory at one tensor per layer.
/// Weights are PyTorch's OIHW, i.e. a row-major `[Cout, Cin*k*k]` matrix.
public final class Conv2d: @unchecked Sendable {
    public let cin: Int, cout: Int, kernel: Int, stride: Int, pad: Int
    public let name: String
    let store: ParameterStore
    let wOffset: Int
    /// im2col chunks are capped at this many floats (bounds scratch memory independent of batch).
    nonisolated(unsafe) public static var colBudget = Int(ProcessInfo.processInfo.environment["MCL_COL_BUDGET"] ?? "") ?? 12 * 1024 * 1024
    /// Batch-partition-invariant forward: one GEMM per image (and per row in Linear), so an
    /// image's activations are bitwise the same whatever batch or rank shard it is computed in.
    /// OpenBLAS's result for a column depends on where the column falls in the call's N
    /// blocking, which otherwise perturbs activations by float rounding between np=1 and np=N.
    nonisolated(unsafe) public static var deterministic = false
    /// Stride-1 3x3 convolutions use Winograd (`Winograd`, `Winograd4`) unless deterministic mode
    /// is on or `MCL_WINOGRAD=0` (im2col + GEMM then, e.g. to measure the difference).
    nonisolated(unsafe) public static var winograd = ProcessInfo.processInfo.environment["MCL_WINOGRAD"] != "0"
    /// Stride-2 im2col / col2im through padded rows in C (`Sources/CDirectConv/im2col_s2.c`) unless
    /// `MCL_STRIDE2_KERNELS=0` (the Swift loops then, e.g. to compare).
    nonisolated(unsafe) public static var stride2Kernels = ProcessInfo.processInfo.environment["MCL_STRIDE2_KERNELS"] != "0"

    /// Whether the forward on 4x4 maps (F(4x4), one tile per image) keeps its transformed kernels U
    /// for the dX that follows it, which then needs no kernel transform of its own (`Winograd.convolve`'s
    /// `flipped`): 37.7 MB written per 512-channel layer and pass, 3.75 ms on one thread. Set by
    /// `ResNetModel`, whose training step changes no weight between a forward and its backward; the
    /// kept U serves one dX and is recomputed by every forward.
    public var keepsTransformedKernels = false
    /// `MCL_WINOGRAD_KEEP_KERNELS=0`: `ResNetModel` keeps no kernels (dX transforms its own).
    nonisolated(unsafe) public static var keepsKernelsForDataGradient =
        ProcessInfo.processInfo.environment["MCL_WINOGRAD_KEEP_KERNELS"] != "0"
    private var keptKernels: FloatBuffer?
    private var keptKernelsValid = false
    /// Whether the last Winograd dX on 4x4 maps used the kept kernels (for the tests).
    private(set) var reusedKeptKernels = false

    public init(_ store: ParameterStore, _ name: String, cin: Int, cout: Int, kernel: Int, stride: Int, pad: Int) {
        self.store = store; self.name = name
        self.cin = cin; self.cout = cout; self.kernel = kernel; self.stride = stride; self.pad = pad
        wOffset = store.addParam(name + ".weight", [cout, cin, kernel, kernel])
    }

    public var kdim: Int { cin * kernel * kernel }
    public func outSize(_ h: Int) -> Int { (h + 2 * pad - kernel) / stride + 1 }
    var weight: UnsafeMutablePointer<Float> { store.values.ptr + wOffset }
    var weightGrad: UnsafeMutablePointer<Float> { store.grads.ptr + wOffset }
    /// A 1x1 stride-1 unpadded convolution reads its input directly as the GEMM operand.
    var isPointwise: Bool { kernel == 1 && stride == 1 && pad == 0 }
    func usesDirect(h: Int, w: Int) -> Bool {
        !Conv2d.deterministic && DirectConv.applies(kernel: kernel, stride: stride, pad: pad, cin: cin, cout: cout, w: w)
    }
    /// The direct stride-2 kernels (`DirectConv.appliesStride2`: 3x3 stride 2 on 32x32 or 16x16 inputs, AVX2).
    func usesDirectStride2(h: Int, w: Int) -> Bool {
        !Conv2d.deterministic && DirectConv.appliesStride2(kernel: kernel, stride: stride, pad: pad, h: h, w: w)
    }
    func usesWinograd(h: Int, w: Int) -> Bool {
        Conv2d.winograd && !Conv2d.deterministic
            && Winograd.applies(kernel: kernel, stride: stride, pad: pad, cin: cin, h: h, w: w)
    }

    /// Whether dW takes Winograd's path: on every Winograd layer, and on direct layers with more
    /// than `DirectConv.maxWeightGradientChannels` channels (by default none: see there).
    func usesWinogradWeightGradient(h: Int, w: Int) -> Bool {
        usesWinograd(h: h, w: w) && (!usesDirect(h: h, w: w) || max(cin, cout) > DirectConv.maxWeightGradientChannels)
    }

    /// FLOPs (multiply-add = 2) of the forward pass for `n` images of size h x w.
    public func flops(n: Int, h: Int, w: Int) -> Double {
        let ho = outSize(h), wo = outSize(w)
        return 2.0 * Double(cout * kdim) * Double(n * ho * wo)
    }

    func chunkImages(n: Int, ho: Int, wo: Int) -> Int {
        max(1, min(n, Conv2d.colBudget / max(1, kdim * ho * wo)))
    }

    /// y[cout][n][ho][wo] = conv(x[cin][n][h][w]).
    public func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, _ y: UnsafeMutablePointer<Float>, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w)
        let total = n * ho * wo
        if isPointwise && !Conv2d.deterministic {
            sgemm(transA: false, transB: false, m: cout, n: total, k: cin, a: weight, lda: cin, b: x, ldb: n * h * w, beta: 0, c: y, ldc: total)
            return
        }
        if usesDirect(h: h, w: w) {
            DirectConv.forward(x, cin: cin, n: n, h: h, w: w, weights: weight, cout: cout, y, accumulate: false, ws: ws)
            return
        }
        if usesDirectStride2(h: h, w: w) {
            DirectConv.forwardStride2(x, cin: cin, n: n, h: h, weights: weight, cout: cout, y, accumulate: false, ws: ws)
            return
        }
        if usesWinograd(h: h, w: w) {
            winograd(x, n: n, h: h, w: w, transposeFlip: false, y, accumulate: false, ws: ws)
            return
        }
        if Conv2d.usesThreadChunks {
            forwardChunks(x, n: n, h: h, w: w, y, ws: ws)
            return
        }
        let chunk = Conv2d.deterministic ? 1 : chunkImages(n: n, ho: ho, wo: wo)
        let col = ws.get("conv.col", kdim * chunk * ho * wo)
        var n0 = 0
        while n0 < n {
            let cn = min(chunk, n - n0)
            im2col(x, n: n, h: h, w: w, n0: n0, cn: cn, ho: ho, wo: wo, col: col)
            sgemm(transA: false, transB: false, m: cout, n: cn * ho * wo, k: kdim, a: weight, lda: kdim,
                  b: col, ldb: cn * ho * wo, beta: 0, c: y + n0 * ho * wo, ldc: total)
            n0 += cn
        }
    }

    /// Accumulates dW and writes (or, with `accumulate`, adds) dX. `dx` may be nil (the stem).
    public func backward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false, ws: Workspace) {
        backwardWeights(x, n: n, h: h, w: w, dy: dy, ws: ws)
        if let dx { backwardData(dy, n: n, h: h, w: w, dx: dx, accumulate: accumulate, ws: ws) }
    }

    /// Which algorithm the layer uses on an h x w input: "pointwise" (a 1x1 GEMM), "direct"
    /// (`DirectConv`), "dir/wino" (direct forward and dX, Winograd dW), "dir/im2col" (stride-2
    /// direct forward and dX, im2col + GEMM dW beyond 32 channels), "winograd"
    /// (F(2x2, 3x3)), "wino4" (F(4x4, 3x3)), "wino4/2" (F(4x4) forward and dX, F(2x2) dW),
    /// "wino2/4" (F(2x2) forward and dX, F(4x4) dW) or "im2col" (im2col +
    /// GEMM; dX of a stride-1 "same" layer as a transposed convolution, of a strided one as GEMM +
    /// col2im).
    public func algorithm(h: Int, w: Int) -> String {
        if isPointwise && !Conv2d.deterministic { return "pointwise" }
        if usesDirect(h: h, w: w) { return usesWinogradWeightGradient(h: h, w: w) ? "dir/wino" : "direct" }
        if usesDirectStride2(h: h, w: w) { return max(cin, cout) <= DirectConv.maxWeightGradientChannels ? "direct" : "dir/im2col" }
        if usesWinograd(h: h, w: w) {
            switch (Winograd4.applies(h: h, w: w, channels: min(cin, cout)), Winograd4.appliesToWeightGradient(h: h, w: w)) {
            case (true, true): return "wino4"
            case (true, false): return "wino4/2"
            case (false, true): return "wino2/4"
            case (false, false): return "winograd"
            }
        }
        return "im2col"
    }

    /// `dW += dY · col(X)^T` (FLOPs as the forward pass).
    public func backwardWeights(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, dy: UnsafePointer<Float>, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w)
        let total = n * ho * wo
        if isPointwise && !Conv2d.deterministic {
            sgemm(transA: false, transB: true, m: cout, n: cin, k: total, a: dy, lda: total, b: x, ldb: total, beta: 1, c: weightGrad, ldc: cin)
            return
        }
        if usesWinogradWeightGradient(h: h, w: w) {
            Winograd.weightGradient(x, cin: cin, n: n, h: h, w: w, dy: dy, cout: cout, dw: weightGrad, ws: ws,
                                    tile: Winograd4.appliesToWeightGradient(h: h, w: w) ? 4 : 2)
            return
        }
        if usesDirect(h: h, w: w) {
            DirectConv.weightGradient(x, cin: cin, n: n, h: h, w: w, dy: dy, cout: cout, dw: weightGrad, ws: ws)
            return
        }
        if usesDirectStride2(h: h, w: w) && max(cin, cout) <= DirectConv.maxWeightGradientChannels {
            DirectConv.weightGradientStride2(x, cin: cin, n: n, h: h, dy: dy, cout: cout, dw: weightGrad, ws: ws)
            return
        }
        if Conv2d.usesThreadChunks {
            weightGradientChunks(x, n: n, h: h, w: w, dy: dy, ws: ws)
            return
        }
        let det = Conv2d.deterministic
        let chunk = det ? 1 : chunkImages(n: n, ho: ho, wo: wo)
        let col = ws.get("conv.col", kdim * chunk * ho * wo)
        // Deterministic mode: dW per image (the same GEMM whatever the shard), summed in double.
        let wcount = cout * kdim
        let dwImage = det ? ws.get("conv.dw", wcount) : weightGrad
        var dwSum = [Double](repeating: 0, count: det ? wcount : 0)
        var n0 = 0
        while n0 < n {
            let cn = min(chunk, n - n0)
            let cols = cn * ho * wo
            im2col(x, n: n, h: h, w: w, n0: n0, cn: cn, ho: ho, wo: wo, col: col)
            sgemm(transA: false, transB: true, m: cout, n: kdim, k: cols, a: dy + n0 * ho * wo, lda: total,
                  b: col, ldb: cols, beta: det ? 0 : 1, c: dwImage, ldc: kdim)
            if det { for i in 0..<wcount { dwSum[i] += Double(dwImage[i]) } }
            n0 += cn
        }
        if det { for i in 0..<wcount { weightGrad[i] += Float(dwSum[i]) } }
    }

    /// Writes (or, with `accumulate`, adds) `dX`, the gradient of the input (FLOPs as the forward pass).
    public func backwardData(_ dy: UnsafePointer<Float>, n: Int, h: Int, w: Int, dx: UnsafeMutablePointer<Float>,
                             accumulate: Bool, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w)
        let total = n * ho * wo
        if isPointwise && !Conv2d.deterministic {
            sgemm(transA: true, transB: false, m: cin, n: total, k: cout, a: weight, lda: cin, b: dy, ldb: total,
                  beta: accumulate ? 1 : 0, c: dx, ldc: total)
            return
        }
        if usesDirect(h: h, w: w) {
            DirectConv.dataGradient(dy, cout: cout, n: n, h: h, w: w, weights: weight, cin: cin, dx, accumulate: accumulate, ws: ws)
            return
        }
        if usesDirectStride2(h: h, w: w) {
            DirectConv.dataGradientStride2(dy, cout: cout, n: n, h: h, weights: weight, cin: cin, dx, accumulate: accumulate, ws: ws)
            return
        }
        if usesWinograd(h: h, w: w) {
            // dX = the same convolution of dY with the flipped, transposed kernel.
            winograd(dy, n: n, h: h, w: w, transposeFlip: true, dx, accumulate: accumulate, ws: ws)
            return
        }
        if stride == 1 && 2 * pad == kernel - 1 && !Conv2d.deterministic {
            backwardDataSame(dy, n: n, h: h, w: w, dx: dx, accumulate: accumulate, ws: ws)
            return
        }
        if Conv2d.usesThreadChunks {
            dataGradientChunks(dy, n: n, h: h, w: w, dx: dx, accumulate: accumulate, ws: ws)
            return
        }
        if !accumulate { memset(dx, 0, cin * n * h * w * MemoryLayout<Float>.stride) }
        let chunk = Conv2d.deterministic ? 1 : chunkImages(n: n, ho: ho, wo: wo)
        let col = ws.get("conv.col", kdim * chunk * ho * wo)
        var n0 = 0
        while n0 < n {
            let cn = min(chunk, n - n0)
            let cols = cn * ho * wo
            sgemm(transA: true, transB: false, m: kdim, n: cols, k: cout, a: weight, lda: kdim,
                  b: dy + n0 * ho * wo, ldb: total, beta: 0, c: col, ldc: cols)
            col2im(col, n: n, h: h, w: w, n0: n0, cn: cn, ho: ho, wo: wo, dx: dx)
            n0 += cn
        }
    }

    /// dX of a stride-1 "same" convolution. dX is itself a convolution of dY with the transposed,
    /// spatially flipped kernel `W'[ci][co][i][j] = W[co][ci][k-1-i][k-1-j]` and the same padding,
    /// so it is computed as `dX = W' · col(dY)`: a GEMM with K = Cout*k*k (instead of K = Cout for
    /// `W^T · dY`) and an im2col gather instead of the col2im scatter-add.
    func backwardDataSame(_ dy: UnsafePointer<Float>, n: Int, h: Int, w: Int, dx: UnsafeMutablePointer<Float>,
                          accumulate: Bool, ws: Workspace) {
        let k = kernel, kk = k * k
        let total = n * h * w
        let kdimT = cout * kk
        let chunk = max(1, min(n, Conv2d.colBudget / max(1, kdimT * h * w)))
        let col = ws.get("conv.col", kdimT * chunk * h * w)
        let wt = ws.get("conv.wt", cin * kdimT)
        let wsrc = weight
        for co in 0..<cout {
            for ci in 0..<cin {
                for i in 0..<k {
                    for j in 0..<k {
                        wt[ci * kdimT + (co * k + i) * k + j] = wsrc[((co * cin + ci) * k + (k - 1 - i)) * k + (k - 1 - j)]
                    }
                }
            }
        }
        var n0 = 0
        while n0 < n {
            let cn = min(chunk, n - n0)
            let cols = cn * h * w
            // The transposed convolution reads dY as its input: same geometry, cout channels.
            Conv2d.im2col(dy, channels: cout, kernel: k, stride: 1, pad: pad, n: n, h: h, w: w,
                          n0: n0, cn: cn, ho: h, wo: w, col: col)
            sgemm(transA: false, transB: false, m: cin, n: cols, k: kdimT, a: wt, lda: kdimT,
                  b: col, ldb: cols, beta: accumulate ? 1 : 0, c: dx + n0 * h * w, ldc: total)
            n0 += cn
        }
    }

    /// col[(ci,i,j)][(n-n0, oh, ow)] = x[ci][n][oh*s-p+i][ow*s-p+j] (zero outside the image).
    func im2col(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, n0: Int, cn: Int, ho: Int, wo: Int, col: UnsafeMutablePointer<Float>) {
        Conv2d.im2col(x, channels: cin, kernel: kernel, stride: stride, pad: pad, n: n, h: h, w: w,
                      n0: n0, cn: cn, ho: ho, wo: wo, col: col)
    }

    /// The Winograd convolution of `input` (cin channels, or cout with `transposeFlip`: dX as the
    /// convolution of dY with the flipped, transposed kernel) into `out` (= or +=): F(4x4) where
    /// `Winograd4` applies, else F(2x2).
    func winograd(_ input: UnsafePointer<Float>, n: Int, h: Int, w: Int, transposeFlip: Bool,
                  _ out: UnsafeMutablePointer<Float>, accumulate: Bool, ws: Workspace) {
        let tile = Winograd4.applies(h: h, w: w, channels: min(cin, cout)) ? 4 : 2
        let single = tile == 4 && h == 4 && w == 4
        if transposeFlip { reusedKeptKernels = false }
        let keeps = single && keepsTransformedKernels
        if keeps && transposeFlip && keptKernelsValid, let kept = keptKernels {
            // dX after a forward that kept U: U read transposed, of flipped dY and dX.
            keptKernelsValid = false  // one dX per forward
            reusedKeptKernels = true
            Winograd.convolve(input, cin: cout, n: n, h: h, w: w, u: kept.ptr, cout: cin, out,
                              accumulate: accumulate, ws: ws, tile: 4, flipped: true)
            return
        }
        let size = (tile + 2) * (tile + 2) * Winograd.planeStride(cout, cin)
        let u: UnsafeMutablePointer<Float>
        if keeps && !transposeFlip {
            if keptKernels?.count != size { keptKernels = FloatBuffer(count: size) }
            u = keptKernels!.ptr
            keptKernelsValid = true
        } else {
            u = ws.get("wino.u", size)
        }
        Winograd.transformWeights(weight, cout: cout, cin: cin, transposeFlip: transposeFlip, into: u, tile: tile)
        Winograd.convolve(input, cin: transposeFlip ? cout : cin, n: n, h: h, w: w, u: u, cout: transposeFlip ? cin : cout,
                          out, accumulate: accumulate, ws: ws, tile: tile)
    }

    /// Whether the C stride-2 gather/scatter (`im2col_s2.c`) handles this geometry.
    static func stride2Kernel(kernel k: Int, stride s: Int, pad p: Int) -> Bool {
        s == 2 && ((k == 3 && p == 1) || (k == 1 && p == 0)) && Conv2d.stride2Kernels
    }

    /// Runs `body(c0, c1, rowBuffer)` over the input channels, one channel per call spread over
    /// the threads (`parallel`) or all of them in one call, each with its own padded-row buffer.
    static func overChannels(_ cin: Int, kernel k: Int, wo: Int, parallel: Bool,
                             _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let blen = Int(mcl_im2col_s2_buffer(Int32(k), Int32(wo)))
        func run(_ c0: Int, _ c1: Int) {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: blen) { buf in body(c0, c1, buf.baseAddress!) }
        }
        if parallel { Threads.parallelFor(cin) { ci in run(ci, ci + 1) } } else { run(0, cin) }
    }

    static func im2col(_ x: UnsafePointer<Float>, channels cin: Int, kernel k: Int, stride s: Int, pad p: Int,
                       n: Int, h: Int, w: Int, n0: Int, cn: Int, ho: Int, wo: Int, col: UnsafeMutablePointer<Float>,
                       parallel: Bool = true) {
        if stride2Kernel(kernel: k, stride: s, pad: p) {
            overChannels(cin, kernel: k, wo: wo, parallel: parallel) { c0, c1, buf in
                mcl_im2col_s2(x, Int32(c0), Int32(c1), Int32(k), Int32(n), Int32(h), Int32(w), Int32(n0), Int32(cn),
                              Int32(ho), Int32(wo), col, buf)
            }
            return
        }
        let rowLen = cn * ho * wo
        // Rows (ci, i, j) are independent outputs: spread all cin*k*k of them over the threads
        // (the stem has only 3 input channels but 27 rows), unless the caller is itself one of them.
        let rows = cin * k * k
        @inline(__always) func each(_ body: (Int) -> Void) {
            if parallel { Threads.parallelFor(rows, body) } else { for r in 0..<rows { body(r) } }
        }
        each { r in
            let ci = r / (k * k), i = (r / k) % k, j = r % k
            let row = col + r * rowLen
            for b in 0..<cn {
                let img = x + (ci * n + n0 + b) * h * w
                let out = row + b * ho * wo
                for oh in 0..<ho {
                    let ih = oh * s - p + i
                    let o = out + oh * wo
                    if ih < 0 || ih >= h {
                        for ow in 0..<wo { o[ow] = 0 }
                        continue
                    }
                    let src = img + ih * w
                    if s == 1 {
                        // valid ow: 0 <= ow - p + j < w; rows are short (4..32), so an
                        // inline loop beats a memmove call.
                        let lo = max(0, p - j), hi = max(lo, min(wo, w + p - j))
                        for ow in 0..<lo { o[ow] = 0 }
                        let shifted = src + (j - p)
                        for ow in lo..<hi { o[ow] = shifted[ow] }
                        for ow in hi..<wo { o[ow] = 0 }
                    } else {
                        // valid ow: 0 <= ow*s - p + j < w, i.e. ceil((p-j)/s) <= ow < ceil((w+p-j)/s)
                        let (lo, hi) = Conv2d.validRange(wo: wo, w: w, s: s, offset: j - p)
                        for ow in 0..<lo { o[ow] = 0 }
                        let shifted = src + (j - p)
                        for ow in lo..<hi { o[ow] = shifted[ow * s] }
                        for ow in hi..<wo { o[ow] = 0 }
                    }
                }
            }
        }
    }

    /// The output columns `lo..<hi` whose input column `ow * s + offset` lies in `0..<w`.
    @inline(__always)
    static func validRange(wo: Int, w: Int, s: Int, offset: Int) -> (Int, Int) {
        // ceil(a / s) for a possibly negative a
        func ceilDiv(_ a: Int) -> Int { a >= 0 ? (a + s - 1) / s : -((-a) / s) }
        let lo = max(0, min(wo, ceilDiv(-offset)))
        let hi = max(lo, min(wo, ceilDiv(w - offset)))
        return (lo, hi)
    }

    /// dx[ci][n][ih][iw] += sum over (i,j,oh,ow) hitting it of col[(ci,i,j)][(n-n0,oh,ow)].
    func col2im(_ col: UnsafePointer<Float>, n: Int, h: Int, w: Int, n0: Int, cn: Int, ho: Int, wo: Int, dx: UnsafeMutablePointer<Float>,
                parallel: Bool = true) {
        let k = kernel, s = stride, p = pad, cin = self.cin
        if Conv2d.stride2Kernel(kernel: k, stride: s, pad: p) {
            Conv2d.overChannels(cin, kernel: k, wo: wo, parallel: parallel) { c0, c1, buf in
                mcl_col2im_s2(col, Int32(c0), Int32(c1), Int32(k), Int32(n), Int32(h), Int32(w), Int32(n0), Int32(cn),
                              Int32(ho), Int32(wo), dx, buf)
            }
            return
        }
        let rowLen = cn * ho * wo
        @inline(__always) func each(_ body: (Int) -> Void) {
            if parallel { Threads.parallelFor(cin, body) } else { for ci in 0..<cin { body(ci) } }
        }
        each { ci in
            for i in 0..<k {
                for j in 0..<k {
                    let row = col + ((ci * k + i) * k + j) * rowLen
                    for b in 0..<cn {
                        let img = dx + (ci * n + n0 + b) * h * w
                        let src = row + b * ho * wo
                        for oh in 0..<ho {
                            let ih = oh * s - p + i
                            if ih < 0 || ih >= h { continue }
                            let d = img + ih * w
                            let c = src + oh * wo
                            if s == 1 {
                                let lo = max(0, p - j), hi = min(wo, w + p - j)
                                if hi > lo {
                                    let dd = d + (lo - p + j)
                                    for ow in 0..<(hi - lo) { dd[ow] += c[lo + ow] }
                                }
                            } else {
                                let (lo, hi) = Conv2d.validRange(wo: wo, w: w, s: s, offset: j - p)
                                let dd = d + (j - p)
                                for ow in lo..<hi { dd[ow * s] += c[ow] }
                            }
                        }
                    }
                }
            }
        }
    }
}
