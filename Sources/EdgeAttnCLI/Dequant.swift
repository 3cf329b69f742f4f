import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Dequant: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write one tensor as raw float32 (ggml order).")
    @Option(name: .short) var m: String
    @Option(name: .long) var tensor: String
    @Option(name: .short) var o: String

    func run() throws {
        let f: GGUFFile
        do { f = try GGUFFile(path: m) } catch { die("\(error.status.text): \(error.message)") }
        guard let t = f.tensor(tensor) else { die("no tensor '\(tensor)'") }
        let dims = logicalDims(f, t)
        var out = [Float](repeating: 0, count: dims.reduce(1, *))
        let rc = out.withUnsafeMutableBufferPointer { dequantizeTensor(f, t, into: $0.baseAddress!) }
        if !rc { die("cannot dequantize type \(t.type)") }
        writeAtomically(out.withUnsafeBufferPointer { Data(buffer: $0) }, to: o)
    }
}
