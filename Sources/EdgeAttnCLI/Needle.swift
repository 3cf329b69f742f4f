import ArgumentParser
import EAKernels
import EdgeAttn
import Foundation

/// Needle in a haystack: a random pass key hidden at several depths of filler text, asked for with
/// the chat template; greedy answer, accuracy per depth, prefill speed.
struct Needle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pass-key retrieval at several depths of a long prompt (needle in a haystack).",
        discussion: """
        The prompt is one chat user turn: an instruction, filler text (FILE, e.g. a Shakespeare play)
        cut to fill --ctx tokens with the sentence "The pass key is NNNNN. Remember it. NNNNN is the
        pass key." inserted at each depth (a fraction of the filler, moved to the nearest line start),
        then the question. The assistant turn starts with "The pass key is"; the answer counts when
        the greedy continuation (8 tokens) contains the key. Decode speed is timed over 16 steps after the
        prompt (the cache then holds about --ctx tokens). Each trial draws a new key and a new
        filler offset from --seed.
        """)
    @Option(name: .short, help: "Model file (GGUF).") var m: String
    @Option(name: .short, help: "Filler text file.") var f: String
    @Option(name: .long, help: "Prompt length in tokens.") var ctx: Int = 2048
    @Option(name: .long, help: "Depths as fractions of the filler, comma separated.") var depths: String = "0.1,0.3,0.5,0.7,0.9"
    @Option(name: .long, help: "Trials per depth.") var trials: Int = 1
    @Option(name: .long) var seed: UInt64 = 1
    @Option(name: .short, help: "Threads (0 = all cores).") var t: Int = 0
    @Option(name: .customLong("kv-bits")) var kvBits: Int = 0
    @Option(name: .long, help: "Prefill batch.") var batch: Int = 256
    @OptionGroup var attention: AttentionOptions

    func run() throws {
        let depthList = depths.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) ?? -1 }
        if depthList.isEmpty || depthList.contains(where: { $0 < 0 || $0 > 1 }) { die("--depths: fractions in [0, 1]") }
        if trials < 1 || ctx < 256 { die("--trials >= 1 and --ctx >= 256") }
        let model = loadModel(m)
        guard let d = FileManager.default.contents(atPath: f) else { die("cannot read \(f)") }
        let filler = tokenize(model, String(decoding: d, as: UTF8.self), bos: false, special: false)
        let style = ChatTemplate.style(for: model.tokenizer)
        let wrapped = ChatTemplate.format([(role: "user", content: "\u{1}")], addAssistant: true, style: style)
        let cut = wrapped.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
        let head = tokenize(model, cut[0] + "There is a pass key hidden in the following text. Find it and remember it.\n\n", bos: true, special: true)
        let tail = tokenize(model, "\n\nWhat is the pass key? Answer with the number only." + cut[1] + "The pass key is", bos: false, special: true)
        var sp = SessionParams()
        sp.nCtx = ctx + 24
        sp.nBatch = batch
        sp.nThreads = t
        sp.kvBits = kvBits
        attention.apply(&sp, nLayer: model.hp.nLayer, ctx: sp.nCtx)
        let session: Session
        do { session = try Session(model: model, params: sp) } catch { die("\(error.status.text): \(error.message)") }
        var rng = SplitMix64(seed: seed &+ 0x9E3779B97F4A7C15)
        func next() -> UInt64 { rng.next() }
        print("needle: ctx \(ctx), \(attention.summary), kv_bits \(session.plan.kvBits), session \(session.allocatedBytes) bytes")
        var results: [(Double, Int, Int, Double, Double)] = []  // depth, hits, trials, prefill and decode tok/s (means)
        for depth in depthList {
            var hits = 0, tps = 0.0, dtps = 0.0
            for _ in 0..<trials {
                let key = 10000 + Int(next() % 90000)
                let needle = tokenize(model, " The pass key is \(key). Remember it. \(key) is the pass key.\n", bos: false, special: false)
                let room = ctx - head.count - tail.count - needle.count
                if room < 64 || filler.count < room { die("filler too short or --ctx too small") }
                let start = Int(next() % UInt64(max(1, filler.count - room)))
                var at = Int(Double(room) * depth)
                // move to a line start so the needle does not split a word
                var back = at
                while back > 0 && at - back < 64 && !model.tokenizer.piece(filler[start + back - 1]).contains(0x0A) { back -= 1 }
                if back > 0 && at - back < 64 { at = back }
                var prompt = head
                prompt += filler[start..<(start + at)]
                prompt += needle
                prompt += filler[(start + at)..<(start + room)]
                prompt += tail
                session.reset()
                let t0 = eak_now_ns()
                do { try prompt.withUnsafeBufferPointer { (b) throws(EAError) in try session.evaluate(b) } } catch { die(error.message) }
                let t1 = eak_now_ns()
                tps += Double(prompt.count) / (Double(t1 - t0) / 1e9)
                // the answer: up to 8 tokens; decoding goes on to 16 steps to time decode at this depth
                var out: [UInt8] = []
                var tok = argmax(session.lastLogits!, model.hp.nVocab)
                var ended = false
                let t2 = eak_now_ns()
                for i in 0..<16 {
                    if model.tokenizer.isEndOfGeneration(tok) { ended = true }
                    if !ended && i < 8 { out += model.tokenizer.piece(tok) }
                    do { tok = argmax(try session.decode(tok), model.hp.nVocab) } catch { die(error.message) }
                }
                let dt = 16 / (Double(eak_now_ns() - t2) / 1e9)
                dtps += dt
                let answer = String(decoding: out, as: UTF8.self)
                let ok = answer.contains(String(key))
                if ok { hits += 1 }
                print("depth \(fmt(depth, 2)) key \(key): \(ok ? "found" : "missed") (answer \"\(answer.replacingOccurrences(of: "\n", with: " "))\"), prefill \(prompt.count) tokens at \(fmt(Double(prompt.count) / (Double(t1 - t0) / 1e9), 1)) tok/s, decode \(fmt(dt, 1)) tok/s")
            }
            results.append((depth, hits, trials, tps / Double(trials), dtps / Double(trials)))
        }
        let total = results.reduce(0) { $0 + $1.1 }, n = results.reduce(0) { $0 + $1.2 }
        let meanTps = results.reduce(0.0) { $0 + $1.3 } / Double(results.count)
        let meanDec = results.reduce(0.0) { $0 + $1.4 } / Double(results.count)
        print("accuracy: \(total)/\(n), mean prefill \(fmt(meanTps, 1)) tok/s, decode \(fmt(meanDec, 1)) tok/s")
        let per = results.map { "{\"depth\": \($0.0), \"hits\": \($0.1), \"trials\": \($0.2), \"prefill_tps\": \(fmt($0.3, 2))}" }.joined(separator: ", ")
        print("{\"ctx\": \(ctx), \"attention\": \"\(attention.policy.name)\", \"accuracy\": \(fmt(Double(total) / Double(n), 4)), \"prefill_tps\": \(fmt(meanTps, 2)), \"decode_tps\": \(fmt(meanDec, 2)), \"session_bytes\": \(session.allocatedBytes), \"depths\": [\(per)]}")
    }
}
