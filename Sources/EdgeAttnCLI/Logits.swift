import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write float32 logits [n_tokens][vocab] of a token sequence.")
    @Option(name: .short) var m: String
    @Option(name: .long, help: "Token ids separated by spaces.") var tokens: String
    @Option(name: .short) var o: String
    @Option(name: .long) var batch: Int = 32
    @Option(name: .short) var t: Int = 0
    @Option(name: .customLong("kv-bits"), help: "KV cache bits: 32, 16, 8 or 4 (0 = the model default: 4 for converted files, else 16).") var kvBits: Int = 0
    @Option(name: .customLong("dump-dhsa"), help: "Write DHSA selections and chunk starts to this file (for tests).") var dumpDHSA: String?
    @OptionGroup var attention: AttentionOptions

    func run() throws {
        let model = loadModel(m)
        let ids = tokens.split(separator: " ").map { Int32($0) ?? -1 }
        var sp = SessionParams()
        sp.kvBits = kvBits
        sp.nBatch = batch
        sp.nThreads = t
        sp.nCtx = max(ids.count, 1)
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: sp.nCtx)
        let nv = model.hp.nVocab
        var out = [Float](repeating: 0, count: ids.count * nv)
        do {
            let s = try Session(model: model, params: sp)
            var dump = ""
            if dumpDHSA != nil {
                // one line per layer and query block: "block L B0 B1 | keys of kv head 0 | ..."
                s.selectionObserver = { l, b0, b1, lists in
                    dump += "block \(l) \(b0) \(b1)"
                    for h in lists { dump += " | " + h.map { String($0) }.joined(separator: " ") }
                    dump += "\n"
                }
            }
            try ids.withUnsafeBufferPointer { (b) throws(EAError) in
                try s.evaluate(b, logitsFrom: 0) { i, l in
                    for k in 0..<nv { out[i * nv + k] = l[k] }
                }
            }
            if let path = dumpDHSA {
                for l in 0..<model.hp.nLayer {
                    dump += "chunks \(l) " + s.dhsaChunkStarts(layer: l).map { String($0) }.joined(separator: " ") + "\n"
                }
                writeAtomically(Data(dump.utf8), to: path)
            }
        } catch { die("\(error.status.text): \(error.message)") }
        writeAtomically(out.withUnsafeBufferPointer { Data(buffer: $0) }, to: o)
    }
}
