import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

let typeNames: [Int32: String] = [0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
                                  9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
                                  15: "Q8_K", 30: "BF16"]

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a GGUF file's metadata and tensor table.")
    @Argument var model: String
    @Flag(name: .long, help: "Print whole arrays (default: first 8 elements).") var full = false

    func run() throws {
        let f: GGUFFile
        do { f = try GGUFFile(path: model) } catch { die("\(error.status.text): \(error.message)") }
        print("file: \(model)")
        print("GGUF version \(f.version), \(f.fileSize) bytes, alignment \(f.alignment), data at \(f.dataOffset)")
        print("metadata (\(f.metadataKeys.count) keys):")
        for k in f.metadataKeys {
            print("  \(k) = \(describe(f, f.metadata[k]!))")
        }
        print("tensors (\(f.tensors.count)):")
        var total = 0
        for t in f.tensors {
            total += t.byteCount
            let name = t.name.padding(toLength: max(28, t.name.count), withPad: " ", startingAt: 0)
            print("  \(name) \((typeNames[t.type] ?? "?").padding(toLength: 5, withPad: " ", startingAt: 0)) \(shapeText(t.dims)) \(t.byteCount) bytes @ \(t.offset)")
        }
        print("tensor data: \(total) bytes")
        if let m = try? Model(path: model) {
            print("model: \(m.hp.architecture), \(m.hp.nLayer) layers, d=\(m.hp.nEmbd), heads \(m.hp.nHead)/\(m.hp.nHeadKV), ffn \(m.hp.nFF), vocab \(m.hp.nVocab), context \(m.hp.nCtxTrain)")
        }
    }

    func describe(_ f: GGUFFile, _ v: GGUFValue) -> String {
        switch v {
        case .uint(let x, _): return String(x)
        case .int(let x, _): return String(x)
        case .float(let x, _): return String(x)
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return s.count > 120 && !full ? "\"" + s.prefix(120) + "...\" (\(s.count) chars)" : "\"\(s)\""
        case .array(let a):
            let limit = full ? a.count : min(a.count, 8)
            var items: [String] = []
            if a.elementType == .string {
                var i = 0
                f.forEachString(a) { idx, raw in
                    if idx < limit { items.append("\"" + String(decoding: raw, as: UTF8.self) + "\"") }
                    i += 1
                }
            } else if let ints = f.integers(a) {
                items = ints.prefix(limit).map { String($0) }
            } else if let fl = f.floats(a) {
                items = fl.prefix(limit).map { String($0) }
            }
            return "[\(items.joined(separator: ", "))\(a.count > limit ? ", ..." : "")] (\(a.elementType.name) x \(a.count))"
        }
    }
}
