import EAKernels

/// GGUF v2/v3 reader. The whole file is mapped read-only; every count, length, shape, offset and
/// alignment is validated before it is used, so a corrupt or truncated file gives a precise error
/// and never a read outside the mapping.
///
/// Error policy: a value no valid file can hold (a count or length beyond the absolute limits
/// below, a shape that overflows, a tensor outside the packed data section, overlaps, misalignment)
/// is `.corrupt`; a plausible value whose bytes run past the end of this file is `.truncated`.

/// GGUF metadata value types (gguf_type).
public enum GGUFValueType: UInt32 {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Fixed size of a scalar, or nil for string/array.
    var scalarSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    public var name: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .float32: return "float32"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float64: return "float64"
        }
    }
}

/// An array value, kept in place in the mapped file (the vocabulary is ~50k strings: decode on use).
public struct GGUFArray {
    public let elementType: GGUFValueType
    public let count: Int
    /// File offset of the first element.
    let offset: Int
}

public enum GGUFValue {
    case uint(UInt64, GGUFValueType)
    case int(Int64, GGUFValueType)
    case float(Double, GGUFValueType)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)

    public var typeName: String {
        switch self {
        case .uint(_, let t), .int(_, let t), .float(_, let t): return t.name
        case .bool: return "bool"
        case .string: return "string"
        case .array(let a): return "array of \(a.elementType.name)"
        }
    }
}

public struct GGUFTensor {
    public let name: String
    /// ggml order: dims[0] is the fastest-varying (row length).
    public let dims: [Int]
    public let type: Int32
    /// Offset from the start of the data section.
    public let offset: Int
    public let elementCount: Int
    public let byteCount: Int

    public var rowLength: Int { dims[0] }
    public var rowCount: Int { elementCount / dims[0] }
    public var rowBytes: Int { byteCount / rowCount }
}

/// Little-endian cursor over the mapped bytes. All reads are bounds-checked.
struct ByteCursor {
    let base: UnsafeRawPointer
    let size: Int
    var pos: Int

    func remaining() -> Int { size - pos }

    mutating func need(_ n: Int, _ what: String) throws(EAError) {
        if n < 0 || n > size - pos {
            throw EAError(.truncated, "file ends at byte \(size) while reading \(what) at offset \(pos)")
        }
    }

    mutating func u8(_ what: String) throws(EAError) -> UInt8 {
        try need(1, what)
        let v = base.load(fromByteOffset: pos, as: UInt8.self)
        pos += 1
        return v
    }

    mutating func u16(_ what: String) throws(EAError) -> UInt16 {
        try need(2, what)
        let v = base.loadUnaligned(fromByteOffset: pos, as: UInt16.self)
        pos += 2
        return UInt16(littleEndian: v)
    }

    mutating func u32(_ what: String) throws(EAError) -> UInt32 {
        try need(4, what)
        let v = base.loadUnaligned(fromByteOffset: pos, as: UInt32.self)
        pos += 4
        return UInt32(littleEndian: v)
    }

    mutating func u64(_ what: String) throws(EAError) -> UInt64 {
        try need(8, what)
        let v = base.loadUnaligned(fromByteOffset: pos, as: UInt64.self)
        pos += 8
        return UInt64(littleEndian: v)
    }

    /// Reads a length-prefixed string. A length beyond maxLength is corrupt; beyond the end of the
    /// file, truncation.
    mutating func string(_ what: String, maxLength: Int = GGUFFile.maxStringLength) throws(EAError) -> String {
        let n64 = try u64("length of \(what)")
        if n64 > UInt64(maxLength) {
            throw EAError(.corrupt, "length \(n64) of \(what) at offset \(pos - 8) exceeds the limit \(maxLength)")
        }
        let n = Int(n64)
        try need(n, what)
        let s = String(decoding: UnsafeRawBufferPointer(start: base + pos, count: n), as: UTF8.self)
        pos += n
        return s
    }

    /// Skips a string without decoding it (array elements).
    mutating func skipString(_ what: String) throws(EAError) {
        let n64 = try u64("length of \(what)")
        if n64 > UInt64(GGUFFile.maxStringLength) {
            throw EAError(.corrupt, "length \(n64) of \(what) at offset \(pos - 8) exceeds the limit \(GGUFFile.maxStringLength)")
        }
        try need(Int(n64), what)
        pos += Int(n64)
    }
}

/// A tensor's byte layout in memory when the loader changed it (see GGUFFile.reordered).
public enum TensorMemoryLayout: Sendable {
    /// 16-row W2 panels (eak_w2_pack_panels).
    case w2Panels
    /// 16-row Q4_1 panels (eak_q4p_pack_panels).
    case q4Panels
}

public final class GGUFFile {
    public let path: String
    public let base: UnsafeRawPointer
    public let fileSize: Int
    public let version: UInt32
    public let alignment: Int
    /// Offset of the tensor data section in the file.
    public let dataOffset: Int
    public private(set) var metadata: [String: GGUFValue] = [:]
    /// Keys in file order (for listings).
    public private(set) var metadataKeys: [String] = []
    /// Byte range of each metadata entry (key, type and value) in the file, parallel to metadataKeys:
    /// the converter copies entries verbatim.
    public private(set) var metadataRanges: [Range<Int>] = []
    public private(set) var tensors: [GGUFTensor] = []
    public private(set) var tensorIndex: [String: Int] = [:]
    private let mapped: Bool

    /// Opens and validates a GGUF file.
    public convenience init(path: String, useMmap: Bool = true) throws(EAError) {
        var size: UInt64 = 0
        var errNo: Int32 = 0
        let p: UnsafeRawPointer? = path.withCString { eak_map_file($0, useMmap ? 1 : 0, &size, &errNo) }
        guard let base = p else {
            var buf = [CChar](repeating: 0, count: 128)
            let n = buf.count
            buf.withUnsafeMutableBufferPointer { eak_strerror(errNo, $0.baseAddress, n) }
            throw EAError(.io, "cannot open '\(path)': \(cString(buf))")
        }
        let parsed: Parsed
        do {
            parsed = try GGUFFile.parse(base: base, size: Int(size))
        } catch {
            eak_unmap_file(base, size, useMmap ? 1 : 0)
            throw error
        }
        self.init(path: path, base: base, size: Int(size), mapped: useMmap, parsed: parsed)
    }

    init(path: String, base: UnsafeRawPointer, size: Int, mapped: Bool, parsed: Parsed) {
        self.path = path
        self.base = base
        fileSize = size
        self.mapped = mapped
        version = parsed.version
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        metadata = parsed.metadata
        metadataKeys = parsed.keys
        metadataRanges = parsed.ranges
        tensors = parsed.tensors
        tensorIndex = parsed.index
    }

    deinit { eak_unmap_file(base, UInt64(fileSize), mapped ? 1 : 0) }

    struct Parsed {
        var version: UInt32 = 0
        var alignment = 32
        var dataOffset = 0
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        var ranges: [Range<Int>] = []
        var tensors: [GGUFTensor] = []
        var index: [String: Int] = [:]
    }

    // Absolute limits: far above any real model, low enough that sizes cannot overflow.
    static let maxNameLength = 4096
    static let maxStringLength = 1 << 30
    static let maxCount = 1 << 20        // tensors, metadata entries
    static let maxArrayCount = 1 << 30   // elements of one array
    static let maxArrayDepth = 4

    static func parse(base: UnsafeRawPointer, size: Int) throws(EAError) -> Parsed {
        var c = ByteCursor(base: base, size: size, pos: 0)
        var r = Parsed()
        if size < 4 { throw EAError(.truncated, "file is \(size) bytes, shorter than the GGUF magic") }
        let magic = try c.u32("magic")
        if magic != 0x4655_4747 {  // "GGUF" little-endian
            throw EAError(.badMagic, "magic is 0x\(hex(UInt64(magic))), expected 0x46554747 ('GGUF')")
        }
        r.version = try c.u32("version")
        if r.version != 2 && r.version != 3 {
            throw EAError(.unsupportedVersion, "GGUF version \(r.version); supported: 2, 3")
        }
        let nTensors64 = try c.u64("tensor count")
        let nKV64 = try c.u64("metadata count")
        if nTensors64 > UInt64(maxCount) {
            throw EAError(.corrupt, "tensor count \(nTensors64) exceeds the limit \(maxCount)")
        }
        if nKV64 > UInt64(maxCount) {
            throw EAError(.corrupt, "metadata count \(nKV64) exceeds the limit \(maxCount)")
        }
        let nTensors = Int(nTensors64), nKV = Int(nKV64)

        for i in 0..<nKV {
            let entryStart = c.pos
            let key = try c.string("key of metadata entry \(i)", maxLength: maxNameLength)
            let t = try c.u32("type of metadata '\(key)'")
            guard let type = GGUFValueType(rawValue: t) else {
                throw EAError(.unsupportedType, "metadata '\(key)' has unknown value type \(t) at offset \(c.pos - 4)")
            }
            let v = try readValue(&c, type: type, key: key, depth: 0, fileSize: size)
            if r.metadata[key] != nil {
                throw EAError(.corrupt, "metadata key '\(key)' appears twice")
            }
            r.metadata[key] = v
            r.keys.append(key)
            r.ranges.append(entryStart..<c.pos)
        }

        if let a = r.metadata["general.alignment"] {
            guard case .uint(let al, _) = a, al > 0, al <= 1 << 20, al & (al - 1) == 0 else {
                throw EAError(.corrupt, "general.alignment must be a power of two up to 1 MiB (got \(a.typeName))")
            }
            r.alignment = Int(al)
        }

        r.tensors.reserveCapacity(nTensors)
        for i in 0..<nTensors {
            let name = try c.string("name of tensor \(i)", maxLength: maxNameLength)
            let nDims = try c.u32("dimension count of tensor '\(name)'")
            if nDims < 1 || nDims > 4 {
                throw EAError(.corrupt, "tensor '\(name)' has \(nDims) dimensions (1 to 4 allowed)")
            }
            var dims: [Int] = []
            var count = 1
            for d in 0..<Int(nDims) {
                let n = try c.u64("dimension \(d) of tensor '\(name)'")
                if n == 0 || n > UInt64(Int64.max) {
                    throw EAError(.corrupt, "tensor '\(name)' dimension \(d) is \(n)")
                }
                guard let m = checkedMul(count, Int(n)) else {
                    throw EAError(.corrupt, "tensor '\(name)' element count overflows 64 bits")
                }
                count = m
                dims.append(Int(n))
            }
            let type = try c.u32("type of tensor '\(name)'")
            let be = Int(eak_type_block_elems(Int32(bitPattern: type)))
            let bb = Int(eak_type_block_bytes(Int32(bitPattern: type)))
            if be == 0 || type > 255 {
                throw EAError(.unsupportedType, "tensor '\(name)' has unsupported type \(type)")
            }
            if dims[0] % be != 0 {
                throw EAError(.corrupt, "tensor '\(name)' row length \(dims[0]) is not a multiple of its block size \(be)")
            }
            guard let bytes = checkedMul(count / be, bb), bytes < Int.max / 4 else {
                throw EAError(.corrupt, "tensor '\(name)' byte size overflows")
            }
            let off = try c.u64("offset of tensor '\(name)'")
            if off > UInt64(Int.max / 4) {
                throw EAError(.corrupt, "tensor '\(name)' offset \(off) lies beyond the end of any possible file")
            }
            if Int(off) % r.alignment != 0 {
                throw EAError(.corrupt, "tensor '\(name)' offset \(off) is not aligned to \(r.alignment)")
            }
            if r.index[name] != nil { throw EAError(.corrupt, "tensor '\(name)' appears twice") }
            r.index[name] = r.tensors.count
            r.tensors.append(GGUFTensor(name: name, dims: dims, type: Int32(type), offset: Int(off),
                                        elementCount: count, byteCount: bytes))
        }

        r.dataOffset = alignUp(c.pos, r.alignment)
        if nTensors == 0 { return r }
        // Data extent: tensors must not overlap; a writer packs them, so the sum of the aligned sizes
        // bounds where any tensor may lie. Beyond it is corruption; within it but past EOF, truncation.
        var order = Array(0..<nTensors)
        order.sort { r.tensors[$0].offset < r.tensors[$1].offset }
        var extent = 0
        for t in r.tensors {
            let (e, o) = extent.addingReportingOverflow(alignUp(t.byteCount, r.alignment))
            if o { throw EAError(.corrupt, "tensor data size overflows") }
            extent = e
        }
        var prevEnd = 0
        var prevName = ""
        var dataEnd = 0
        for i in order {
            let t = r.tensors[i]
            if t.offset < prevEnd {
                throw EAError(.corrupt, "tensor '\(t.name)' at data offset \(t.offset) overlaps tensor '\(prevName)' (ends at \(prevEnd))")
            }
            let end = t.offset + t.byteCount
            if end > extent {
                throw EAError(.corrupt, "tensor '\(t.name)' (data offset \(t.offset), \(t.byteCount) bytes) lies beyond the end of the tensor data section (\(extent) bytes)")
            }
            prevEnd = end
            prevName = t.name
            dataEnd = max(dataEnd, end)
        }
        if r.dataOffset > size || dataEnd > size - r.dataOffset {
            throw EAError(.truncated, "file has \(size) bytes but its tensor data ends at byte \(r.dataOffset + dataEnd)")
        }
        return r
    }

    static func readValue(_ c: inout ByteCursor, type: GGUFValueType, key: String, depth: Int,
                          fileSize: Int) throws(EAError) -> GGUFValue {
        let what = "value of '\(key)'"
        switch type {
        case .uint8: return .uint(UInt64(try c.u8(what)), type)
        case .int8: return .int(Int64(Int8(bitPattern: try c.u8(what))), type)
        case .uint16: return .uint(UInt64(try c.u16(what)), type)
        case .int16: return .int(Int64(Int16(bitPattern: try c.u16(what))), type)
        case .uint32: return .uint(UInt64(try c.u32(what)), type)
        case .int32: return .int(Int64(Int32(bitPattern: try c.u32(what))), type)
        case .uint64: return .uint(try c.u64(what), type)
        case .int64: return .int(Int64(bitPattern: try c.u64(what)), type)
        case .float32: return .float(Double(Float(bitPattern: try c.u32(what))), type)
        case .float64: return .float(Double(bitPattern: try c.u64(what)), type)
        case .bool:
            let b = try c.u8(what)
            if b > 1 { throw EAError(.corrupt, "bool '\(key)' has value \(b)") }
            return .bool(b == 1)
        case .string: return .string(try c.string(what))
        case .array:
            if depth >= maxArrayDepth { throw EAError(.corrupt, "arrays nested too deep in '\(key)'") }
            let et = try c.u32("element type of '\(key)'")
            guard let etype = GGUFValueType(rawValue: et) else {
                throw EAError(.unsupportedType, "array '\(key)' has unknown element type \(et)")
            }
            let n64 = try c.u64("element count of '\(key)'")
            if n64 > UInt64(maxArrayCount) {
                throw EAError(.corrupt, "array '\(key)' element count \(n64) exceeds the limit \(maxArrayCount)")
            }
            let n = Int(n64)
            let start = c.pos
            if let s = etype.scalarSize {
                try c.need(n * s, "elements of '\(key)'")
                c.pos += n * s
            } else if etype == .string {
                for i in 0..<n { try c.skipString("element \(i) of '\(key)'") }
            } else {
                for _ in 0..<n {
                    _ = try readValue(&c, type: etype, key: key, depth: depth + 1, fileSize: fileSize)
                }
            }
            return .array(GGUFArray(elementType: etype, count: n, offset: start))
        }
    }

    // MARK: typed access

    public func tensor(_ name: String) -> GGUFTensor? {
        guard let i = tensorIndex[name] else { return nil }
        return tensors[i]
    }

    public func data(of t: GGUFTensor) -> UnsafeRawPointer { base + dataOffset + t.offset }

    /// Tensors whose bytes the model loader reordered in this process's copy of the mapping
    /// (copy on write; the file is untouched): their readers decode rows through the panel layout.
    /// The packing itself is the model's concern (Model/Panels.swift).
    public internal(set) var reordered: [String: TensorMemoryLayout] = [:]

    public func isW2Panels(_ name: String) -> Bool { reordered[name] == .w2Panels }

    public func isQ4Panels(_ name: String) -> Bool { reordered[name] == .q4Panels }

    /// An integer metadata value (any integer type). nil if absent; throws if present with another type.
    public func int(_ key: String) throws(EAError) -> Int? {
        guard let v = metadata[key] else { return nil }
        switch v {
        case .uint(let x, _):
            if x > UInt64(Int.max) { throw EAError(.metadata, "metadata '\(key)' = \(x) is out of range") }
            return Int(x)
        case .int(let x, _): return Int(x)
        default: throw EAError(.metadata, "metadata '\(key)' has type \(v.typeName), expected an integer")
        }
    }

    public func requireInt(_ key: String) throws(EAError) -> Int {
        guard let v = try int(key) else { throw EAError(.metadata, "required metadata '\(key)' is missing") }
        return v
    }

    public func float(_ key: String) throws(EAError) -> Double? {
        guard let v = metadata[key] else { return nil }
        switch v {
        case .float(let x, _): return x
        case .uint(let x, _): return Double(x)
        case .int(let x, _): return Double(x)
        default: throw EAError(.metadata, "metadata '\(key)' has type \(v.typeName), expected a number")
        }
    }

    public func string(_ key: String) throws(EAError) -> String? {
        guard let v = metadata[key] else { return nil }
        guard case .string(let s) = v else {
            throw EAError(.metadata, "metadata '\(key)' has type \(v.typeName), expected a string")
        }
        return s
    }

    public func bool(_ key: String) throws(EAError) -> Bool? {
        guard let v = metadata[key] else { return nil }
        switch v {
        case .bool(let b): return b
        case .uint(let x, _): return x != 0
        case .int(let x, _): return x != 0
        default: throw EAError(.metadata, "metadata '\(key)' has type \(v.typeName), expected a bool")
        }
    }

    public func array(_ key: String) throws(EAError) -> GGUFArray? {
        guard let v = metadata[key] else { return nil }
        guard case .array(let a) = v else {
            throw EAError(.metadata, "metadata '\(key)' has type \(v.typeName), expected an array")
        }
        return a
    }

    /// Calls body with each string of a string array (validated at parse time), as raw UTF-8 bytes.
    public func forEachString(_ a: GGUFArray, _ body: (Int, UnsafeRawBufferPointer) -> Void) {
        var pos = a.offset
        for i in 0..<a.count {
            let n = Int(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: UInt64.self)))
            body(i, UnsafeRawBufferPointer(start: base + pos + 8, count: n))
            pos += 8 + n
        }
    }

    /// Integer elements of a scalar-typed array, widened to Int64.
    public func integers(_ a: GGUFArray) -> [Int64]? {
        guard let s = a.elementType.scalarSize else { return nil }
        var out: [Int64] = []
        out.reserveCapacity(a.count)
        for i in 0..<a.count {
            let off = a.offset + i * s
            switch a.elementType {
            case .uint8, .bool: out.append(Int64(base.load(fromByteOffset: off, as: UInt8.self)))
            case .int8: out.append(Int64(base.load(fromByteOffset: off, as: Int8.self)))
            case .uint16: out.append(Int64(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: off, as: UInt16.self))))
            case .int16: out.append(Int64(Int16(littleEndian: base.loadUnaligned(fromByteOffset: off, as: Int16.self))))
            case .uint32: out.append(Int64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: off, as: UInt32.self))))
            case .int32: out.append(Int64(Int32(littleEndian: base.loadUnaligned(fromByteOffset: off, as: Int32.self))))
            case .uint64, .int64: out.append(Int64(littleEndian: base.loadUnaligned(fromByteOffset: off, as: Int64.self)))
            default: return nil
            }
        }
        return out
    }

    /// Float elements of a float32 array.
    public func floats(_ a: GGUFArray) -> [Float]? {
        guard a.elementType == .float32 else { return nil }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for i in 0..<a.count {
            out.append(Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: a.offset + 4 * i, as: UInt32.self))))
        }
        return out
    }
}

// MARK: small formatting helpers usable in Embedded Swift (no Foundation, no Float description)

func hex(_ v: UInt64) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    if v == 0 { return "0" }
    var s = ""
    var x = v
    while x > 0 {
        s.append(digits[Int(x & 15)])
        x >>= 4
    }
    return String(s.reversed())
}

func cString(_ buf: [CChar]) -> String {
    var bytes: [UInt8] = []
    for c in buf {
        if c == 0 { break }
        bytes.append(UInt8(bitPattern: c))
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Formats a finite double with `decimals` digits after the point (Embedded Swift has no Float
/// description).
public func formatFixed(_ v: Double, _ decimals: Int) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v < 0 ? "-inf" : "inf" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let neg = v < 0
    let r = (neg ? -v : v) * scale + 0.5
    if r >= 9.0e18 { return neg ? "-huge" : "huge" }
    let n = UInt64(r)
    let ip = n / UInt64(scale), fp = n % UInt64(scale)
    var f = String(fp)
    while f.count < decimals { f = "0" + f }
    return (neg ? "-" : "") + String(ip) + (decimals > 0 ? "." + f : "")
}
