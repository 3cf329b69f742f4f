import Foundation

/// Writes a GGUF v3 file through a temporary file in the same directory, renamed over the target only
/// when complete: an interrupted or failed write never leaves a half file at the target path
/// (the temporary file is removed on failure and on SIGINT/SIGTERM).
public final class GGUFWriter {
    public struct TensorInfo {
        public let name: String
        public let dims: [Int]
        public let type: UInt32
        public let bytes: Int
    }

    let path: String
    let tmpPath: String
    let alignment: Int
    var fd: Int32 = -1
    var written = 0
    var kvBlob: [UInt8] = []
    var nKV = 0
    var infos: [TensorInfo] = []
    var offsets: [Int] = []
    var nextTensor = 0
    var dataStart = 0

    public init(path: String, alignment: Int = 32) {
        self.path = path
        self.tmpPath = path + ".tmp.\(getpid())"
        self.alignment = alignment
    }

    deinit { if fd >= 0 { abandon() } }

    // ---- metadata ----
    func putU32(_ v: UInt32, _ b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    func putU64(_ v: UInt64, _ b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    func putString(_ s: String, _ b: inout [UInt8]) {
        let u = Array(s.utf8)
        putU64(UInt64(u.count), &b)
        b.append(contentsOf: u)
    }

    /// A metadata entry copied verbatim (key, type and value bytes) from another GGUF file.
    public func addRawKV(_ bytes: UnsafeRawBufferPointer) {
        kvBlob.append(contentsOf: bytes)
        nKV += 1
    }

    public func addU32(_ key: String, _ v: UInt32) {
        putString(key, &kvBlob); putU32(4, &kvBlob); putU32(v, &kvBlob); nKV += 1
    }

    public func addF32(_ key: String, _ v: Float) {
        putString(key, &kvBlob); putU32(6, &kvBlob); putU32(v.bitPattern, &kvBlob); nKV += 1
    }

    public func addString(_ key: String, _ v: String) {
        putString(key, &kvBlob); putU32(8, &kvBlob); putString(v, &kvBlob); nKV += 1
    }

    public func addTensor(_ t: TensorInfo) { infos.append(t) }

    // ---- writing ----
    func raw(_ p: UnsafeRawPointer, _ n: Int) throws {
        var off = 0
        while off < n {
            let w = Foundation.write(fd, p + off, n - off)
            if w < 0 {
                if errno == EINTR { continue }
                throw ConvertError("cannot write \(tmpPath): \(String(cString: strerror(errno)))")
            }
            off += w
        }
        written += n
    }

    func pad() throws {
        let p = (alignment - written % alignment) % alignment
        if p > 0 { try [UInt8](repeating: 0, count: p).withUnsafeBytes { try raw($0.baseAddress!, p) } }
    }

    /// Creates the temporary file and writes header, metadata and tensor infos.
    public func begin() throws {
        fd = open(tmpPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw ConvertError("cannot create \(tmpPath): \(String(cString: strerror(errno)))") }
        GGUFWriter.registerCleanup(tmpPath)
        var h: [UInt8] = []
        putU32(0x4655_4747, &h)
        putU32(3, &h)
        putU64(UInt64(infos.count), &h)
        putU64(UInt64(nKV), &h)
        h.append(contentsOf: kvBlob)
        var off = 0
        for t in infos {
            putString(t.name, &h)
            putU32(UInt32(t.dims.count), &h)
            for d in t.dims { putU64(UInt64(d), &h) }
            putU32(t.type, &h)
            putU64(UInt64(off), &h)
            offsets.append(off)
            off += (t.bytes + alignment - 1) / alignment * alignment
        }
        try h.withUnsafeBytes { try raw($0.baseAddress!, h.count) }
        try pad()
        dataStart = written
    }

    /// Writes the next tensor's data (in the order tensors were added).
    public func writeTensor(_ bytes: UnsafeRawBufferPointer) throws {
        let t = infos[nextTensor]
        if bytes.count != t.bytes { throw ConvertError("tensor '\(t.name)': \(bytes.count) bytes, expected \(t.bytes)") }
        if written - dataStart != offsets[nextTensor] { throw ConvertError("internal: tensor offset mismatch") }
        try raw(bytes.baseAddress!, bytes.count)
        try pad()
        nextTensor += 1
    }

    /// Flushes, closes and renames the temporary file over the target.
    public func finish() throws {
        if nextTensor != infos.count { throw ConvertError("internal: \(infos.count - nextTensor) tensors not written") }
        if fsync(fd) != 0 { throw ConvertError("cannot sync \(tmpPath): \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
        if rename(tmpPath, path) != 0 {
            let e = String(cString: strerror(errno))
            unlink(tmpPath)
            throw ConvertError("cannot rename \(tmpPath) to \(path): \(e)")
        }
        GGUFWriter.registerCleanup(nil)
    }

    /// Closes and removes the temporary file.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tmpPath)
        GGUFWriter.registerCleanup(nil)
    }

    // A signal handler may only touch preallocated C memory: the path is kept as a C string.
    nonisolated(unsafe) static var cleanupPath: UnsafeMutablePointer<CChar>? = nil

    static func registerCleanup(_ path: String?) {
        let old = cleanupPath
        cleanupPath = path.map { strdup($0) }
        if let o = old { free(o) }
        if path != nil {
            let handler: @convention(c) (Int32) -> Void = { sig in
                if let p = GGUFWriter.cleanupPath { unlink(p) }
                signal(sig, SIG_DFL)
                raise(sig)
            }
            signal(SIGINT, handler)
            signal(SIGTERM, handler)
        }
    }
}

public struct ConvertError: Error, CustomStringConvertible {
    public let description: String
    public init(_ s: String) { description = s }
}
