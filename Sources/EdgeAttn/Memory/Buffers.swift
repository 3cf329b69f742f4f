import EAKernels

/// A 64-byte aligned block from the C allocator, freed with its owner. Used for every buffer the
/// library owns, so that planned sizes are exactly the sizes requested from the system. A buffer
/// made `external` wraps caller memory (a session workspace) and never frees it.
public final class AlignedBuffer {
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int
    let owned: Bool

    // Throwing initializers are convenience initializers that fail before delegating: a failed
    // designated initializer leaks its partially built instance in Embedded Swift.
    public convenience init(byteCount: Int) throws(EAError) {
        guard let p = eak_alloc(UInt64(byteCount)) else {
            throw EAError(.outOfMemory, "could not allocate \(byteCount) bytes")
        }
        self.init(raw: p, byteCount: byteCount)
    }

    init(raw: UnsafeMutableRawPointer, byteCount: Int, owned: Bool = true) {
        self.raw = raw
        self.byteCount = byteCount
        self.owned = owned
    }

    static func external(_ raw: UnsafeMutableRawPointer, byteCount: Int) -> AlignedBuffer {
        AlignedBuffer(raw: raw, byteCount: byteCount, owned: false)
    }

    deinit { if owned { eak_free(raw) } }

    public func floats(at offset: Int) -> UnsafeMutablePointer<Float> {
        (raw + offset).assumingMemoryBound(to: Float.self)
    }
}

/// Rounds n up to a multiple of `to` (a power of two).
@inline(__always)
func alignUp(_ n: Int, _ to: Int) -> Int { (n + to - 1) & ~(to - 1) }

/// Multiplies with overflow detection; nil on overflow.
@inline(__always)
func checkedMul(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}
