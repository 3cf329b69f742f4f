import Foundation
import XCTest
@testable import EdgeAttn

/// Writes GGUF bytes by hand (independent of the reader) so each field can be broken on purpose.
struct GGUFBuilder {
    var kv: [(String, UInt32, [UInt8])] = []
    var tensors: [(name: String, dims: [UInt64], type: UInt32, data: [UInt8])] = []
    var alignment = 32
    var version: UInt32 = 3

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func addU32(_ k: String, _ v: UInt32) { kv.append((k, 4, GGUFBuilder.u32(v))) }
    mutating func addString(_ k: String, _ v: String) { kv.append((k, 8, GGUFBuilder.str(v))) }

    /// Returns the bytes and the file offset of each tensor-info's offset field.
    func build(tensorOffsets: [UInt64]? = nil) -> (bytes: [UInt8], offsetFields: [Int]) {
        var b: [UInt8] = Array("GGUF".utf8) + GGUFBuilder.u32(version)
        b += GGUFBuilder.u64(UInt64(tensors.count)) + GGUFBuilder.u64(UInt64(kv.count))
        for (k, t, v) in kv { b += GGUFBuilder.str(k) + GGUFBuilder.u32(t) + v }
        var offs: [UInt64] = []
        var cur: UInt64 = 0
        for t in tensors {
            offs.append(cur)
            cur += UInt64((t.data.count + alignment - 1) / alignment * alignment)
        }
        if let o = tensorOffsets { offs = o }
        var fields: [Int] = []
        for (i, t) in tensors.enumerated() {
            b += GGUFBuilder.str(t.name) + GGUFBuilder.u32(UInt32(t.dims.count))
            for d in t.dims { b += GGUFBuilder.u64(d) }
            b += GGUFBuilder.u32(t.type)
            fields.append(b.count)
            b += GGUFBuilder.u64(offs[i])
        }
        while b.count % alignment != 0 { b.append(0) }
        let start = b.count
        for (i, t) in tensors.enumerated() {
            if offs[i] > 1 << 20 { continue }  // deliberately impossible offsets: no data to place
            let want = start + Int(offs[i])
            if want > b.count { b += [UInt8](repeating: 0, count: want - b.count) }
            if want == b.count { b += t.data }
        }
        return (b, fields)
    }
}

final class GGUFTests: XCTestCase {
    var dir: URL!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ea-gguf-\(getpid())-\(name.hashValue)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func write(_ bytes: [UInt8], _ name: String = "t.gguf") -> String {
        let p = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    func expect(_ bytes: [UInt8], _ status: Status, _ contains: String = "", file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try GGUFFile(path: write(bytes))
            XCTFail("expected \(status), file opened", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, file: file, line: line)
            if !contains.isEmpty {
                XCTAssertTrue(error.message.contains(contains), "'\(error.message)' lacks '\(contains)'", file: file, line: line)
            }
        }
    }

    func valid() -> GGUFBuilder {
        var g = GGUFBuilder()
        g.addString("general.architecture", "llama")
        g.addU32("llama.block_count", 1)
        let f: [Float] = (0..<64).map { Float($0) }
        g.tensors.append(("a", [32, 2], 0, f.withUnsafeBytes { Array($0) }))
        g.tensors.append(("b", [8], 0, [Float](repeating: 1, count: 8).withUnsafeBytes { Array($0) }))
        return g
    }

    func testValidFileParses() throws {
        let f = try GGUFFile(path: write(valid().build().bytes))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 2)
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.int("llama.block_count"), 1)
        let a = f.tensor("a")!
        XCTAssertEqual(a.dims, [32, 2])
        XCTAssertEqual(f.data(of: a).load(fromByteOffset: 4 * 63, as: Float.self), 63)
        XCTAssertThrowsError(try f.int("general.architecture"))  // wrong type is an error, not nil
    }

    func testBadMagicVersionAndEmpty() {
        var b = valid().build().bytes
        b[0] = 0x58
        expect(b, .badMagic)
        var g = valid()
        g.version = 99
        expect(g.build().bytes, .unsupportedVersion, "99")
        expect([], .truncated)
        expect(Array("GGU".utf8), .truncated)
    }

    /// Truncation at every byte of the header and inside the data: always .truncated, never a crash.
    func testTruncationEverywhere() {
        let full = valid().build().bytes
        for n in 4..<(full.count - 1) {
            expect(Array(full[0..<n]), .truncated)
        }
    }

    func testImpossibleCounts() {
        var b = valid().build().bytes
        b.replaceSubrange(8..<16, with: GGUFBuilder.u64(1 << 60))
        expect(b, .corrupt, "tensor count")
        // a plausible count in a short file is truncation
        let built = valid().build()
        b = Array(built.bytes[0..<(built.offsetFields[1] + 8)])  // ends right after the 2nd tensor info
        b.replaceSubrange(8..<16, with: GGUFBuilder.u64(1000))
        expect(b, .truncated)
        b = valid().build().bytes
        b.replaceSubrange(16..<24, with: GGUFBuilder.u64(1 << 60))
        expect(b, .corrupt, "metadata count")
        // key length larger than the file
        b = valid().build().bytes
        b.replaceSubrange(24..<32, with: GGUFBuilder.u64(1 << 40))
        expect(b, .corrupt, "exceeds the limit")
    }

    func testUnknownValueTypeAndDuplicates() {
        var g = valid()
        g.kv.append(("x", 42, [0]))
        expect(g.build().bytes, .unsupportedType, "unknown value type")
        g = valid()
        g.addU32("llama.block_count", 2)
        expect(g.build().bytes, .corrupt, "twice")
        g = valid()
        g.tensors.append(("a", [8], 0, [UInt8](repeating: 0, count: 32)))
        expect(g.build().bytes, .corrupt, "twice")
    }

    func testTensorShapeAndTypeChecks() {
        var g = valid()
        g.tensors[1].type = 99
        expect(g.build().bytes, .unsupportedType, "99")
        g = valid()
        g.tensors[0].dims = [1 << 40, 1 << 40]
        expect(g.build().bytes, .corrupt, "overflow")
        g = valid()
        g.tensors[0].dims = [32, 2, 1, 1, 1]
        expect(g.build().bytes, .corrupt, "dimensions")
        g = valid()
        g.tensors[1].dims = [0]
        expect(g.build().bytes, .corrupt, "dimension 0")
        g = valid()
        g.tensors[1] = ("b", [20], 8, [UInt8](repeating: 0, count: 34))  // Q8_0 needs multiples of 32
        expect(g.build().bytes, .corrupt, "multiple of its block size")
    }

    func testOffsetsAlignmentOverlap() {
        let g = valid()
        expect(g.build(tensorOffsets: [0, 8]).bytes, .corrupt, "not aligned")
        expect(g.build(tensorOffsets: [0, 1 << 40]).bytes, .corrupt, "beyond the end")
        expect(g.build(tensorOffsets: [256, 0]).bytes, .corrupt, "beyond the end of the tensor data")
        expect(g.build(tensorOffsets: [0, 288]).bytes, .corrupt, "beyond the end of the tensor data")
        expect(g.build(tensorOffsets: [0, 224]).bytes, .corrupt, "overlaps")
        var h = valid()
        h.tensors[1].dims = [64]
        h.tensors[1].data = [UInt8](repeating: 0, count: 256)
        // b at 224 lies inside the 256+256 extent but overlaps nothing; a at 0 and b at 32 overlap
        expect(h.build(tensorOffsets: [0, 32]).bytes, .corrupt, "overlaps")
    }

    func testAlignmentKey() {
        var g = valid()
        g.addU32("general.alignment", 3)
        expect(g.build().bytes, .corrupt, "power of two")
        var h = valid()
        h.addU32("general.alignment", 64)
        h.alignment = 64
        XCTAssertNoThrow(try GGUFFile(path: write(h.build().bytes)))
    }

    func testMissingFileIsIO() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/x.gguf")) { e in
            XCTAssertEqual((e as! EAError).status, .io)
        }
        XCTAssertThrowsError(try GGUFFile(path: dir.path)) { e in
            XCTAssertEqual((e as! EAError).status, .io)
        }
    }

    /// A non-llama architecture and missing hyperparameters surface as their own statuses.
    func testModelLevelErrors() {
        var g = valid()
        g.kv[0] = ("general.architecture", 8, GGUFBuilder.str("foo"))
        XCTAssertThrowsError(try Model(path: write(g.build().bytes, "a.gguf"))) { e in
            XCTAssertEqual((e as! EAError).status, .unsupportedArch)
        }
        XCTAssertThrowsError(try Model(path: write(valid().build().bytes, "b.gguf"))) { e in
            XCTAssertEqual((e as! EAError).status, .metadata)
        }
    }
}
