/// splitmix64 (Steele, Lea, Flood 2014): small, seedable, portable random bits for sampling and
/// for the tools' reproducible draws.
public struct SplitMix64 {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) from the top 53 bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * (1.0 / 9007199254740992.0) }
}
