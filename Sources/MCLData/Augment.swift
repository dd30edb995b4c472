import Foundation
import MCLCore

// MARK: - Deterministic image operations (torchvision semantics, float32 CHW in [0,1])

/// Luma weights of torchvision's `rgb_to_grayscale` (tensor path): L = 0.2989 R + 0.587 G + 0.114 B.
/// (SPEC 7 writes 0.299; the golden vectors use torchvision's 0.2989, which is what we match.)
public let grayWeights: (r: Float, g: Float, b: Float) = (0.2989, 0.587, 0.114)

/// Low-level kernels on raw CHW planes (3 channels of `n` pixels), used in place by the
/// augmentation pipeline and wrapped by `FloatImage`.
public enum ImageKernels {
    @inline(__always) static func clamp01(_ x: Float) -> Float { min(max(x, 0), 1) }

    /// Brightness (torchvision `adjust_brightness`): x' = clamp(f x, 0, 1) (a blend with black).
    public static func brightness(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ f: Float) {
        for i in 0..<(3 * n) { p[i] = clamp01(f * p[i]) }
    }

    /// Contrast (`adjust_contrast`): m = mean over pixels of L; x' = clamp(f x + (1 - f) m, 0, 1).
    public static func contrast(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ f: Float) {
        var sum: Double = 0
        for i in 0..<n { sum += Double(grayWeights.r * p[i] + grayWeights.g * p[n + i] + grayWeights.b * p[2 * n + i]) }
        let m = Float(sum / Double(n))
        let off = (1 - f) * m
        for i in 0..<(3 * n) { p[i] = clamp01(f * p[i] + off) }
    }

    /// Saturation (`adjust_saturation`): per pixel L; x' = clamp(f x + (1 - f) L, 0, 1).
    public static func saturation(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ f: Float) {
        let g = 1 - f
        for i in 0..<n {
            let l = g * (grayWeights.r * p[i] + grayWeights.g * p[n + i] + grayWeights.b * p[2 * n + i])
            p[i] = clamp01(f * p[i] + l)
            p[n + i] = clamp01(f * p[n + i] + l)
            p[2 * n + i] = clamp01(f * p[2 * n + i] + l)
        }
    }

    /// Hue (`adjust_hue`, torchvision's `_rgb2hsv` / `_hsv2rgb`): with M = max(r,g,b), m = min,
    /// C = M - m: V = M, S = C / M (0 if C = 0), H = ((h' / 6 + 1) mod 1) where h' = (b - g)/C if
    /// M = r, 2 + (r - b)/C if M = g != r, else 4 + (g - r)/C. Then H <- (H + f) mod 1 and back:
    /// i = floor(6H) mod 6, u = 6H - floor(6H), p = V(1-S), q = V(1-S u), t = V(1-S(1-u)) (each
    /// clamped to [0,1]), (r,g,b) = (V,t,p), (q,V,p), (p,V,t), (p,q,V), (t,p,V), (V,p,q) for i = 0..5.
    public static func hue(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ f: Float) {
        for i in 0..<n {
            let r = p[i], g = p[n + i], b = p[2 * n + i]
            let maxc = max(r, max(g, b)), minc = min(r, min(g, b))
            let eq = maxc == minc
            let cr = maxc - minc
            let s = cr / (eq ? 1 : maxc)
            let d: Float = eq ? 1 : cr
            var h: Float
            if maxc == r {
                h = (maxc - b) / d - (maxc - g) / d
            } else if maxc == g {
                h = 2 + (maxc - r) / d - (maxc - b) / d
            } else {
                h = 4 + (maxc - g) / d - (maxc - r) / d
            }
            // h in [-1, 5], so (h/6 + 1) mod 1 needs one conditional subtraction (exact).
            h = h / 6 + 1
            if h >= 1 { h -= 1 }
            // (h + f) mod 1 with f in [-1/2, 1/2], as Python's %.
            h += f
            if h < 0 { h += 1 } else if h >= 1 { h -= 1 }
            // HSV -> RGB, branch-free form of the six sectors: channel value V - V S w(k) with
            // k = (m + 6H) mod 6, m = 5, 3, 1 for R, G, B and w(k) = clamp(min(k, 4 - k), 0, 1):
            // this gives V, t = V(1 - S(1-u)), p = V(1-S) or q = V(1 - S u) exactly where
            // torchvision's table does.
            let h6 = h * 6
            let v = maxc, vs = maxc * s
            var kr = 5 + h6; if kr >= 6 { kr -= 6 }
            var kg = 3 + h6; if kg >= 6 { kg -= 6 }
            var kb = 1 + h6; if kb >= 6 { kb -= 6 }
            p[i] = v - vs * clamp01(min(kr, 4 - kr))
            p[n + i] = v - vs * clamp01(min(kg, 4 - kg))
            p[2 * n + i] = v - vs * clamp01(min(kb, 4 - kb))
        }
    }

    /// Grayscale with 3 output channels (`rgb_to_grayscale(img, 3)`): every channel = L.
    public static func grayscale(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let l = grayWeights.r * p[i] + grayWeights.g * p[n + i] + grayWeights.b * p[2 * n + i]
            p[i] = l; p[n + i] = l; p[2 * n + i] = l
        }
    }

    /// Crop rows [top, top+ch) x columns [left, left+cw) of each channel of `src` (c x h x w) and
    /// resize to oh x ow into `dst` by bilinear interpolation with align_corners = False
    /// (torch `interpolate(mode="bilinear")`; only upsampling occurs here, where antialiasing is moot):
    /// source coordinate s = max((o + 1/2) * (in / out) - 1/2, 0), i0 = floor(s), i1 = min(i0 + 1,
    /// in - 1), lambda = s - i0; out = (1-ly)[(1-lx) x00 + lx x01] + ly[(1-lx) x10 + lx x11].
    public static func resizedCrop(src: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
                                   top: Int, left: Int, cropHeight ch: Int, cropWidth cw: Int,
                                   dst: UnsafeMutablePointer<Float>, outHeight oh: Int, outWidth ow: Int) {
        precondition(top >= 0 && left >= 0 && ch > 0 && cw > 0 && top + ch <= height && left + cw <= width,
                     "crop (\(top), \(left), \(ch), \(cw)) outside \(height)x\(width)")
        let sy = Float(ch) / Float(oh), sx = Float(cw) / Float(ow)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * (oh + ow)) { idx in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: oh + ow) { lam in
                for o in 0..<oh {
                    let s = max(sy * (Float(o) + 0.5) - 0.5, 0)
                    let i0 = Int(s)
                    idx[2 * o] = top + i0
                    idx[2 * o + 1] = top + i0 + (i0 < ch - 1 ? 1 : 0)
                    lam[o] = s - Float(i0)
                }
                for o in 0..<ow {
                    let s = max(sx * (Float(o) + 0.5) - 0.5, 0)
                    let i0 = Int(s)
                    idx[2 * oh + 2 * o] = left + i0
                    idx[2 * oh + 2 * o + 1] = left + i0 + (i0 < cw - 1 ? 1 : 0)
                    lam[oh + o] = s - Float(i0)
                }
                // Separable, in torch's order: rows first (the ch source rows of the crop),
                // then the vertical blend, a contiguous loop over x.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: ch * ow) { tmpBuffer in
                    let tmp = tmpBuffer.baseAddress!
                    for c in 0..<channels {
                        let sp = src + c * height * width + top * width
                        let dp = dst + c * oh * ow
                        for y in 0..<ch {
                            let row = sp + y * width, trow = tmp + y * ow
                            for x in 0..<ow {
                                let lx = lam[oh + x]
                                trow[x] = (1 - lx) * row[idx[2 * oh + 2 * x]] + lx * row[idx[2 * oh + 2 * x + 1]]
                            }
                        }
                        for y in 0..<oh {
                            let t0 = tmp + (idx[2 * y] - top) * ow, t1 = tmp + (idx[2 * y + 1] - top) * ow
                            let ly = lam[y], hy = 1 - ly
                            let drow = dp + y * ow
                            for x in 0..<ow { drow[x] = hy * t0[x] + ly * t1[x] }
                        }
                    }
                }
            }
        }
    }

    /// 1/255 * v for every byte value (torchvision `to_tensor`: x = v / 255 in float32).
    static let unitLUT: [Float] = (0..<256).map { Float($0) / 255 }

    /// Writes rot90_k(F(x)) of a square uint8 CHW image `src` (side n) as floats in [0,1]:
    /// F = identity, horizontal flip (x[a][n-1-b]) or vertical flip (x[n-1-a][b]); rot90 is
    /// counter-clockwise as displayed (torch.rot90(img, k, dims=[1, 2])):
    /// k=1: out[i][j] = y[j][n-1-i]; k=2: y[n-1-i][n-1-j]; k=3: y[n-1-j][i].
    public static func orient(src: UnsafePointer<UInt8>, channels: Int, side n: Int, rotation k: Int,
                              preFlip: PreFlip, dst: UnsafeMutablePointer<Float>) {
        // Source row a and column b are affine in (i, j): a = a0 + ai i + aj j, b = b0 + bi i + bj j.
        var (a0, ai, aj, b0, bi, bj): (Int, Int, Int, Int, Int, Int)
        switch ((k % 4) + 4) % 4 {
        case 0: (a0, ai, aj, b0, bi, bj) = (0, 1, 0, 0, 0, 1)
        case 1: (a0, ai, aj, b0, bi, bj) = (0, 0, 1, n - 1, -1, 0)
        case 2: (a0, ai, aj, b0, bi, bj) = (n - 1, -1, 0, n - 1, 0, -1)
        default: (a0, ai, aj, b0, bi, bj) = (n - 1, 0, -1, 0, 1, 0)
        }
        switch preFlip {
        case .none: break
        case .horizontal: (b0, bi, bj) = (n - 1 - b0, -bi, -bj)
        case .vertical: (a0, ai, aj) = (n - 1 - a0, -ai, -aj)
        }
        let base = a0 * n + b0, si = ai * n + bi, sj = aj * n + bj
        unitLUT.withUnsafeBufferPointer { lutBuffer in
            let lut = lutBuffer.baseAddress!
            for c in 0..<channels {
                let sp = src + c * n * n + base, dp = dst + c * n * n
                for i in 0..<n {
                    let row = sp + si * i, drow = dp + i * n
                    for j in 0..<n { drow[j] = lut[Int(row[sj * j])] }
                }
            }
        }
    }

    /// A flip applied to the image before it is rotated.
    public enum PreFlip: Sendable { case none, horizontal, vertical }
}

/// A float32 image, channel-major (CHW), values in [0,1]. The methods return new images and are
/// the deterministic operations of SPEC 7, each checked against torchvision's golden vectors.
public struct FloatImage: Sendable, Equatable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public var pixels: [Float]

    public init(channels: Int, height: Int, width: Int, pixels: [Float]) {
        precondition(pixels.count == channels * height * width)
        self.channels = channels; self.height = height; self.width = width; self.pixels = pixels
    }

    /// From uint8 CHW bytes: x = v / 255.
    public init(bytes: UnsafeBufferPointer<UInt8>, channels: Int, height: Int, width: Int) {
        self.init(channels: channels, height: height, width: width, pixels: bytes.map { Float($0) / 255 })
    }

    private var plane: Int { height * width }

    private func mapped(_ body: (UnsafeMutablePointer<Float>, Int) -> Void) -> FloatImage {
        precondition(channels == 3, "colour operations need 3 channels")
        var r = self
        let n = plane
        r.pixels.withUnsafeMutableBufferPointer { body($0.baseAddress!, n) }
        return r
    }

    public func adjustBrightness(_ factor: Float) -> FloatImage { mapped { ImageKernels.brightness($0, $1, factor) } }
    public func adjustContrast(_ factor: Float) -> FloatImage { mapped { ImageKernels.contrast($0, $1, factor) } }
    public func adjustSaturation(_ factor: Float) -> FloatImage { mapped { ImageKernels.saturation($0, $1, factor) } }
    /// `factor` in [-0.5, 0.5], a fraction of the hue circle.
    public func adjustHue(_ factor: Float) -> FloatImage { mapped { ImageKernels.hue($0, $1, factor) } }
    public func toGrayscale() -> FloatImage { mapped { ImageKernels.grayscale($0, $1) } }

    /// torchvision `resized_crop(img, top, left, height, width, [outHeight, outWidth], BILINEAR)`.
    public func resizedCrop(top: Int, left: Int, height ch: Int, width cw: Int, outHeight: Int = 32, outWidth: Int = 32) -> FloatImage {
        var out = [Float](repeating: 0, count: channels * outHeight * outWidth)
        pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                ImageKernels.resizedCrop(src: s.baseAddress!, channels: channels, height: height, width: width,
                                         top: top, left: left, cropHeight: ch, cropWidth: cw,
                                         dst: d.baseAddress!, outHeight: outHeight, outWidth: outWidth)
            }
        }
        return FloatImage(channels: channels, height: outHeight, width: outWidth, pixels: out)
    }

    /// Horizontal flip (mirror left-right): out[c][i][j] = x[c][i][W-1-j].
    public func hflip() -> FloatImage {
        var out = pixels
        for c in 0..<channels { for i in 0..<height { for j in 0..<width {
            out[(c * height + i) * width + j] = pixels[(c * height + i) * width + width - 1 - j]
        } } }
        return FloatImage(channels: channels, height: height, width: width, pixels: out)
    }

    /// Vertical flip (upside down): out[c][i][j] = x[c][H-1-i][j].
    public func vflip() -> FloatImage {
        var out = pixels
        for c in 0..<channels { for i in 0..<height { for j in 0..<width {
            out[(c * height + i) * width + j] = pixels[(c * height + height - 1 - i) * width + j]
        } } }
        return FloatImage(channels: channels, height: height, width: width, pixels: out)
    }

    /// torch.rot90(img, k, dims=[1, 2]): k quarter turns counter-clockwise as displayed.
    /// One turn: out[c][i][j] = x[c][j][W-1-i] (shape H x W -> W x H).
    public func rot90(_ k: Int) -> FloatImage {
        var img = self
        for _ in 0..<(((k % 4) + 4) % 4) {
            let h = img.height, w = img.width
            var out = img.pixels
            for c in 0..<channels { for i in 0..<w { for j in 0..<h {
                out[(c * w + i) * h + j] = img.pixels[(c * h + j) * w + (w - 1 - i)]
            } } }
            img = FloatImage(channels: channels, height: w, width: h, pixels: out)
        }
        return img
    }
}

// MARK: - Random augmentation (SPEC 7)

/// How the random flip relates to the rotation.
public enum FlipVariant: String, Sendable, CaseIterable {
    /// SPEC 7 and the authors' code (`ood_dsetpair`): horizontal flip for rotations 0/180 and
    /// vertical flip for 90/270, applied after the rotation. This is exactly a horizontal flip
    /// in the image's original frame (rot_k(hflip x)), so the two wordings of SPEC 7 coincide and
    /// the rotation label stays unambiguous.
    case official
    /// Always a horizontal flip of the rotated image (torchvision's RandomHorizontalFlip after
    /// rotating, as CSI does). For 90/270 this equals rot_{k+2}(hflip x): the flipped view looks
    /// like the other odd rotation. Provided for comparison only.
    case rotatedFrame = "rotated-frame"
}

/// The augmentation hyper-parameters (defaults = SPEC 7 = SimCLR's CIFAR recipe, strength 0.5).
public struct AugmentOptions: Sendable, Equatable {
    public var flipVariant: FlipVariant = .official
    public var flipProbability: Double = 0.5
    /// RandomResizedCrop on/off, area scale range and aspect-ratio range (log-uniform).
    public var randomCrop = true
    public var cropScale: ClosedRange<Double> = 0.08...1.0
    public var cropRatio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)
    /// ColorJitter applied with this probability; brightness/contrast/saturation factors are
    /// uniform in [max(0, 1-x), 1+x], hue in [-h, h].
    public var jitterProbability: Double = 0.8
    public var brightness: Double = 0.4
    public var contrast: Double = 0.4
    public var saturation: Double = 0.4
    public var hue: Double = 0.1
    public var grayscaleProbability: Double = 0.2
    /// > 0: instead of the resized crop, torchvision's `RandomCrop(side, padding: padCrop)`: the
    /// image is zero-padded by this many pixels on every side and a side x side window is taken at
    /// a uniform offset in 0...2 padCrop per axis (the standard CIFAR recipe uses 4).
    public var padCrop: Int = 0

    public init() {}

    /// The standard supervised CIFAR recipe: random crop with 4-pixel zero padding and a
    /// horizontal flip with probability 1/2; no colour jitter, no grayscale.
    public static var cifarStandard: AugmentOptions {
        var o = AugmentOptions()
        o.randomCrop = false; o.padCrop = 4; o.jitterProbability = 0; o.grayscaleProbability = 0
        return o
    }

    public static let standard = AugmentOptions()

    /// No augmentation: views are the rotated images.
    public static var identity: AugmentOptions {
        var o = AugmentOptions()
        o.flipProbability = 0; o.randomCrop = false; o.jitterProbability = 0; o.grayscaleProbability = 0
        return o
    }
}

/// A crop box in pixels (torchvision's (i, j, h, w)).
public struct CropBox: Sendable, Equatable {
    public var top, left, height, width: Int
    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top; self.left = left; self.height = height; self.width = width
    }
}

/// The colour jitter of one view: the order of the four operations (0 brightness, 1 contrast,
/// 2 saturation, 3 hue) and their factors.
public struct JitterParams: Sendable, Equatable {
    public var order: [Int]
    public var brightness: Float
    public var contrast: Float
    public var saturation: Float
    public var hue: Float
}

/// Every random choice made for one view; `render` is a pure function of these.
public struct ViewParams: Sendable, Equatable {
    public var rotation: Int
    public var flip: Bool
    public var crop: CropBox
    /// The accepted attempt's scale and log aspect ratio draws (nil for the central fallback).
    public var cropScaleDraw: Double?
    public var cropLogRatioDraw: Double?
    /// Attempts used, 1...10, or 11 for the central-crop fallback (0 when cropping is off).
    public var cropAttempts: Int
    public var jitter: JitterParams?
    public var grayscale: Bool
    /// The zero padding of a padded random crop (`AugmentOptions.padCrop`); `crop.top`/`crop.left`
    /// are then the window's offset in the padded image (0...2 padding).
    public var padding: Int = 0
}

public enum Augment {
    /// Uniform in [a, b].
    @inline(__always) static func uniform(_ rng: inout SplitMix64, _ a: Double, _ b: Double) -> Double {
        a + (b - a) * rng.nextDouble()
    }

    /// torchvision `RandomResizedCrop.get_params`: up to 10 attempts of
    /// target area = H W U(scale), aspect = exp(U(log r0, log r1)), w = round(sqrt(area aspect)),
    /// h = round(sqrt(area / aspect)) (round half to even, as Python); accepted when 0 < w <= W and
    /// 0 < h <= H, then top ~ U{0..H-h}, left ~ U{0..W-w}. Otherwise the central fallback: the
    /// whole image when W/H lies within the ratio range, else the largest box of the nearest
    /// extreme ratio, centred with floor division.
    public static func randomResizedCropParams(height: Int, width: Int, scale: ClosedRange<Double>, ratio: ClosedRange<Double>,
                                               rng: inout SplitMix64) -> (CropBox, scale: Double?, logRatio: Double?, attempts: Int) {
        let area = Double(height * width)
        let lr0 = Foundation.log(ratio.lowerBound), lr1 = Foundation.log(ratio.upperBound)
        for attempt in 1...10 {
            let s = uniform(&rng, scale.lowerBound, scale.upperBound)
            let lr = uniform(&rng, lr0, lr1)
            let target = area * s
            let aspect = Foundation.exp(lr)
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let i = rng.nextInt(height - h + 1)
                let j = rng.nextInt(width - w + 1)
                return (CropBox(top: i, left: j, height: h, width: w), s, lr, attempt)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return (CropBox(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w), nil, nil, 11)
    }

    /// Draws a view's parameters in the order torchvision consumes randomness: flip (u < p),
    /// crop, jitter (u < p, then a random permutation of the four operations and the four
    /// factors), grayscale (u < p).
    public static func drawParams(rotation: Int, options o: AugmentOptions, height: Int = 32, width: Int = 32,
                                  rng: inout SplitMix64) -> ViewParams {
        let flip = o.flipProbability > 0 && rng.nextDouble() < o.flipProbability
        var crop = CropBox(top: 0, left: 0, height: height, width: width)
        var cs: Double? = nil, clr: Double? = nil, attempts = 0
        if o.randomCrop {
            let h = (rotation % 2 == 0) ? height : width, w = (rotation % 2 == 0) ? width : height
            (crop, cs, clr, attempts) = randomResizedCropParams(height: h, width: w, scale: o.cropScale, ratio: o.cropRatio, rng: &rng)
        }
        var padding = 0
        if !o.randomCrop && o.padCrop > 0 {
            padding = o.padCrop
            crop = CropBox(top: rng.nextInt(2 * padding + 1), left: rng.nextInt(2 * padding + 1), height: height, width: width)
        }
        var jitter: JitterParams? = nil
        if o.jitterProbability > 0 && rng.nextDouble() < o.jitterProbability {
            var order = [0, 1, 2, 3]
            for i in stride(from: 3, to: 0, by: -1) { order.swapAt(i, rng.nextInt(i + 1)) }
            let b = Float(uniform(&rng, max(0, 1 - o.brightness), 1 + o.brightness))
            let c = Float(uniform(&rng, max(0, 1 - o.contrast), 1 + o.contrast))
            let s = Float(uniform(&rng, max(0, 1 - o.saturation), 1 + o.saturation))
            let h = Float(uniform(&rng, -o.hue, o.hue))
            jitter = JitterParams(order: order, brightness: b, contrast: c, saturation: s, hue: h)
        }
        let gray = o.grayscaleProbability > 0 && rng.nextDouble() < o.grayscaleProbability
        return ViewParams(rotation: rotation, flip: flip, crop: crop, cropScaleDraw: cs, cropLogRatioDraw: clr,
                          cropAttempts: attempts, jitter: jitter, grayscale: gray, padding: padding)
    }

    /// The flip before rotation equivalent to the variant's flip after rotation.
    static func preFlip(_ flip: Bool, rotation: Int, variant: FlipVariant) -> ImageKernels.PreFlip {
        guard flip else { return .none }
        switch variant {
        case .official: return .horizontal  // hflip (k even) / vflip (k odd) after == hflip before
        case .rotatedFrame: return rotation % 2 == 0 ? .horizontal : .vertical  // hflip after rotating
        }
    }

    /// Renders one view of the uint8 CHW image `src` (3 x side x side) into `dst` (floats):
    /// rotate (+ flip), resized crop back to side x side, colour jitter in the drawn order, grayscale.
    /// `scratch` holds 3 * side * side floats.
    public static func render(src: UnsafePointer<UInt8>, side: Int, params v: ViewParams, variant: FlipVariant,
                              dst: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let n = side * side
        let pf = preFlip(v.flip, rotation: v.rotation, variant: variant)
        let c = v.crop
        if v.padding > 0 {
            // Padded random crop: dst(y, x) = oriented(y + top - p, x + left - p), zero outside.
            ImageKernels.orient(src: src, channels: 3, side: side, rotation: v.rotation, preFlip: pf, dst: scratch)
            let dy = c.top - v.padding, dx = c.left - v.padding
            for ch in 0..<3 {
                for y in 0..<side {
                    let sy = y + dy
                    let row = dst + (ch * side + y) * side
                    guard sy >= 0 && sy < side else { row.update(repeating: 0, count: side); continue }
                    let srow = scratch + (ch * side + sy) * side
                    for x in 0..<side {
                        let sx = x + dx
                        row[x] = (sx >= 0 && sx < side) ? srow[sx] : 0
                    }
                }
            }
        } else if c.top == 0 && c.left == 0 && c.height == side && c.width == side {
            ImageKernels.orient(src: src, channels: 3, side: side, rotation: v.rotation, preFlip: pf, dst: dst)
        } else {
            ImageKernels.orient(src: src, channels: 3, side: side, rotation: v.rotation, preFlip: pf, dst: scratch)
            ImageKernels.resizedCrop(src: scratch, channels: 3, height: side, width: side, top: c.top, left: c.left,
                                     cropHeight: c.height, cropWidth: c.width, dst: dst, outHeight: side, outWidth: side)
        }
        if let j = v.jitter {
            for op in j.order {
                switch op {
                case 0: ImageKernels.brightness(dst, n, j.brightness)
                case 1: ImageKernels.contrast(dst, n, j.contrast)
                case 2: ImageKernels.saturation(dst, n, j.saturation)
                default: ImageKernels.hue(dst, n, j.hue)
                }
            }
        }
        if v.grayscale { ImageKernels.grayscale(dst, n) }
    }
}
