/// SplitMix64: a small, fast, statistically good 64-bit generator whose whole state is one word,
/// so it is trivially saved in checkpoints and derived from (seed, counters) for reproducibility.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator derived from a seed and a list of counters (e.g. seed, epoch, step, rank):
    /// the same inputs give the same stream on every rank and every run.
    public init(seed: UInt64, _ counters: UInt64...) {
        var s = SplitMix64.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for c in counters { s = SplitMix64.mix(s ^ SplitMix64.mix(c &+ 0xD1B5_4A32_D192_ED03)) }
        state = s
    }

    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform integer in 0..<n (unbiased, Lemire's method).
    @inline(__always)
    public mutating func nextInt(_ n: Int) -> Int {
        precondition(n > 0)
        let bound = UInt64(n)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let t = (0 &- bound) % bound
            while m.low < t { m = next().multipliedFullWidth(by: bound) }
        }
        return Int(m.high)
    }

    /// Standard normal draw (Box-Muller, double precision).
    public mutating func nextGaussian() -> Double {
        var u1 = nextDouble()
        while u1 <= 0 { u1 = nextDouble() }
        let u2 = nextDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }
}

@inline(__always) func _log(_ x: Double) -> Double { Foundation_log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation_cos(x) }
