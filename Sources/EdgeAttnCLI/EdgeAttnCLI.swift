import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

@main
struct EdgeAttnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeattn",
        abstract: "Run, inspect and evaluate GGUF models with libedgeattn.",
        subcommands: [Run.self, Tokenize.self, Detokenize.self, Inspect.self, Perplexity.self,
                      Dequant.self, Logits.self, Convert.self, Bench.self, Needle.self])
}

/// Prints to stderr and exits non-zero: the CLI's one way to fail.
func die(_ msg: String, _ code: Int32 = 1) -> Never {
    FileHandle.standardError.write(("edgeattn: " + msg + "\n").data(using: .utf8)!)
    exit(code)
}

func eprint(_ msg: String) {
    FileHandle.standardError.write((msg + "\n").data(using: .utf8)!)
}

/// Loads a text model (every command that takes -m reads or writes tokens).
func loadModel(_ path: String) -> Model {
    let model: Model
    do { model = try Model(path: path) } catch {
        die("\(error.status.text): \(error.message)")
    }
    if model.hp.series != nil {
        die("\(Status.modelKind.text): \(path) is a series model (numbers in, forecasts out): run it with examples/stream or ea_session_eval_series")
    }
    return model
}

func writeStdout(_ bytes: [UInt8]) {
    bytes.withUnsafeBufferPointer { b in
        var off = 0
        while off < b.count {
            let w = write(1, b.baseAddress! + off, b.count - off)
            if w <= 0 { return }
            off += w
        }
    }
}

/// Writes data to path through a temporary file and a rename: no half-written output.
func writeAtomically(_ data: Data, to path: String) {
    let tmp = path + ".tmp.\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: data) else { die("cannot write \(tmp)") }
    if rename(tmp, path) != 0 {
        unlink(tmp)
        die("cannot rename \(tmp) to \(path)")
    }
}

func peakRSSBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return 0
}

func tokenize(_ model: Model, _ text: String, bos: Bool, special: Bool) -> [Int32] {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBufferPointer {
        model.tokenizer.encode(UnsafeBufferPointer($0), addBos: bos, parseSpecial: special)
    }
}

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
        var logits = session.lastLogits!
        var out: [Int32] = []
        var t2 = Date()
        for i in 0..<n {
            let tok = sampler.sample(logits)
            if model.tokenizer.isEndOfGeneration(tok) { break }
            out.append(tok)
            if ids {
                writeStdout(Array(((i > 0 ? " " : "") + String(tok)).utf8))
            } else {
                writeStdout(model.tokenizer.piece(tok))
            }
            if i == 0 { t2 = Date() }
            if i == n - 1 { break }
            do { logits = try session.decode(tok) } catch { die("\(error.status.text): \(error.message)") }
        }
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

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print token ids of a text, separated by spaces.")
    @Option(name: .short) var m: String
    @Flag(name: .customLong("no-special"), help: "Tokenize special-token text as plain text.") var noSpecial = false
    @Flag(name: .long, help: "Add BOS if the model asks for it.") var bos = false
    @Option(name: .long, help: "Read the text from a file (bytes as they are).") var file: String?
    @Argument var text: String?

    func run() throws {
        let model = loadModel(m)
        var bytes: [UInt8]
        if let f = file {
            guard let d = FileManager.default.contents(atPath: f) else { die("cannot read \(f)") }
            bytes = [UInt8](d)
        } else if let t = text {
            bytes = Array(t.utf8)
        } else {
            die("give TEXT or --file")
        }
        let ids = bytes.withUnsafeMutableBufferPointer {
            model.tokenizer.encode(UnsafeBufferPointer($0), addBos: bos, parseSpecial: !noSpecial)
        }
        writeStdout(Array((ids.map { String($0) }.joined(separator: " ") + "\n").utf8))
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the bytes of whitespace-separated token ids.")
    @Option(name: .short) var m: String
    @Option(name: .long) var file: String

    func run() throws {
        let model = loadModel(m)
        guard let d = FileManager.default.contents(atPath: file), let s = String(data: d, encoding: .utf8) else {
            die("cannot read \(file)")
        }
        var out: [UInt8] = []
        for w in s.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            guard let id = Int32(w), id >= 0, Int(id) < model.hp.nVocab else { die("bad token id '\(w)'") }
            out.append(contentsOf: model.tokenizer.piece(id))
        }
        writeStdout(out)
    }
}

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

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a GGUF model to W2A8 (2-bit linear layers; embedding/head at 8 bits by default).",
        discussion: """
        Types: w2 (group-wise asymmetric 2-bit, fp16 scale and offset per group), w2g<N> (group N), \
        w4 (ggml q4_1), w4g<N> (asymmetric 4-bit groups of N as two W2 planes), w8 (ggml q8_0), f16, f32. Quantizers: rtn, search, imatrix, gptq (the last two \
        need --calib). Example: edgeattn convert in.gguf out.gguf --calib macbeth.txt --type '*ffn_down*=w4'
        """)
    @Argument(help: "Source GGUF (any type the runtime reads).") var input: String
    @Argument(help: "Output GGUF (written to a temporary file, then renamed).") var output: String
    @Option(name: .long, help: "W2 group size (multiple of 32).") var group: Int = 64
    @Option(name: .long, help: "rtn | search | imatrix | gptq") var quantizer: String = "gptq"
    @Option(name: .long, help: "Calibration text file (repeatable).") var calib: [String] = []
    @Option(name: .customLong("calib-tokens"), help: "Calibration tokens (chunks of 512, spread evenly over the texts).") var calibTokens: Int = 4096
    @Option(name: .long, help: "Format of the linear layers.") var linear: String = "w2"
    @Option(name: .long, help: "Format of the token embedding / output head.") var embed: String = "w8"
    @Option(name: .long, help: "Format of a separate, calibrated output head (w4, w4g<N>, w8, f16): a tied source gets its own output.weight from token_embd, which keeps --embed.")
    var head: String? = nil
    @Option(name: .long, help: "PATTERN=TYPE override by tensor name glob (repeatable, last match wins).")
    var type: [String] = []
    @Option(name: .long, help: "Hadamard block (power of two) to rotate the layer matrices by; 0 = none.")
    var rotate: Int = 0
    @Option(name: .long, help: "GPTQ: rounds of code coordinate descent and joint scale/offset least squares per row after GPTQ (0 = none).")
    var refine: Int = 0
    @Flag(name: .long, help: "Calibrate layer by layer on the partly quantized model (needs --calib): each layer's statistics come from the outputs of the already quantized layers before it.")
    var sequential = false
    @Option(name: .customLong("float-target"), help: "With --sequential: quantize each layer matrix towards W + BETA (W* - W), W* the least-squares fit of the source model's output on the same tokens from the quantized model's inputs (0 < BETA <= 1; 0.25 in the demo's recipe).")
    var floatTarget: Double = 0
    @Flag(name: .customLong("true-sequential"), help: "With --sequential: within a layer too, calibrate each matrix on inputs that went through the layer's matrices converted before it (q/k/v, attention output, gate/up, down).")
    var trueSequential = false
    @Flag(name: .customLong("act-order"), help: "GPTQ: quantize columns in order of decreasing calibration energy (Hessian diagonal), group parameters fitted on the original weights.")
    var actOrder = false
    @Flag(name: .long, help: "No progress bar.") var quiet = false

    func run() throws {
        var o = ConvertOptions()
        o.input = input
        o.output = output
        o.group = group
        guard let q = Quantizer(rawValue: quantizer) else { die("unknown quantizer '\(quantizer)' (rtn, search, imatrix, gptq)") }
        o.quantizer = q
        o.calibFiles = calib
        o.calibTokens = calibTokens
        guard let lt = TargetType.parse(linear, defaultGroup: group) else { die("unknown type '\(linear)'") }
        guard let et = TargetType.parse(embed, defaultGroup: group) else { die("unknown type '\(embed)'") }
        o.linearType = lt
        o.embedType = et
        if let h = head {
            guard let ht = TargetType.parse(h, defaultGroup: group) else { die("unknown type '\(h)'") }
            o.headType = ht
        }
        for spec in type {
            guard let eq = spec.lastIndex(of: "="), let t = TargetType.parse(String(spec[spec.index(after: eq)...]), defaultGroup: group) else {
                die("bad --type '\(spec)': expected PATTERN=TYPE")
            }
            o.overrides.append((String(spec[..<eq]), t))
        }
        o.progress = !quiet
        o.rotate = rotate
        if refine < 0 || refine > 100 { die("--refine \(refine) must be in 0...100") }
        o.refine = refine
        o.sequential = sequential
        if actOrder && q != .gptq { die("--act-order needs --quantizer gptq") }
        o.actOrder = actOrder
        o.floatTarget = floatTarget
        o.trueSequential = trueSequential
        let t0 = eak_now_ns()
        let reports: [TensorReport]
        do {
            reports = try convert(o) { FileHandle.standardError.write($0.data(using: .utf8)!) }
        } catch { die("\(error)") }
        let secs = Double(eak_now_ns() - t0) / 1e9
        print(pad("tensor", 28) + pad("type", 12, right: false) + pad("bits/w", 8) + pad("rel.err", 10) + "  (error on)")
        var linBits = 0, linN = 0, allBits = 0, allN = 0
        for r in reports {
            print(pad(r.name, 28) + pad(r.type, 12, right: false) + pad(fmt(r.bitsPerWeight, 3), 8)
                  + pad(fmt(r.relError, 4), 10) + (r.outputError ? "  output" : "  weights"))
            if r.isLinear { linBits += r.bytes * 8; linN += r.elements }
            allBits += r.bytes * 8
            allN += r.elements
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("linear layers: \(fmt(Double(linBits) / Double(max(1, linN)), 3)) bits/weight over \(linN) weights")
        print("all quantized matrices: \(fmt(Double(allBits) / Double(max(1, allN)), 3)) bits/weight; file \(size) bytes (\(fmt(Double(size) / 1048576, 1)) MiB)")
        print("converted in \(fmt(secs, 1)) s")
    }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
func pad(_ s: String, _ w: Int, right: Bool = false) -> String {
    s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count)
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prefill and decode speed, bytes read per token, peak memory; last line is JSON.")
    @Option(name: .short, help: "Model file (GGUF).") var m: String
    @Option(name: .short, help: "Threads (0 = all cores).") var t: Int = 0
    @Option(name: .long, help: "Prompt tokens (prefill).") var prompt: Int = 128
    @Option(name: .long, help: "Tokens to decode after the prompt.") var gen: Int = 64
    @Option(name: .customLong("kv-bits"), help: "KV cache bits: 32, 16, 8 or 4 (0 = model default).") var kvBits: Int = 0
    @Option(name: .long, help: "Repetitions (the median is reported).") var reps: Int = 3
    @Option(name: .long, help: "Prefill batch.") var batch: Int = 512
    @OptionGroup var attention: AttentionOptions

    func run() throws {
        if prompt < 1 || gen < 1 || reps < 1 { die("--prompt, --gen and --reps must be >= 1") }
        let model = loadModel(m)
        var sp = SessionParams()
        sp.nCtx = prompt + gen + 1
        sp.nBatch = min(prompt, batch)
        sp.nThreads = t
        sp.kvBits = kvBits
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: sp.nCtx)
        let session: Session
        do { session = try Session(model: model, params: sp) } catch { die("\(error.status.text): \(error.message)") }
        // A deterministic English prompt of exactly `prompt` tokens.
        let seedText = "The quick brown fox jumps over the lazy dog while the old king counts his gold in the tower. "
        var toks: [Int32] = []
        while toks.count < prompt { toks += tokenize(model, seedText, bos: false, special: false) }
        toks = Array(toks.prefix(prompt))
        var prefill: [Double] = [], decode: [Double] = []
        for _ in 0..<reps {
            session.reset()
            let t0 = eak_now_ns()
            do { try toks.withUnsafeBufferPointer { (p) throws(EAError) in try session.evaluate(p) } } catch { die(error.message) }
            let t1 = eak_now_ns()
            var next = argmax(session.lastLogits!, model.hp.nVocab)
            for _ in 0..<gen {
                do { next = argmax(try session.decode(next), model.hp.nVocab) } catch { die(error.message) }
            }
            let t2 = eak_now_ns()
            prefill.append(Double(prompt) / (Double(t1 - t0) / 1e9))
            decode.append(Double(gen) / (Double(t2 - t1) / 1e9))
        }
        let pf = median(prefill), dc = median(decode)
        let wBytes = model.weightBytesPerToken
        // KV bytes at the mean decode depth, counting only the positions each layer's policy reads
        var attended = 0.0
        for l in 0..<model.hp.nLayer { attended += Double(session.plan.attendedPositions(layer: l, pos: prompt + gen / 2)) }
        let kvBytes = session.plan.kvBytesPerPosition(model.hp) * attended / Double(model.hp.nLayer)
        let perToken = Double(wBytes) + kvBytes
        let peak = peakRSSBytes()  // before the bandwidth probe's buffer
        let gbps = readBandwidth(threads: session.plan.nThreads)
        let bound = gbps * 1e9 / perToken
        print("model: \(m)")
        print("threads \(session.plan.nThreads), kv_bits \(session.plan.kvBits), attention \(attention.summary), isa \(String(cString: eak_isa_name()))")
        print("prefill \(prompt) tokens: \(fmt(pf, 1)) tokens/s   [\(fmt(prefill.min()!, 1))-\(fmt(prefill.max()!, 1))]")
        print("decode \(gen) tokens: \(fmt(dc, 1)) tokens/s   [\(fmt(decode.min()!, 1))-\(fmt(decode.max()!, 1))]")
        print("bytes read per decoded token: \(Int(perToken)) (weights \(wBytes), KV \(Int(kvBytes)) at mean depth)")
        print("memory read bandwidth (same process): \(fmt(gbps, 2)) GB/s -> bound \(fmt(bound, 1)) tokens/s; decode at \(fmt(100 * dc / bound, 1))% of it")
        print("peak resident memory: \(peak) bytes")
        print("{\"model\": \"\(jsonEscape(m))\", \"threads\": \(session.plan.nThreads), \"kv_bits\": \(session.plan.kvBits), "
              + "\"prompt\": \(prompt), \"gen\": \(gen), \"prefill_tps\": \(fmt(pf, 2)), \"decode_tps\": \(fmt(dc, 2)), "
              + "\"bytes_per_token\": \(Int(perToken)), \"weight_bytes_per_token\": \(wBytes), "
              + "\"kv_bytes_per_token\": \(Int(kvBytes)), \"read_gbps\": \(fmt(gbps, 3)), "
              + "\"bandwidth_bound_tps\": \(fmt(bound, 2)), \"bound_fraction\": \(fmt(dc / bound, 4)), \"peak_bytes\": \(peak), "
              + "\"session_bytes\": \(session.allocatedBytes), \"attention\": \"\(attention.policy.name)\"}")
    }
}

func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int32 {
    var best = 0
    for i in 1..<n where p[i] > p[best] { best = i }
    return Int32(best)
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func jsonEscape(_ s: String) -> String {
    var o = ""
    for c in s.unicodeScalars {
        switch c {
        case "\"": o += "\\\""
        case "\\": o += "\\\\"
        default: o += c.value < 0x20 ? "?" : String(c)
        }
    }
    return o
}

/// Read bandwidth in GB/s: the best of a few passes summing a 256 MiB buffer on `threads` threads.
func readBandwidth(threads: Int) -> Double {
    let words = 32 << 20
    let buf = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
    defer { buf.deallocate() }
    for i in 0..<words { buf[i] = UInt64(truncatingIfNeeded: i) }
    let parts = max(1, threads)
    var best = 0.0
    var sink: UInt64 = 0
    let lock = NSLock()
    for _ in 0..<3 {
        let t0 = eak_now_ns()
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = words * p / parts, hi = words * (p + 1) / parts
            var s: UInt64 = 0
            for i in lo..<hi { s &+= buf[i] }
            lock.lock(); sink &+= s; lock.unlock()
        }
        let secs = Double(eak_now_ns() - t0) / 1e9
        best = max(best, Double(words * 8) / secs / 1e9)
    }
    if sink == 42 { eprint("") }  // keep the sums alive
    return best
}
