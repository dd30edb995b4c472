import Foundation
import COpenBLAS
import MCLCore

/// An error in the inputs of the Gaussian fit or of SEI; the message names the offending item.
public typealias EvalError = MCLError

/// One Gaussian per (main class y, auxiliary label r) fitted to training features (SPEC 8).
///
/// For the n_{y,r} samples x_i of group (y, r), in double precision:
///   mu = (1/n) sum_i x_i,
///   Sigma = (1/(n-1)) sum_i (x_i - mu)(x_i - mu)^T + lambda I   (unbiased, ridge lambda),
///   Sigma = L L^T (Cholesky, LAPACKE_dpotrf, L lower triangular),
///   D(x) = sqrt((x - mu)^T Sigma^{-1} (x - mu)) = || L^{-1} (x - mu) ||_2  (triangular solve).
///
/// lambda is `ridge` (default 1e-6) unless the group is degenerate: with n <= d samples (the
/// centred samples span at most n-1 < d dimensions, so Sigma - lambda I is singular) lambda is
/// raised to max(ridge, 0.01 tr(S)/d), S the sample covariance (the pooled one of all training
/// features when tr(S) = 0, e.g. n = 1); if dpotrf still fails, lambda is multiplied by 10 until
/// it succeeds. Each such change adds a line naming the class and rotation to `warnings` (also
/// printed to stderr). A group without samples gets distance +infinity (never NaN).
///
/// Storage is [C, R, d] for the means and [C, R, d, d] (row-major, lower triangle) for the
/// Cholesky factors; `covariance(main:aux:)` rebuilds Sigma = L L^T on demand.
public struct ClassGaussians: Sendable {
    public let numMain: Int
    public let numAux: Int
    public let dim: Int
    /// The requested ridge lambda.
    public let ridge: Double
    /// [C, R, d] group means.
    public let means: [Double]
    /// [C, R, d, d] row-major lower Cholesky factors L of Sigma (upper triangle zero).
    public let cholesky: [Double]
    /// [C, R] samples per group.
    public let counts: [Int]
    /// [C, R] ridge actually added to each covariance.
    public let ridges: [Double]
    /// Degenerate groups: one line each naming class and rotation.
    public let warnings: [String]

    /// Fits the C*R Gaussians.
    /// - Parameters:
    ///   - features: [n, dim] row-major float features.
    ///   - mainLabels: n main labels in 0..<numMain; auxLabels: n auxiliary labels (rotations) in
    ///     0..<numAux (all 0 with numAux = 1 for a model without the auxiliary task).
    ///   - classNames: optional names used in warnings.
    ///   - printWarnings: also write each warning to stderr.
    public init(features: [Float], dim: Int, mainLabels: [Int], auxLabels: [Int],
                numMain: Int, numAux: Int, ridge: Double = 1e-6,
                classNames: [String]? = nil, printWarnings: Bool = true) throws {
        let n = mainLabels.count
        guard dim > 0 else { throw EvalError("ClassGaussians: dimension \(dim) must be positive") }
        guard numMain > 0, numAux > 0 else {
            throw EvalError("ClassGaussians: numMain \(numMain) and numAux \(numAux) must be positive")
        }
        guard features.count == n * dim else {
            throw EvalError("ClassGaussians: \(features.count) feature values for \(n) samples of dimension \(dim)")
        }
        guard auxLabels.count == n else {
            throw EvalError("ClassGaussians: \(auxLabels.count) auxiliary labels for \(n) samples")
        }
        guard ridge >= 0, ridge.isFinite else { throw EvalError("ClassGaussians: ridge \(ridge) must be >= 0") }
        if let i = features.firstIndex(where: { !$0.isFinite }) {
            throw EvalError("ClassGaussians: feature of sample \(i / dim), dimension \(i % dim) is \(features[i])")
        }
        let C = numMain, R = numAux, d = dim
        var members = [[Int]](repeating: [], count: C * R)
        for i in 0..<n {
            let y = mainLabels[i], r = auxLabels[i]
            guard y >= 0 && y < C else { throw EvalError("ClassGaussians: sample \(i) has main label \(y), expected 0..<\(C)") }
            guard r >= 0 && r < R else { throw EvalError("ClassGaussians: sample \(i) has auxiliary label \(r), expected 0..<\(R)") }
            members[y * R + r].append(i)
        }

        // Pooled per-dimension variance (only needed as a scale for degenerate groups).
        lazy var pooledScale: Double = {
            guard n >= 2 else { return 1 }
            var mean = [Double](repeating: 0, count: d), m2 = [Double](repeating: 0, count: d)
            for i in 0..<n { for j in 0..<d { mean[j] += Double(features[i * d + j]) } }
            for j in 0..<d { mean[j] /= Double(n) }
            for i in 0..<n { for j in 0..<d { let t = Double(features[i * d + j]) - mean[j]; m2[j] += t * t } }
            let s = m2.reduce(0, +) / Double(n - 1) / Double(d)
            return s > 0 ? s : 1
        }()

        var means = [Double](repeating: 0, count: C * R * d)
        var chol = [Double](repeating: 0, count: C * R * d * d)
        var ridges = [Double](repeating: ridge, count: C * R)
        var warnings: [String] = []
        func name(_ y: Int) -> String {
            if let classNames, y < classNames.count { return "class \(y) (\(classNames[y]))" }
            return "class \(y)"
        }

        for g in 0..<(C * R) {
            let y = g / R, r = g % R
            let idx = members[g]
            let m = idx.count
            if m == 0 {
                for j in 0..<d { chol[g * d * d + j * d + j] = 1 }
                warnings.append("\(name(y)) rotation \(r): no training samples; its Gaussian is empty and every distance to it is +infinity")
                continue
            }
            // Gather the group's samples, mean, centre.
            var x = [Double](repeating: 0, count: m * d)
            var mu = [Double](repeating: 0, count: d)
            for (k, i) in idx.enumerated() {
                for j in 0..<d {
                    let v = Double(features[i * d + j])
                    x[k * d + j] = v
                    mu[j] += v
                }
            }
            for j in 0..<d { mu[j] /= Double(m) }
            for k in 0..<m { for j in 0..<d { x[k * d + j] -= mu[j] } }
            for j in 0..<d { means[g * d + j] = mu[j] }

            // S = X^T X / (m - 1) (lower triangle via dsyrk, then mirrored).
            var s = [Double](repeating: 0, count: d * d)
            if m >= 2 {
                x.withUnsafeBufferPointer { xp in
                    s.withUnsafeMutableBufferPointer { sp in
                        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, Int32(d), Int32(m),
                                    1.0 / Double(m - 1), xp.baseAddress, Int32(d), 0.0, sp.baseAddress, Int32(d))
                    }
                }
                for i in 0..<d { for j in (i + 1)..<d { s[i * d + j] = s[j * d + i] } }
            }
            var trace = 0.0
            for j in 0..<d { trace += s[j * d + j] }

            var lambda = ridge
            var reason: String? = nil
            if m <= d {
                let scale = trace > 0 ? trace / Double(d) : pooledScale
                lambda = max(ridge, 0.01 * scale)
                reason = "\(m) training samples for \(d) dimensions (covariance of rank <= \(m - 1))"
            }
            var attempts = 0
            while true {
                var a = s
                for j in 0..<d { a[j * d + j] += lambda }
                let info = a.withUnsafeMutableBufferPointer { ap in
                    LAPACKE_dpotrf(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(d), ap.baseAddress, Int32(d))
                }
                if info == 0 {
                    for i in 0..<d {
                        for j in 0..<d { chol[g * d * d + i * d + j] = j <= i ? a[i * d + j] : 0 }
                    }
                    break
                }
                if reason == nil {
                    reason = "covariance + \(lambda) I is not positive definite (dpotrf info \(info))"
                }
                attempts += 1
                if attempts > 60 {
                    throw EvalError("ClassGaussians: \(name(y)) rotation \(r): no ridge makes the covariance positive definite (features not finite?)")
                }
                let base = max(lambda, trace > 0 ? 1e-12 * trace / Double(d) : 1e-12 * pooledScale)
                lambda = base * 10
            }
            ridges[g] = lambda
            if let reason {
                warnings.append("\(name(y)) rotation \(r): \(reason); ridge raised from \(ridge) to \(String(format: "%.3g", lambda))")
            }
        }
        if printWarnings {
            for w in warnings { FileHandle.standardError.write(Data(("warning: Gaussian " + w + "\n").utf8)) }
        }
        self.numMain = C
        self.numAux = R
        self.dim = d
        self.ridge = ridge
        self.means = means
        self.cholesky = chol
        self.counts = members.map(\.count)
        self.ridges = ridges
        self.warnings = warnings
    }

    /// Rebuilds a fitted model from its parts (see `write(to:)`).
    public init(numMain: Int, numAux: Int, dim: Int, ridge: Double, means: [Double], cholesky: [Double],
                counts: [Int], ridges: [Double], warnings: [String] = []) throws {
        let g = numMain * numAux
        guard means.count == g * dim, cholesky.count == g * dim * dim, counts.count == g, ridges.count == g else {
            throw EvalError("ClassGaussians: parts do not match C=\(numMain), R=\(numAux), d=\(dim)")
        }
        self.numMain = numMain
        self.numAux = numAux
        self.dim = dim
        self.ridge = ridge
        self.means = means
        self.cholesky = cholesky
        self.counts = counts
        self.ridges = ridges
        self.warnings = warnings
    }

    /// The mean mu of group (main class y, rotation r), d values.
    public func mean(main y: Int, aux r: Int) -> [Double] {
        let g = y * numAux + r
        return Array(means[(g * dim)..<((g + 1) * dim)])
    }

    /// Sigma = L L^T of group (y, r), ridge included, [d, d] row-major.
    public func covariance(main y: Int, aux r: Int) -> [Double] {
        let d = dim, g = y * numAux + r
        var out = [Double](repeating: 0, count: d * d)
        cholesky.withUnsafeBufferPointer { lp in
            out.withUnsafeMutableBufferPointer { op in
                cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, Int32(d), Int32(d), 1.0,
                            lp.baseAddress! + g * d * d, Int32(d), 0.0, op.baseAddress, Int32(d))
            }
        }
        for i in 0..<d { for j in (i + 1)..<d { out[i * d + j] = out[j * d + i] } }
        return out
    }

    /// All covariances, [C, R, d, d].
    public var covariances: [Double] {
        var all: [Double] = []
        all.reserveCapacity(numMain * numAux * dim * dim)
        for y in 0..<numMain { for r in 0..<numAux { all += covariance(main: y, aux: r) } }
        return all
    }

    /// Mahalanobis distances of one vector x (d values) to the Gaussians (y, r) of rotation r, y in
    /// 0..<C: D_y = || L_{y,r}^{-1} (x - mu_{y,r}) ||.
    public func distances(_ x: [Double], rotation r: Int) -> [Double] {
        precondition(x.count == dim, "distances: vector of \(x.count) values, dimension is \(dim)")
        return x.withUnsafeBufferPointer { distances(rows: $0.baseAddress!, count: 1, stride: dim, rotation: r) }
    }

    /// Distances of n feature rows ([n, d] row-major) to the Gaussians of rotation r: [n, C].
    public func distances(_ x: [Float], count n: Int, rotation r: Int) -> [Double] {
        precondition(x.count == n * dim, "distances: \(x.count) values for \(n) rows of dimension \(dim)")
        return x.withUnsafeBufferPointer { distances(rows: $0.baseAddress!, count: n, stride: dim, rotation: r) }
    }

    /// Float rows x_i at `rows + i * stride` (d values each, e.g. one view of [T, V, d] with
    /// stride V*d): distances [n, C] to the Gaussians of rotation r.
    public func distances(rows: UnsafePointer<Float>, count n: Int, stride: Int, rotation r: Int) -> [Double] {
        let d = dim
        return distanceKernel(count: n, rotation: r) { i, mu, dst in
            let src = rows + i * stride
            for j in 0..<d { dst[j] = Double(src[j]) - mu[j] }
        }
    }

    /// Double rows x_i at `rows + i * stride`: distances [n, C] to the Gaussians of rotation r.
    public func distances(rows: UnsafePointer<Double>, count n: Int, stride: Int, rotation r: Int) -> [Double] {
        let d = dim
        return distanceKernel(count: n, rotation: r) { i, mu, dst in
            let src = rows + i * stride
            for j in 0..<d { dst[j] = src[j] - mu[j] }
        }
    }

    /// Batch kernel: for every class y the centred block Y = [x_i - mu_{y,r}] (rows, double) is
    /// solved in place, Y <- Y L^{-T} (cblas_dtrsm: right side, lower, transposed), so row i
    /// becomes (L^{-1}(x_i - mu))^T and D_iy is its Euclidean norm. Rows are processed in blocks
    /// of at most 16 MB of scratch. `centre(i, mu, dst)` writes x_i - mu into dst.
    private func distanceKernel(count n: Int, rotation r: Int,
                                centre: (Int, UnsafePointer<Double>, UnsafeMutablePointer<Double>) -> Void) -> [Double] {
        precondition(r >= 0 && r < numAux, "rotation \(r) outside 0..<\(numAux)")
        let d = dim, C = numMain
        var out = [Double](repeating: 0, count: n * C)
        let block = max(1, min(n, (1 << 21) / max(d, 1)))
        var y = [Double](repeating: 0, count: block * d)
        var start = 0
        while start < n {
            let b = min(block, n - start)
            for c in 0..<C {
                let g = c * numAux + r
                if counts[g] == 0 {
                    for i in 0..<b { out[(start + i) * C + c] = .infinity }
                    continue
                }
                means.withUnsafeBufferPointer { mp in
                    y.withUnsafeMutableBufferPointer { yp in
                        for i in 0..<b { centre(start + i, mp.baseAddress! + g * d, yp.baseAddress! + i * d) }
                    }
                }
                y.withUnsafeMutableBufferPointer { yp in
                    cholesky.withUnsafeBufferPointer { lp in
                        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                                    Int32(b), Int32(d), 1.0, lp.baseAddress! + g * d * d, Int32(d),
                                    yp.baseAddress, Int32(d))
                    }
                }
                y.withUnsafeBufferPointer { yp in
                    for i in 0..<b {
                        var s = 0.0
                        let row = yp.baseAddress! + i * d
                        for j in 0..<d { s += row[j] * row[j] }
                        out[(start + i) * C + c] = s.squareRoot()
                    }
                }
            }
            start += b
        }
        return out
    }

    /// Saves the fit (means, Cholesky factors, counts, ridges) as a safetensors file.
    public func write(to path: String) throws {
        var w = SafeTensorsWriter()
        w.metadata = ["kind": "mcl-dist class gaussians", "num_main": "\(numMain)", "num_aux": "\(numAux)",
                      "dim": "\(dim)", "ridge": "\(ridge)", "warnings": warnings.joined(separator: "\n")]
        w.add("means", shape: [numMain, numAux, dim], doubles: means)
        w.add("cholesky", shape: [numMain, numAux, dim, dim], doubles: cholesky)
        w.add("counts", shape: [numMain, numAux], int64s: counts.map(Int64.init))
        w.add("ridges", shape: [numMain, numAux], doubles: ridges)
        try w.write(to: path)
    }

    /// Loads a fit saved by `write(to:)`.
    public init(contentsOf path: String) throws {
        let f = try SafeTensorsFile(path: path)
        let C = Int(try f.metaDouble("num_main")), R = Int(try f.metaDouble("num_aux")), d = Int(try f.metaDouble("dim"))
        let w = f.metadata["warnings"].map { $0.isEmpty ? [] : $0.components(separatedBy: "\n") } ?? []
        try self.init(numMain: C, numAux: R, dim: d, ridge: try f.metaDouble("ridge"),
                      means: try f.doubles("means", shape: [C, R, d]),
                      cholesky: try f.doubles("cholesky", shape: [C, R, d, d]),
                      counts: try f.ints("counts", shape: [C, R]),
                      ridges: try f.doubles("ridges", shape: [C, R]), warnings: w)
    }
}
