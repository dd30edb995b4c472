import XCTest
import MCLCore
@testable import MCLNet

/// Central finite differences against every layer's explicit backward.
///
/// Each check uses L = sum_i y_i r_i (r random, accumulated in double), so dL/dy = r; the analytic
/// gradient comes from backward(dy = r). Errors are relative to the largest gradient element, and
/// the float32 forward limits agreement to ~1e-3.
final class GradientCheckTests: XCTestCase {
    var rng = SplitMix64(seed: 42)

    func randn(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float(rng.nextGaussian()) * scale } }

    func dot(_ y: UnsafePointer<Float>, _ r: [Float]) -> Double {
        var s = 0.0
        for i in 0..<r.count { s += Double(y[i]) * Double(r[i]) }
        return s
    }

    /// Compares analytic gradients with central differences at `probes` coordinates of `x`.
    func fd(_ label: String, x: UnsafeMutablePointer<Float>, count: Int, analytic: [Float], eps: Float = 1e-2,
            probes: Int = 40, tol: Double = 2e-2, loss: () -> Double) {
        var scale = 0.0
        for g in analytic { scale = max(scale, Double(abs(g))) }
        XCTAssertGreaterThan(scale, 0, "\(label): zero gradient")
        var worst = 0.0
        var g = SplitMix64(seed: UInt64(count) &* 31 &+ UInt64(label.count))
        let idx = count <= probes ? Array(0..<count) : (0..<probes).map { _ in g.nextInt(count) }
        for i in idx {
            let old = x[i]
            x[i] = old + eps; let lp = loss()
            x[i] = old - eps; let lm = loss()
            x[i] = old
            let num = (lp - lm) / (2 * Double(eps))
            worst = max(worst, abs(num - Double(analytic[i])) / scale)
        }
        XCTAssertLessThan(worst, tol, "\(label): max FD error \(worst) relative to largest gradient \(scale)")
    }

    func checkConv(cin: Int, cout: Int, k: Int, s: Int, p: Int, n: Int = 2, h: Int = 7, w: Int = 6) {
        let store = ParameterStore()
        let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: k, stride: s, pad: p)
        store.finalize()
        store.values.copy(from: randn(store.paramCount, scale: 0.5))
        let ws = Workspace()
        let ho = conv.outSize(h), wo = conv.outSize(w)
        let xs = FloatBuffer(count: cin * n * h * w); xs.copy(from: randn(xs.count))
        let y = FloatBuffer(count: cout * n * ho * wo)
        let r = randn(y.count)
        let loss: () -> Double = { conv.forward(xs.ptr, n: n, h: h, w: w, y.ptr, ws: ws); return self.dot(y.ptr, r) }
        _ = loss()
        let dx = FloatBuffer(count: xs.count)
        store.zeroGrads()
        r.withUnsafeBufferPointer { conv.backward(xs.ptr, n: n, h: h, w: w, dy: $0.baseAddress!, dx: dx.ptr, ws: ws) }
        let label = "conv k\(k) s\(s) p\(p)"
        fd(label + " dW", x: store.values.ptr, count: store.paramCount, analytic: store.grads.array, loss: loss)
        fd(label + " dX", x: xs.ptr, count: xs.count, analytic: dx.array, loss: loss)
        // accumulate = true adds to what is there
        let before = dx.array
        r.withUnsafeBufferPointer { conv.backward(xs.ptr, n: n, h: h, w: w, dy: $0.baseAddress!, dx: dx.ptr, accumulate: true, ws: ws) }
        for i in 0..<dx.count { XCTAssertEqual(dx.ptr[i], 2 * before[i], accuracy: 1e-4 * max(1, abs(before[i]))) }
    }

    func testConv3x3Stride1() { checkConv(cin: 3, cout: 4, k: 3, s: 1, p: 1) }
    func testConv3x3Stride2() { checkConv(cin: 3, cout: 5, k: 3, s: 2, p: 1) }
    func testConv1x1Stride2() { checkConv(cin: 4, cout: 3, k: 1, s: 2, p: 0) }
    func testConv1x1Stride1() { checkConv(cin: 4, cout: 3, k: 1, s: 1, p: 0) }

    /// The Winograd F(2x2, 3x3) path (cin >= 8, even sizes) against finite differences.
    func testConv3x3Stride1Winograd() {
        let saved = Winograd.minChannels
        Winograd.minChannels = 8
        defer { Winograd.minChannels = saved }
        XCTAssertTrue(Winograd.applies(kernel: 3, stride: 1, pad: 1, cin: 8, h: 6, w: 4))
        checkConv(cin: 8, cout: 5, k: 3, s: 1, p: 1, n: 2, h: 6, w: 4)
    }

    /// Winograd forward, dW and dX (with and without accumulate) equal im2col + GEMM to float
    /// rounding, for sizes from 2x2 to 4x36 (rows of one, 16 and 18 tiles: the AVX-512 column passes
    /// take 16 at a time), blocks of one tile row up to everything, 1 and 2 threads.
    func testWinogradMatchesIm2col() {
        let savedBlock = Winograd.blockFloats, savedThreads = Threads.count, savedMin = Winograd.minChannels
        let savedDWBlock = Winograd.weightGradientBlockFloats, savedDWTiles = Winograd.weightGradientMinTiles
        Winograd.weightGradientMinTiles = 1
        let savedWinograd = Conv2d.winograd, available = DirectConv.isa, savedF4DW = Winograd4.weightGradientEnabled
        Winograd.minChannels = 8
        Winograd4.weightGradientEnabled = false  // F(2x2)'s dW here; F(4x4)'s in testWinograd4MatchesIm2col
        let savedDirect = DirectConv.enabled
        DirectConv.enabled = false  // rows of 32 would take the direct kernels
        defer {
            Winograd.blockFloats = savedBlock; Threads.set(savedThreads); Conv2d.winograd = savedWinograd
            Winograd4.weightGradientEnabled = savedF4DW
            Winograd.weightGradientBlockFloats = savedDWBlock; Winograd.weightGradientMinTiles = savedDWTiles
            Winograd.minChannels = savedMin; DirectConv.force(isa: available)
            DirectConv.enabled = savedDirect
        }
        // The C transforms of every instruction set this CPU has (AVX-512, AVX2, baseline).
        for level in (0...available).reversed() {
        DirectConv.force(isa: level)
        // (16, 40, 1, 4, 4) and (40, 36, 2, 2, 2): dW split by output channels on 2 threads (20 + 20, 18 + 18
        // rows; 2 tile rows for 2 threads, and 1 for 2), the others by tiles.
        for (cin, cout, n, h, w) in [(8, 4, 3, 2, 2), (9, 16, 2, 4, 6), (16, 8, 3, 8, 8), (12, 12, 1, 6, 2), (8, 8, 1, 2, 32), (8, 5, 2, 4, 36),
                                     (16, 40, 1, 4, 4), (40, 36, 2, 2, 2)] {
            for (block, threads) in [(1, 1), (1, 2), (1 << 20, 2), (16 * 16 * 2, 2)] {
                Winograd.blockFloats = block; Winograd.weightGradientBlockFloats = block; Threads.set(threads)
                XCTAssertEqual(Winograd.splitsWeightGradientByRows(cin: cin, cout: cout, n: n, h: h, w: w, tile: 2),
                               threads == 2 && cout >= 36, "cin \(cin) cout \(cout) \(h)x\(w) threads \(threads)")
                let store = ParameterStore()
                let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: 3, stride: 1, pad: 1)
                store.finalize()
                store.values.copy(from: randn(store.paramCount, scale: 0.3))
                let x = FloatBuffer(count: cin * n * h * w); x.copy(from: randn(x.count))
                let dy = FloatBuffer(count: cout * n * h * w); dy.copy(from: randn(dy.count))
                let dx0 = randn(x.count)
                var results: [[Float]] = []
                for wino in [false, true] {
                    Conv2d.winograd = wino
                    XCTAssertEqual(conv.usesWinograd(h: h, w: w), wino)
                    let ws = Workspace()
                    let y = FloatBuffer(count: cout * n * h * w)
                    conv.forward(x.ptr, n: n, h: h, w: w, y.ptr, ws: ws)
                    store.zeroGrads()
                    let dx = FloatBuffer(count: x.count)
                    conv.backward(x.ptr, n: n, h: h, w: w, dy: dy.ptr, dx: dx.ptr, ws: ws)
                    let dxAcc = FloatBuffer(count: x.count); dxAcc.copy(from: dx0)
                    conv.backward(x.ptr, n: n, h: h, w: w, dy: dy.ptr, dx: dxAcc.ptr, accumulate: true, ws: ws)
                    results.append(y.array + store.grads.array + dx.array + dxAcc.array)
                }
                let scale = results[0].reduce(Float(0)) { max($0, abs($1)) }
                var worst: Float = 0
                for i in 0..<results[0].count { worst = max(worst, abs(results[0][i] - results[1][i])) }
                XCTAssertLessThan(worst / scale, 2e-6, "cin \(cin) cout \(cout) n \(n) \(h)x\(w) block \(block) threads \(threads) isa \(level)")
            }
        }
        }
    }

    /// Winograd F(4x4, 3x3) forward, dW and dX (with and without accumulate) against im2col +
    /// GEMM, for sizes from 4x4 to 4x48 (tiles touching one, two or all four borders; rows of 1 to
    /// 12 tiles, the column passes taking 8, then 4 at a time, then one), blocks of one tile row up
    /// to everything, 1 and 2 threads; and F(2x2) (forward, dX and dW) against im2col too.
    /// F(4x4)'s float32 error is larger (points ±2, scales 1/24): bounded at 2e-5 of the largest value.
    func testWinograd4MatchesIm2col() {
        let savedBlock = Winograd.blockFloats, savedThreads = Threads.count, savedMin = Winograd.minChannels
        let savedWinograd = Conv2d.winograd, savedF4 = Winograd4.enabled, savedPixels = Winograd4.minPixels
        let savedDWPixels = Winograd4.weightGradientMinPixels, savedF4DW = Winograd4.weightGradientEnabled
        let savedDWBlock = Winograd.weightGradientBlockFloats, savedDWTiles = Winograd.weightGradientMinTiles
        let available = DirectConv.isa
        // The defaults: 16x16 and up, 8x8 from 64 channels, 4x4 (one tile).
        XCTAssertTrue(Winograd4.applies(h: 16, w: 16, channels: 8))
        XCTAssertTrue(Winograd4.applies(h: 8, w: 8, channels: 64))
        XCTAssertFalse(Winograd4.applies(h: 8, w: 8, channels: 32))
        XCTAssertTrue(Winograd4.applies(h: 4, w: 4, channels: 8))
        Winograd.minChannels = 8
        Winograd4.minPixels = 16
        Winograd4.weightGradientMinPixels = 16; Winograd4.weightGradientEnabled = true
        Winograd.weightGradientMinTiles = 1
        let savedDirect = DirectConv.enabled
        DirectConv.enabled = false  // rows of 32 would take the direct kernels
        defer {
            Winograd.blockFloats = savedBlock; Threads.set(savedThreads); Conv2d.winograd = savedWinograd
            Winograd.minChannels = savedMin; Winograd4.enabled = savedF4; Winograd4.minPixels = savedPixels
            Winograd4.weightGradientMinPixels = savedDWPixels; Winograd4.weightGradientEnabled = savedF4DW
            Winograd.weightGradientBlockFloats = savedDWBlock; Winograd.weightGradientMinTiles = savedDWTiles
            DirectConv.force(isa: available)
            DirectConv.enabled = savedDirect
        }
        XCTAssertFalse(Winograd4.applies(h: 6, w: 8, channels: 64))
        XCTAssertFalse(Winograd4.applies(h: 4, w: 2, channels: 64))
        // The C transforms of every instruction set this CPU has (AVX-512, AVX2, baseline).
        for level in (0...available).reversed() {
        DirectConv.force(isa: level)
        // dW split by output channels on 2 threads: (64, 64, 2, 16, 16) (32 tiles) and (24, 40, 1, 4, 8) (1 tile row).
        // (16, 24, 37, 4, 4), (16, 24, 32, 4, 4): the 4x4-map kernels (16 images at a time, and the rest) in blocks of
        // 37, 19 and 18 or 32 and 16 images, and of 1 or 2 images (block 1, 36 * 16 * 3); dX from the kept kernels, flipped.
        for (cin, cout, n, h, w) in [(8, 4, 3, 4, 4), (9, 16, 2, 8, 12), (16, 8, 3, 8, 8), (12, 12, 1, 12, 8), (64, 64, 2, 16, 16),
                                     (8, 4, 1, 8, 32), (8, 8, 2, 4, 48), (24, 40, 1, 4, 8), (16, 24, 37, 4, 4), (16, 24, 32, 4, 4)] {
            for (block, threads) in [(1, 1), (1, 2), (1 << 20, 2), (36 * 16 * 3, 2)] {
                Winograd.blockFloats = block; Winograd.weightGradientBlockFloats = block; Threads.set(threads)
                XCTAssertEqual(Winograd.splitsWeightGradientByRows(cin: cin, cout: cout, n: n, h: h, w: w, tile: 4),
                               threads == 2 && cout >= 40, "cin \(cin) cout \(cout) \(h)x\(w) threads \(threads)")
                let store = ParameterStore()
                let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: 3, stride: 1, pad: 1)
                conv.keepsTransformedKernels = true
                store.finalize()
                store.values.copy(from: randn(store.paramCount, scale: 0.3))
                let x = FloatBuffer(count: cin * n * h * w); x.copy(from: randn(x.count))
                let dy = FloatBuffer(count: cout * n * h * w); dy.copy(from: randn(dy.count))
                let dx0 = randn(x.count)
                var results: [[[Float]]] = []
                for (wino, f4) in [(false, false), (true, true), (true, false)] {
                    Conv2d.winograd = wino; Winograd4.enabled = f4
                    XCTAssertEqual(conv.algorithm(h: h, w: w), !wino ? "im2col" : f4 ? "wino4" : "winograd")
                    let ws = Workspace()
                    let y = FloatBuffer(count: cout * n * h * w)
                    conv.forward(x.ptr, n: n, h: h, w: w, y.ptr, ws: ws)
                    // The transformed kernels: 36 planes for F(4x4), 16 for F(2x2); on 4x4 maps the layer's own (kept).
                    let kept = wino && f4 && h == 4 && w == 4
                    XCTAssertEqual(ws.capacity(of: "wino.u"), !wino || kept ? 0 : (f4 ? 36 : 16) * Winograd.planeStride(cout, cin))
                    // dX from the kept kernels (flipped) on every 4x4 map.
                    let flips = kept
                    store.zeroGrads()
                    conv.backwardWeights(x.ptr, n: n, h: h, w: w, dy: dy.ptr, ws: ws)
                    // dW's scratch: F(4x4)'s when it ran, F(2x2)'s otherwise.
                    XCTAssertEqual(ws.capacity(of: "wino4.dw") > 0, wino && f4)
                    XCTAssertEqual(ws.capacity(of: "wino.dw") > 0, wino && !f4)
                    let dx = FloatBuffer(count: x.count)
                    conv.backwardData(dy.ptr, n: n, h: h, w: w, dx: dx.ptr, accumulate: false, ws: ws)
                    XCTAssertEqual(conv.reusedKeptKernels, flips)
                    conv.forward(x.ptr, n: n, h: h, w: w, y.ptr, ws: ws)  // the kept kernels serve one dX each
                    let dxAcc = FloatBuffer(count: x.count); dxAcc.copy(from: dx0)
                    conv.backwardData(dy.ptr, n: n, h: h, w: w, dx: dxAcc.ptr, accumulate: true, ws: ws)
                    XCTAssertEqual(conv.reusedKeptKernels, flips)
                    results.append([y.array, store.grads.array, dx.array, dxAcc.array])
                }
                // Each of y, dW, dX, dX += against im2col's, relative to its own largest value.
                for (other, bound): (Int, Float) in [(1, 2e-5), (2, 2e-6)] {
                    for (part, name) in ["y", "dW", "dX", "dX+="].enumerated() {
                        let ref = results[0][part], got = results[other][part]
                        let scale = ref.reduce(Float(0)) { max($0, abs($1)) }
                        var worst: Float = 0
                        for i in 0..<ref.count { worst = max(worst, abs(ref[i] - got[i])) }
                        XCTAssertLessThan(worst / scale, bound, "\(other == 1 ? "F(4x4)" : "F(2x2)") \(name) cin \(cin) cout \(cout) n \(n) \(h)x\(w) block \(block) threads \(threads) isa \(level)")
                    }
                }
            }
        }
        }
    }

    /// The direct kernels (rows of 16 and 32 pixels) against finite differences.
    func testConv3x3DirectFiniteDifferences() {
        guard DirectConv.isa > 0 else { return print("direct convolution: no AVX2 on this CPU, checked elsewhere") }
        checkConv(cin: 3, cout: 5, k: 3, s: 1, p: 1, n: 2, h: 3, w: 16)
        checkConv(cin: 3, cout: 10, k: 3, s: 1, p: 1, n: 2, h: 4, w: 16)  // two rows at a time (AVX-512)
        checkConv(cin: 4, cout: 3, k: 3, s: 1, p: 1, n: 1, h: 2, w: 32)
    }

    /// Direct forward, dW and dX (with and without accumulate) equal im2col + GEMM to float
    /// rounding: AVX-512 and AVX2 kernels, rows of 16 (one and, h even, two at a time) and 32, channel counts that fill or leave
    /// part of a register block, 1 and 2 threads.
    func testDirectConvMatchesIm2col() {
        let available = DirectConv.isa
        guard available > 0 else { return print("direct convolution: no AVX2 on this CPU") }
        let savedThreads = Threads.count, savedWinograd = Conv2d.winograd, savedEnabled = DirectConv.enabled
        let savedMax = DirectConv.maxChannels
        defer {
            Threads.set(savedThreads); Conv2d.winograd = savedWinograd; DirectConv.enabled = savedEnabled
            DirectConv.maxChannels = savedMax; DirectConv.force(isa: available)
        }
        Conv2d.winograd = false
        DirectConv.maxChannels = 32
        for level in (1...available).reversed() {
            DirectConv.force(isa: level)
            XCTAssertEqual(DirectConv.isa, level)
            for (cin, cout, n, h, w) in [(3, 16, 2, 32, 32), (16, 16, 3, 4, 32), (5, 7, 2, 3, 16), (32, 32, 1, 16, 16), (17, 9, 3, 5, 16), (6, 11, 2, 6, 16), (16, 32, 2, 2, 32), (3, 40, 1, 4, 32),
                                         (3, 16, 130, 32, 32)] {  // an 8.5 MB output: AVX-512 writes it with streaming stores
                for threads in [1, 2] {
                    Threads.set(threads)
                    let worst = directVersusIm2col(cin: cin, cout: cout, stride: 1, n: n, h: h, w: w, directName: "direct")
                    XCTAssertLessThan(worst, 2e-6, "isa \(level) cin \(cin) cout \(cout) n \(n) \(h)x\(w) threads \(threads)")
                }
            }
        }
    }

    /// Runs a 3x3 pad-1 layer's forward, forward with accumulate (through the direct kernel
    /// itself), dW, dX and dX with accumulate with `DirectConv` off (im2col + GEMM) and on
    /// (algorithm `directName`); returns the largest difference relative to the largest value.
    func directVersusIm2col(cin: Int, cout: Int, stride: Int, n: Int, h: Int, w: Int, directName: String) -> Float {
        let savedEnabled = DirectConv.enabled
        defer { DirectConv.enabled = savedEnabled }
        let store = ParameterStore()
        let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: 3, stride: stride, pad: 1)
        store.finalize()
        store.values.copy(from: randn(store.paramCount, scale: 0.3))
        let ho = conv.outSize(h), wo = conv.outSize(w)
        let x = FloatBuffer(count: cin * n * h * w); x.copy(from: randn(x.count))
        let dy = FloatBuffer(count: cout * n * ho * wo); dy.copy(from: randn(dy.count))
        let dx0 = randn(x.count), y0 = randn(dy.count)
        var results: [[Float]] = []
        for direct in [false, true] {
            DirectConv.enabled = direct
            XCTAssertEqual(conv.algorithm(h: h, w: w), direct ? directName : "im2col", "cin \(cin) cout \(cout) \(h)x\(w) stride \(stride)")
            let ws = Workspace()
            let y = FloatBuffer(count: dy.count)
            conv.forward(x.ptr, n: n, h: h, w: w, y.ptr, ws: ws)
            store.zeroGrads()
            let dx = FloatBuffer(count: x.count)
            conv.backward(x.ptr, n: n, h: h, w: w, dy: dy.ptr, dx: dx.ptr, ws: ws)
            let dxAcc = FloatBuffer(count: x.count); dxAcc.copy(from: dx0)
            conv.backwardData(dy.ptr, n: n, h: h, w: w, dx: dxAcc.ptr, accumulate: true, ws: ws)
            let yAcc = FloatBuffer(count: y.count); yAcc.copy(from: y0)
            if direct && stride == 2 {
                DirectConv.forwardStride2(x.ptr, cin: cin, n: n, h: h, weights: conv.weight, cout: cout, yAcc.ptr, accumulate: true, ws: ws)
            } else if direct {
                DirectConv.forward(x.ptr, cin: cin, n: n, h: h, w: w, weights: conv.weight, cout: cout, yAcc.ptr, accumulate: true, ws: ws)
            } else {
                for i in 0..<y.count { yAcc.ptr[i] += y.ptr[i] }
            }
            results.append(y.array + store.grads.array + dx.array + dxAcc.array + yAcc.array)
        }
        let scale = results[0].reduce(Float(0)) { max($0, abs($1)) }
        var worst: Float = 0
        for i in 0..<results[0].count { worst = max(worst, abs(results[0][i] - results[1][i])) }
        return worst / scale
    }

    /// The stride-2 direct kernels (3x3 stride 2 pad 1, 32x32 -> 16x16 and 16x16 -> 8x8; AVX2, with the AVX2 level
    /// forced on an AVX-512 machine; there the defaults are checked first) against im2col + GEMM: forward (= and +=), dW, dX (= and +=), channel
    /// counts that use the 6-channel blocks and both tails (4 and 2) and the dW tails (2 and 1),
    /// 1 and 2 threads; beyond 32 channels dW stays on im2col ("dir/im2col").
    func testDirectConvStride2MatchesIm2col() {
        let available = DirectConv.isa
        guard available > 0 else { return print("direct convolution: no AVX2 on this CPU") }
        let savedThreads = Threads.count, savedMin = DirectConv.stride2MinInputSetting
        defer { Threads.set(savedThreads); DirectConv.force(isa: available); DirectConv.stride2MinInputSetting = savedMin }
        DirectConv.stride2MinInputSetting = nil
        if available == 2 {
            XCTAssertTrue(DirectConv.appliesStride2(kernel: 3, stride: 2, pad: 1, h: 32, w: 32), "AVX-512: 32x32 inputs by default")
            XCTAssertFalse(DirectConv.appliesStride2(kernel: 3, stride: 2, pad: 1, h: 16, w: 16), "AVX-512: not 16x16 inputs by default")
            XCTAssertLessThan(directVersusIm2col(cin: 16, cout: 32, stride: 2, n: 2, h: 32, w: 32, directName: "direct"), 2e-6,
                              "stride 2 at the AVX-512 level")
        }
        DirectConv.force(isa: 1)
        XCTAssertTrue(DirectConv.appliesStride2(kernel: 3, stride: 2, pad: 1, h: 16, w: 16), "AVX2: 16x16 inputs by default")
        DirectConv.stride2MinInputSetting = 32
        XCTAssertFalse(DirectConv.appliesStride2(kernel: 3, stride: 2, pad: 1, h: 16, w: 16), "MCL_DIRECT_CONV_S2_MIN=32")
        XCTAssertFalse(DirectConv.appliesStride2(kernel: 3, stride: 2, pad: 1, h: 8, w: 8), "no 8x8-input kernels")
        DirectConv.stride2MinInputSetting = 16
        for (cin, cout, n, h) in [(16, 32, 2, 32), (5, 16, 3, 32), (7, 11, 1, 32), (3, 4, 2, 32), (32, 14, 2, 32), (8, 40, 1, 32),
                                  (32, 64, 2, 16), (9, 16, 3, 16), (4, 11, 2, 16), (12, 2, 1, 16)] {
            for threads in [1, 2] {
                Threads.set(threads)
                let worst = directVersusIm2col(cin: cin, cout: cout, stride: 2, n: n, h: h, w: h,
                                               directName: cout > 32 ? "dir/im2col" : "direct")
                XCTAssertLessThan(worst, 2e-6, "stride 2: cin \(cin) cout \(cout) n \(n) \(h)x\(h) threads \(threads)")
            }
        }
    }

    /// With the direct dW limited to 16 channels (`MCL_DIRECT_DW_MAX_CHANNELS=16`), a 32-channel
    /// 16x16 layer runs direct forward and dX but Winograd's dW ("dir/wino", F(4x4) or F(2x2));
    /// its output and gradients equal im2col + GEMM's, and a 16-channel layer keeps the direct dW.
    func testDirectLayerWithWinogradWeightGradient() {
        guard DirectConv.isa > 0 else { return print("direct convolution: no AVX2 on this CPU") }
        let savedWinograd = Conv2d.winograd, savedEnabled = DirectConv.enabled, savedMax = DirectConv.maxChannels
        let savedDW = DirectConv.maxWeightGradientChannels, savedF4DW = Winograd4.weightGradientEnabled
        defer {
            Conv2d.winograd = savedWinograd; DirectConv.enabled = savedEnabled; DirectConv.maxChannels = savedMax
            DirectConv.maxWeightGradientChannels = savedDW; Winograd4.weightGradientEnabled = savedF4DW
        }
        DirectConv.maxChannels = 32
        DirectConv.maxWeightGradientChannels = 16
        for f4 in [false, true] {
        Winograd4.weightGradientEnabled = f4
        for (cin, cout, expected) in [(32, 32, "dir/wino"), (16, 16, "direct"), (16, 32, "dir/wino")] {
            let n = 2, h = 16, w = 16
            let store = ParameterStore()
            let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: 3, stride: 1, pad: 1)
            store.finalize()
            store.values.copy(from: randn(store.paramCount, scale: 0.3))
            let x = FloatBuffer(count: cin * n * h * w); x.copy(from: randn(x.count))
            let dy = FloatBuffer(count: cout * n * h * w); dy.copy(from: randn(dy.count))
            var results: [[Float]] = []
            for fast in [true, false] {
                Conv2d.winograd = fast; DirectConv.enabled = fast
                XCTAssertEqual(conv.algorithm(h: h, w: w), fast ? expected : "im2col")
                let ws = Workspace()
                let y = FloatBuffer(count: dy.count), dx = FloatBuffer(count: x.count)
                conv.forward(x.ptr, n: n, h: h, w: w, y.ptr, ws: ws)
                store.zeroGrads()
                conv.backward(x.ptr, n: n, h: h, w: w, dy: dy.ptr, dx: dx.ptr, ws: ws)
                if fast && expected == "dir/wino" { XCTAssertEqual(ws.capacity(of: "wino4.dw") > 0, f4) }
                results.append(y.array + store.grads.array + dx.array)
            }
            // F(4x4)'s float32 rounding is larger (as in testWinograd4MatchesIm2col).
            let bound = f4 && expected == "dir/wino" ? 2e-5 : 2e-6
            XCTAssertLessThan(maxRelErr(results[0], results[1]), bound, "\(cin)->\(cout) \(expected) F(4x4) dW \(f4)")
        }
        }
    }

    func testConvChunkingMatchesUnchunked() {
        let store = ParameterStore()
        let conv = Conv2d(store, "c", cin: 3, cout: 4, kernel: 3, stride: 1, pad: 1)
        store.finalize()
        store.values.copy(from: randn(store.paramCount))
        let n = 5, h = 6, w = 6
        let x = FloatBuffer(count: 3 * n * h * w); x.copy(from: randn(x.count))
        let y1 = FloatBuffer(count: 4 * n * h * w), y2 = FloatBuffer(count: 4 * n * h * w)
        let saved = Conv2d.colBudget
        conv.forward(x.ptr, n: n, h: h, w: w, y1.ptr, ws: Workspace())
        Conv2d.colBudget = 27 * 36 * 2 // two images per chunk
        conv.forward(x.ptr, n: n, h: h, w: w, y2.ptr, ws: Workspace())
        Conv2d.colBudget = saved
        for i in 0..<y1.count { XCTAssertEqual(y1.ptr[i], y2.ptr[i], accuracy: 1e-5) }
    }

    /// The per-thread L2 chunks of im2col (`Im2colChunks.swift`) and the C stride-2 gather and
    /// scatter (`im2col_s2.c`) give the Swift whole-batch path's forward, dW and dX (+= too) for
    /// stride 2 (3x3 and 1x1, even and odd sizes) and a 3-channel stride-1 layer, with 1, 2 and 6
    /// threads (some with no image) and chunks that split each thread's images unevenly.
    func testIm2colThreadChunksMatchWholeBatch() {
        let savedChunk = Conv2d.chunkFloats, savedThreads = Threads.count, savedColumns = Conv2d.minChunkColumns
        let savedS2 = Conv2d.stride2Kernels
        defer {
            Conv2d.chunkFloats = savedChunk; Threads.set(savedThreads); Conv2d.minChunkColumns = savedColumns
            Conv2d.stride2Kernels = savedS2
        }
        Conv2d.minChunkColumns = 1
        for (cin, cout, k, s, p, h) in [(5, 6, 3, 2, 1, 8), (3, 4, 3, 1, 1, 6), (4, 6, 1, 2, 0, 8), (5, 6, 3, 2, 1, 7), (4, 3, 1, 2, 0, 7)] {
            let store = ParameterStore()
            let conv = Conv2d(store, "c", cin: cin, cout: cout, kernel: k, stride: s, pad: p)
            store.finalize()
            store.values.copy(from: randn(store.paramCount))
            let n = 7, ho = conv.outSize(h)
            let x = FloatBuffer(count: cin * n * h * h); x.copy(from: randn(x.count))
            let dy = FloatBuffer(count: cout * n * ho * ho); dy.copy(from: randn(dy.count))
            let dxInit = randn(x.count)
            func run(chunkFloats: Int, threads: Int, accumulate: Bool, cKernels: Bool = true) -> (y: [Float], dw: [Float], dx: [Float]) {
                Conv2d.chunkFloats = chunkFloats; Threads.set(threads); Conv2d.stride2Kernels = cKernels
                let y = FloatBuffer(count: dy.count), dx = FloatBuffer(count: x.count)
                dx.copy(from: dxInit)
                store.zeroGrads()
                let ws = Workspace()
                // Workspace scratch holds whatever the previous layer left: the per-thread dW
                // partials must not depend on it (NaN here), also for threads with no image.
                let partials = 6 * conv.cout * conv.kdim
                let junk = ws.get("conv.tdw", partials)
                for i in 0..<partials { junk[i] = .nan }
                conv.forward(x.ptr, n: n, h: h, w: h, y.ptr, ws: ws)
                conv.backward(x.ptr, n: n, h: h, w: h, dy: dy.ptr, dx: dx.ptr, accumulate: accumulate, ws: ws)
                return (y.array, store.grads.array, dx.array)
            }
            for accumulate in [false, true] {
                let whole = run(chunkFloats: 0, threads: 1, accumulate: accumulate, cKernels: false)
                // 2 images per chunk: threads own 4 + 3 images, chunks 2 + 2 and 2 + 1; with 6
                // threads they own 2, 2, 2, 1, 0, 0 images.
                let perImage = conv.kdim * ho * ho
                for threads in [1, 2, 6] {
                    for chunk in [0, 2 * perImage, 1 << 20] {
                        let got = run(chunkFloats: chunk, threads: threads, accumulate: accumulate)
                        let what = "\(cin)->\(cout) k\(k) s\(s), \(threads) thread(s), chunk \(chunk), accumulate \(accumulate)"
                        XCTAssertLessThan(maxRelErr(got.y, whole.y), 1e-5, "y " + what)
                        XCTAssertLessThan(maxRelErr(got.dw, whole.dw), 1e-5, "dW " + what)
                        XCTAssertLessThan(maxRelErr(got.dx, whole.dx), 1e-5, "dX " + what)
                    }
                }
            }
        }
    }

    func maxRelErr(_ a: [Float], _ b: [Float]) -> Double {
        let scale = max(1e-12, b.map { Double(abs($0)) }.max() ?? 0)
        return zip(a, b).map { Double(abs($0 - $1)) }.max().map { $0 / scale } ?? 0
    }

    func checkBN(relu: Bool) {
        let store = ParameterStore()
        let bn = BatchNorm2d(store, "bn", channels: 3)
        store.finalize()
        bn.initialise()
        store.values.copy(from: randn(store.paramCount, scale: 0.7).map { $0 + 1 })
        let m = 20
        let x = FloatBuffer(count: 3 * m); x.copy(from: randn(x.count, scale: 2).map { $0 + 0.5 })
        let y = FloatBuffer(count: 3 * m)
        let r = randn(y.count)
        let loss: () -> Double = { bn.forwardTrain(x.ptr, m: m, y.ptr, relu: relu, reducer: nil, updateRunning: false); return self.dot(y.ptr, r) }
        _ = loss()
        store.zeroGrads()
        let dy = FloatBuffer(count: y.count); dy.copy(from: r)
        let dx = FloatBuffer(count: x.count)
        bn.backward(x.ptr, m: m, dy: dy.ptr, reluOut: relu ? UnsafePointer(y.ptr) : nil, dx: dx.ptr, reducer: nil)
        fd("bn relu=\(relu) dgamma,dbeta", x: store.values.ptr, count: store.paramCount, analytic: store.grads.array, eps: 1e-3, loss: loss)
        fd("bn relu=\(relu) dx", x: x.ptr, count: x.count, analytic: dx.array, eps: 1e-3, probes: 60, loss: loss)
    }

    func testBatchNorm() { checkBN(relu: false) }
    func testBatchNormReLU() { checkBN(relu: true) }

    func testBatchNormRunningStatisticsAndEval() {
        let store = ParameterStore()
        let bn = BatchNorm2d(store, "bn", channels: 2)
        store.finalize(); bn.initialise()
        let m = 4
        let xv: [Float] = [1, 2, 3, 4, -1, -1, 1, 1]
        let x = FloatBuffer(count: 8); x.copy(from: xv)
        let y = FloatBuffer(count: 8)
        bn.forwardTrain(x.ptr, m: m, y.ptr, relu: false, reducer: nil)
        let rm = store.state.ptr, rv = store.state.ptr + 2
        // channel 0: mean 2.5, biased var 1.25, unbiased 5/3
        XCTAssertEqual(rm[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(rv[0], 0.9 + 0.1 * 5.0 / 3.0, accuracy: 1e-6)
        XCTAssertEqual(rm[1], 0, accuracy: 1e-6)
        XCTAssertEqual(rv[1], 0.9 + 0.1 * 4.0 / 3.0, accuracy: 1e-6)
        XCTAssertEqual(y.ptr[0], (1 - 2.5) / (1.25 + 1e-5).squareRoot(), accuracy: 1e-5)
        bn.forwardEval(x.ptr, m: m, y.ptr, relu: false)
        XCTAssertEqual(y.ptr[3], (4 - rm[0]) / (rv[0] + 1e-5).squareRoot(), accuracy: 1e-5)
        // A reducer that doubles the sums (two identical ranks) leaves statistics unchanged.
        let y2 = FloatBuffer(count: 8)
        bn.forwardTrain(x.ptr, m: m, y2.ptr, relu: false, reducer: { v in for i in v.indices { v[i] *= 2 } }, updateRunning: false)
        bn.forwardTrain(x.ptr, m: m, y.ptr, relu: false, reducer: nil, updateRunning: false)
        for i in 0..<8 { XCTAssertEqual(y.ptr[i], y2.ptr[i], accuracy: 1e-6) }
    }

    func testLinear() {
        let store = ParameterStore()
        let lin = Linear(store, "fc", inFeatures: 5, outFeatures: 4)
        store.finalize()
        store.values.copy(from: randn(store.paramCount))
        let n = 3
        let x = FloatBuffer(count: n * 5); x.copy(from: randn(x.count))
        let y = FloatBuffer(count: n * 4)
        let r = randn(y.count)
        let loss: () -> Double = { lin.forward(x.ptr, n: n, y.ptr); return self.dot(y.ptr, r) }
        _ = loss()
        store.zeroGrads()
        let dx = FloatBuffer(count: x.count)
        r.withUnsafeBufferPointer { lin.backward(x.ptr, n: n, dy: $0.baseAddress!, dx: dx.ptr) }
        fd("linear dW,db", x: store.values.ptr, count: store.paramCount, analytic: store.grads.array, eps: 1e-3, loss: loss)
        fd("linear dx", x: x.ptr, count: x.count, analytic: dx.array, eps: 1e-3, loss: loss)
    }

    func testPoolAndResidualReLU() {
        // avg pool backward is the adjoint of forward: <pool(x), r> = <x, poolT(r)>
        let c = 3, n = 2, hw = 5
        let x = randn(c * n * hw), r = randn(n * c)
        var f = [Float](repeating: 0, count: n * c), dx = [Float](repeating: 0, count: x.count)
        Elementwise.avgPool(x, c: c, n: n, hw: hw, &f)
        Elementwise.avgPoolBackward(r, c: c, n: n, hw: hw, &dx)
        var lhs = 0.0, rhs = 0.0
        for i in 0..<f.count { lhs += Double(f[i] * r[i]) }
        for i in 0..<x.count { rhs += Double(x[i] * dx[i]) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5)
        // add+relu then mask: gradient flows exactly where the output is positive
        var y = randn(10); let s = randn(10)
        let pre = zip(y, s).map { $0 + $1 }
        Elementwise.addRelu(&y, s, 10)
        var d = [Float](repeating: 1, count: 10)
        Elementwise.reluMask(&d, y, 10)
        for i in 0..<10 { XCTAssertEqual(d[i], pre[i] > 0 ? 1 : 0); XCTAssertEqual(y[i], max(0, pre[i])) }
    }

    /// The whole network (every layer kind, residual paths, downsampling shortcuts, projector)
    /// against finite differences, on a tiny ResNet-18 (width 4) at 32x32.
    /// The network's gradients with dX of its 4x4 layers from the forward's kept kernels (flipped)
    /// equal those with dX's own kernel transform to float rounding (the forward is the same, so no
    /// ReLU mask can differ): width 16 (128 channels at 4x4), 32 images, 2 threads (blocks of 16).
    func testKeptKernelsDataGradient() throws {
        let savedThreads = Threads.count, saved = Conv2d.keepsKernelsForDataGradient
        defer { Threads.set(savedThreads); Conv2d.keepsKernelsForDataGradient = saved }
        Threads.set(2)
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 16, projectorHidden: 32, projectionDim: 8))
        model.initialise(seed: 5)
        let n = 32
        let input = FloatBuffer(count: n * 3 * 32 * 32); input.copy(from: randn(input.count))
        let dz = randn(n * 8)
        var grads: [[Float]] = []
        for keep in [false, true] {
            Conv2d.keepsKernelsForDataGradient = keep
            model.forward(input.ptr, n: n, train: true, updateRunning: false)
            model.store.zeroGrads()
            dz.withUnsafeBufferPointer { model.backward(dZ: $0.baseAddress!) }
            let last = try XCTUnwrap(model.blocks.last)
            XCTAssertEqual(last.conv2.reusedKeptKernels, keep)
            grads.append(model.store.grads.array)
        }
        let err = Compare.relToMax(grads[1], grads[0])
        XCTAssertLessThan(err, 1e-4, "kept-kernel dX against dX's own kernels: relative error \(err)")
        XCTAssertGreaterThan(grads[0].reduce(Float(0)) { max($0, abs($1)) }, 0)
    }

    func testWholeNetwork() throws {
        let model = try ResNetModel(ModelConfig(arch: "resnet18", width: 4, projectorHidden: 8, projectionDim: 5))
        model.initialise(seed: 3)
        let n = 6, h = 32, w = 32
        let input = FloatBuffer(count: n * 3 * h * w); input.copy(from: randn(input.count))
        let r = randn(n * 5)
        let loss: () -> Double = {
            let out = model.forward(input.ptr, n: n, h: h, w: w, train: true, updateRunning: false)
            var s = self.dot(out.z, r)
            for i in 0..<(n * 32) { s += 0.1 * Double(out.feature[i] * out.feature[i]) }
            return s
        }
        let out = model.forward(input.ptr, n: n, h: h, w: w, train: true, updateRunning: false)
        let dfeat = (0..<(n * 32)).map { 0.2 * out.feature[$0] }
        model.store.zeroGrads()
        r.withUnsafeBufferPointer { rz in dfeat.withUnsafeBufferPointer { model.backward(dZ: rz.baseAddress!, dFeature: $0.baseAddress!) } }
        let grads = model.store.grads.array
        // Per tensor, the directional derivative along the unit gradient direction d = g/|g| must
        // equal |g|; this keeps the float32 forward's noise small against the signal.
        for name in ["enc.conv1.weight", "enc.bn1.weight", "enc.layer1.0.conv2.weight", "enc.layer2.0.downsample.0.weight",
                     "enc.layer2.0.downsample.1.bias", "enc.layer3.1.bn2.bias", "enc.layer4.0.conv1.weight",
                     "projector.0.weight", "projector.2.bias"] {
            let p = try XCTUnwrap(model.store.param(name))
            let g = Array(grads[p.offset..<(p.offset + p.count)])
            let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertGreaterThan(norm, 0, name)
            let base = model.store.values.ptr + p.offset
            let saved = Array(UnsafeBufferPointer(start: base, count: p.count))
            func shifted(_ eps: Double) -> Double {
                for i in 0..<p.count { base[i] = saved[i] + Float(eps * Double(g[i]) / norm) }
                defer { for i in 0..<p.count { base[i] = saved[i] } }
                return loss()
            }
            // The loss is strongly curved (batch statistics over 6 images); at eps = 1e-3 the
            // central difference is within ~2% of the derivative and above float32 noise.
            let eps = 1e-3
            let num = (shifted(eps) - shifted(-eps)) / (2 * eps)
            XCTAssertEqual(num, norm, accuracy: 3e-2 * norm, "network \(name): directional FD \(num) vs |g| \(norm)")
        }
    }
}
