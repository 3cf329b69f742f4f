import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl",
        abstract: "Perplexity with llama.cpp's method (chunks of ctx tokens, each from an empty cache, second half scored), or over one long stream (--stream).")
    @Option(name: .short) var m: String
    @Option(name: .short) var f: String
    @Option(name: .long) var ctx: Int = 512
    @Option(name: .long, help: "Number of chunks (0 = all).") var chunks: Int = 0
    @Option(name: .long) var batch: Int = 64
    @Option(name: .short) var t: Int = 0
    @Option(name: .customLong("kv-bits"), help: "KV cache bits: 32, 16, 8 or 4 (0 = the model default: 4 for converted files, else 16).") var kvBits: Int = 0
    @Flag(name: .long, help: "Evaluate the text as one stream in one session, scoring every token; report per segment.") var stream = false
    @Option(name: .long, help: "--stream: tokens per reported segment.") var segment: Int = 4096
    @Option(name: .customLong("max-tokens"), help: "--stream: stop after this many tokens (0 = the whole text; the text repeats to reach it).") var maxTokens: Int = 0
    @OptionGroup var attention: AttentionOptions

    func run() throws {
        let model = loadModel(m)
        guard let d = FileManager.default.contents(atPath: f) else { die("cannot read \(f)") }
        var bytes = [UInt8](d)
        let all = bytes.withUnsafeMutableBufferPointer {
            model.tokenizer.encode(UnsafeBufferPointer($0), addBos: false, parseSpecial: false)
        }
        if stream { return runStream(model, all) }
        var nChunks = all.count / ctx
        if chunks > 0 { nChunks = min(nChunks, chunks) }
        if nChunks < 1 { die("text has \(all.count) tokens, fewer than one chunk of \(ctx)") }
        eprint("ppl: \(all.count) tokens, \(nChunks) chunks of \(ctx)")
        var sp = SessionParams()
        sp.nCtx = ctx
        sp.nBatch = batch
        sp.nThreads = t
        sp.kvBits = kvBits
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: ctx)
        let session: Session
        do { session = try Session(model: model, params: sp) } catch { die("\(error.status.text): \(error.message)") }
        let nv = model.hp.nVocab
        let first = ctx / 2
        var nll = 0.0
        var count = 0
        let t0 = Date()
        for c in 0..<nChunks {
            var chunk = Array(all[(c * ctx)..<((c + 1) * ctx)])
            if model.tokenizer.addBos && model.tokenizer.bos >= 0 { chunk[0] = model.tokenizer.bos }
            session.reset()
            do {
                try chunk.withUnsafeBufferPointer { (b) throws(EAError) in
                    try session.evaluate(b, logitsFrom: first) { i, l in
                        if i >= ctx - 1 { return }
                        nll += tokenNLL(l, nv, Int(chunk[i + 1]))
                        count += 1
                    }
                }
            } catch { die("\(error.status.text): \(error.message)") }
            let el = Date().timeIntervalSince(t0)
            print("[\(c + 1)] \(String(format: "%.4f", exp(nll / Double(count))))  (\(String(format: "%.1f", el)) s)")
        }
        print("ppl: \(String(format: "%.4f", exp(nll / Double(count))))")
    }

    /// One session over the whole stream (BOS, then the text, repeated up to --max-tokens): every
    /// token is scored given everything before it that the policy keeps. Sessions with dense or DHSA
    /// layers stop at the model's training context; Λ-only sessions run to the end.
    func runStream(_ model: Model, _ text: [Int32]) {
        if segment < 1 { die("--segment must be >= 1") }
        if text.isEmpty { die("empty text") }
        var toks: [Int32] = []
        if model.tokenizer.bos >= 0 { toks.append(model.tokenizer.bos) }
        let want = maxTokens > 0 ? maxTokens : text.count + toks.count
        while toks.count < want { toks += text.prefix(want - toks.count) }
        var sp = SessionParams()
        sp.nBatch = batch
        sp.nThreads = t
        sp.kvBits = kvBits
        sp.nCtx = attention.policy == .lambda && attention.layerAttn.isEmpty ? 0 : min(toks.count, model.hp.nCtxTrain)
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: sp.nCtx)
        let session: Session
        do { session = try Session(model: model, params: sp) } catch { die("\(error.status.text): \(error.message)") }
        let limit = min(toks.count, session.plan.maxPositions)
        eprint("ppl --stream: \(toks.count) tokens, \(attention.summary), session \(session.allocatedBytes) bytes, scoring \(limit - 1)")
        let nv = model.hp.nVocab
        var segNLL = 0.0, segCount = 0, totNLL = 0.0, totCount = 0, segIndex = 0
        let t0 = Date()
        var done = 0
        while done < limit {
            let n = min(4096, limit - done)
            let part = Array(toks[done..<(done + n)])
            do {
                try part.withUnsafeBufferPointer { (b) throws(EAError) in
                    try session.evaluate(b, logitsFrom: 0) { i, l in
                        let at = done + i  // predicts token at + 1
                        if at + 1 >= limit { return }
                        let v = tokenNLL(l, nv, Int(toks[at + 1]))
                        segNLL += v; segCount += 1; totNLL += v; totCount += 1
                        if (at + 1) % segment == 0 || at + 2 == limit {
                            let el = Date().timeIntervalSince(t0)
                            print("segment \(segIndex) tokens \(segIndex * segment)-\(at + 1): ppl \(String(format: "%.4f", exp(segNLL / Double(segCount))))  (\(String(format: "%.1f", el)) s, peak RSS \(peakRSSBytes() >> 20) MiB)")
                            segIndex += 1; segNLL = 0; segCount = 0
                        }
                    }
                }
            } catch { die("\(error.status.text): \(error.message)") }
            done += n
        }
        if limit < toks.count { print("context limit: stopped after \(limit) of \(toks.count) tokens") }
        print("ppl: \(String(format: "%.4f", exp(totNLL / Double(max(1, totCount)))))")
    }
}

/// -log softmax(l)[target], in double.
func tokenNLL(_ l: UnsafePointer<Float>, _ nv: Int, _ target: Int) -> Double {
    var mx = -Float.infinity
    for k in 0..<nv where l[k] > mx { mx = l[k] }
    var sum = 0.0
    for k in 0..<nv { sum += exp(Double(l[k] - mx)) }
    return -(Double(l[target] - mx) - log(sum))
}
