import Foundation
import MCLCore

/// im2col + GEMM in per-thread chunks that stay in L2.
///
/// The plain im2col path gathers the whole `[Cin*k*k, n*Ho*Wo]` matrix (tens of MB at a batch of
/// 64-256) and then multiplies it on all threads, so the gather's writes and the GEMM's reads go to
/// memory: for the stride-2 layers the GEMM itself runs at 60-100% of the sgemm peak, the layer at
/// 20-55% (docs/performance.md). Here each thread owns a contiguous range of images and walks it
/// in chunks of about `chunkFloats` floats of columns (at least 1024 columns): it gathers a chunk
/// and multiplies it at once with a one-thread GEMM, while the chunk is still in its L2.
///
/// - forward: `Y[:, chunk] = W · col(X)[:, chunk]` (disjoint output columns per thread);
/// - dW: each thread sums `dY[:, chunk] · col(X)[:, chunk]^T` into its own partial, and the
///   partials are added in thread order (so results repeat at a given thread count);
/// - dX (any stride): `dcol = W^T · dY[:, chunk]`, then col2im into the chunk's own images.
extension Conv2d {
    /// Floats of one thread's im2col chunk: 1 MB, half of this machine's per-core L2.
    nonisolated(unsafe) public static var chunkFloats =
        Int(ProcessInfo.processInfo.environment["MCL_IM2COL_CHUNK"] ?? "") ?? 256 * 1024
    /// Fewest columns per chunk: narrower, the one-thread GEMM gets too thin (K = Cin*9 is large).
    nonisolated(unsafe) public static var minChunkColumns = 1024
    /// `MCL_IM2COL_CHUNK=0` keeps the whole-batch im2col path (for comparisons).
    static var usesThreadChunks: Bool { chunkFloats > 0 && !Conv2d.deterministic }

    /// Threads, images per thread and images per chunk for `n` images of `ho x wo` outputs.
    func threadChunking(n: Int, ho: Int, wo: Int) -> (threads: Int, perThread: Int, chunk: Int) {
        let t = max(1, min(Threads.count, n))
        let perThread = (n + t - 1) / t
        let columns = Conv2d.minChunkColumns
        let fit = max(Conv2d.chunkFloats / max(1, kdim * ho * wo), (columns + ho * wo - 1) / (ho * wo))
        var chunk = max(1, min(perThread, fit))
        // Rows of a chunk a multiple of 4 KB apart (1024 floats: 4 images of 16x16 outputs, 16 of
        // 8x8) put a column's 9 taps, and the GEMM's reads of K rows, into one L1 set: one more
        // image breaks the pattern (width 64, batch 64, Zen 4: 64->128 stride-2 dW 15.8-16.2 ->
        // 13.8 ms, 128->256 dW 13.8-13.9 -> 13.0).
        if (chunk * ho * wo) % 1024 == 0 && chunk < perThread { chunk += 1 }
        return (t, perThread, chunk)
    }

    /// Calls `body(thread, n0, cn, col)` for every chunk `n0 ..< n0 + cn` of the thread's images.
    func forEachChunk(n: Int, ho: Int, wo: Int, ws: Workspace,
                      _ body: (_ thread: Int, _ n0: Int, _ cn: Int, _ col: UnsafeMutablePointer<Float>) -> Void) {
        let (t, perThread, chunk) = threadChunking(n: n, ho: ho, wo: wo)
        let colFloats = kdim * chunk * ho * wo
        let cols = ws.get("conv.tcol", t * colFloats)
        Threads.parallelFor(t) { k in
            var n0 = k * perThread
            let end = min(n, n0 + perThread)
            while n0 < end {
                let cn = min(chunk, end - n0)
                body(k, n0, cn, cols + k * colFloats)
                n0 += cn
            }
        }
    }

    func forwardChunks(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, _ y: UnsafeMutablePointer<Float>, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w), total = n * ho * wo
        forEachChunk(n: n, ho: ho, wo: wo, ws: ws) { _, n0, cn, col in
            let cols = cn * ho * wo
            Conv2d.im2col(x, channels: cin, kernel: kernel, stride: stride, pad: pad, n: n, h: h, w: w,
                          n0: n0, cn: cn, ho: ho, wo: wo, col: col, parallel: false)
            sgemmCall(false, false, cout, cols, kdim, 1, weight, kdim, col, cols, 0, y + n0 * ho * wo, total)
        }
    }

    func weightGradientChunks(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, dy: UnsafePointer<Float>, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w), total = n * ho * wo
        let t = threadChunking(n: n, ho: ho, wo: wo).threads
        let wcount = cout * kdim
        // One thread accumulates straight into the gradient; several into zeroed partials (a
        // thread may have no image) added in order.
        let partials = t > 1 ? ws.get("conv.tdw", t * wcount) : weightGrad
        if t > 1 { memset(partials, 0, t * wcount * MemoryLayout<Float>.stride) }
        forEachChunk(n: n, ho: ho, wo: wo, ws: ws) { k, n0, cn, col in
            let cols = cn * ho * wo
            Conv2d.im2col(x, channels: cin, kernel: kernel, stride: stride, pad: pad, n: n, h: h, w: w,
                          n0: n0, cn: cn, ho: ho, wo: wo, col: col, parallel: false)
            sgemmCall(false, true, cout, kdim, cols, 1, dy + n0 * ho * wo, total, col, cols,
                      1, partials + (t > 1 ? k * wcount : 0), kdim)
        }
        if t > 1 {
            let g = weightGrad
            Threads.parallelRange(wcount, minPerThread: 4096) { s, e in
                for k in 0..<t {
                    let part = partials + k * wcount
                    for i in s..<e { g[i] += part[i] }
                }
            }
        }
    }

    func dataGradientChunks(_ dy: UnsafePointer<Float>, n: Int, h: Int, w: Int, dx: UnsafeMutablePointer<Float>,
                            accumulate: Bool, ws: Workspace) {
        let ho = outSize(h), wo = outSize(w), total = n * ho * wo
        forEachChunk(n: n, ho: ho, wo: wo, ws: ws) { _, n0, cn, col in
            let cols = cn * ho * wo
            if !accumulate {
                for ci in 0..<cin { memset(dx + (ci * n + n0) * h * w, 0, cn * h * w * MemoryLayout<Float>.stride) }
            }
            sgemmCall(true, false, kdim, cols, cout, 1, weight, kdim, dy + n0 * ho * wo, total, 0, col, cols)
            col2im(col, n: n, h: h, w: w, n0: n0, cn: cn, ho: ho, wo: wo, dx: dx, parallel: false)
        }
    }
}
