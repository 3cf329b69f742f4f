import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text (same flags as examples/generate).")
    @Option(name: .short, help: "Model file (GGUF).") var m: String
    @Option(name: .short, help: "Prompt (special-token text is honoured).") var p: String
    @Option(name: .short, help: "Tokens to generate.") var n: Int = 64
    @Option(name: .short, help: "Threads (0 = all cores).") var t: Int = 0
    @Option(name: .long, help: "Temperature (0 = greedy).") var temp: Float = 0
    @Option(name: .customLong("top-k")) var topK: Int = 40
    @Option(name: .customLong("top-p")) var topP: Float = 0.95
    @Option(name: .customLong("min-p")) var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty")) var repeatPenalty: Float = 1
    @Option(name: .long) var seed: UInt64 = 0x5eed
    @Option(name: .long, help: "Context size (0 = the model's).") var ctx: Int = 0
    @Option(name: .long, help: "Session memory budget in bytes (0 = none).") var budget: UInt64 = 0
    @Flag(name: .long, help: "Wrap the prompt in the chat template.") var chat = false
    @Flag(name: .long, help: "Print generated token ids instead of text.") var ids = false
    @Option(name: .customLong("kv-bits"), help: "KV cache bits: 32, 16, 8 or 4 (0 = the model default: 4 for converted files, else 16).") var kvBits: Int = 0
    @OptionGroup var attention: AttentionOptions

    func run() throws {
        let model = loadModel(m)
        var sp = SessionParams()
        sp.nCtx = ctx
        sp.nThreads = t
        sp.memoryBudget = budget
        sp.kvBits = kvBits
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: ctx == 0 ? model.hp.nCtxTrain : ctx)
        let session: Session
        do { session = try Session(model: model, params: sp) } catch { die("\(error.status.text): \(error.message)") }
        var smp = SamplerParams()
        smp.temperature = temp
        smp.topK = topK
        smp.topP = topP
        smp.minP = minP
        smp.repeatPenalty = repeatPenalty
        smp.seed = seed
        let sampler: Sampler
        do { sampler = try Sampler(vocabSize: model.hp.nVocab, params: smp) } catch { die(error.message) }
        let text = chat ? ChatTemplate.format([(role: "user", content: p)], addAssistant: true,
                                              style: ChatTemplate.style(for: model.tokenizer)) : p
        let prompt = tokenize(model, text, bos: true, special: true)
        if prompt.isEmpty { die("empty prompt") }
        let t0 = Date()
        do {
            try prompt.withUnsafeBufferPointer { (b) throws(EAError) in try session.evaluate(b) }
        } catch { die("\(error.status.text): \(error.message)") }
        let t1 = Date()
        for tok in prompt { sampler.accept(tok) }
        var out: [Int32] = []
        var t2 = Date()
        do {
            // the prompt is in the cache already (timed apart); the last token is not decoded
            _ = try session.generate(UnsafeBufferPointer(start: nil, count: 0), sampler: sampler, maxTokens: n,
                                     cacheLast: false) { tok in
                if ids {
                    writeStdout(Array(((out.isEmpty ? "" : " ") + String(tok)).utf8))
                } else {
                    writeStdout(model.tokenizer.piece(tok))
                }
                out.append(tok)
                if out.count == 1 { t2 = Date() }
                return false
            }
        } catch { die("\(error.status.text): \(error.message)") }
        if ids { writeStdout([0x0A]) }
        let t3 = Date()
        let pre = t1.timeIntervalSince(t0), dec = t3.timeIntervalSince(t2)
        eprint("prompt tokens: \(prompt.count), prefill: \(String(format: "%.1f", Double(prompt.count) / pre)) tok/s")
        if out.count > 1 {
            eprint("generated: \(out.count), decode: \(String(format: "%.1f", Double(out.count - 1) / dec)) tok/s")
        }
        eprint("session bytes: \(session.allocatedBytes), peak RSS: \(peakRSSBytes()) bytes")
    }
}
