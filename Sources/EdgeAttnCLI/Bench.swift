import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

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
