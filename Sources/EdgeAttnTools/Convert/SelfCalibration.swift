import EdgeAttn
import Foundation

/// Data-free calibration (LLM-QAT's recipe): when no --calib text is given, the source model writes
/// its own. Each chunk starts from a token drawn uniformly from the text vocabulary, continues with
/// a few greedy tokens (a random start alone is often no word at all) and then samples the model's
/// own distribution at temperature 1, with no top-k/top-p cut. Text sampled this way covers what the
/// model knows rather than one domain, which is what a general-purpose 2-bit file must keep;
/// calibrating on one domain fits that domain and loses the rest (docs/results/quality-domains.md).
/// Deterministic: a fixed seed, and the forward pass does not depend on the thread count.
func generatedCalibration(_ model: Model, chunks nChunks: Int, chunk: Int, seed: UInt64, progress: Bool,
                          log: (String) -> Void) throws -> [[Int32]] {
    var sp = SessionParams()
    sp.nCtx = chunk
    sp.nBatch = 1
    sp.kvBits = 32
    let session: Session
    do { session = try Session(model: model, params: sp) } catch { throw ConvertError("calibration session: \(error.message)") }
    let tok = model.tokenizer, nv = model.hp.nVocab
    let starts = (0..<Int32(nv)).filter { tok.isText($0) }
    if starts.isEmpty { throw ConvertError("the vocabulary has no text tokens to start calibration text from") }
    let greedy = 4
    let bos: [Int32] = tok.addBos ? [tok.bos] : []
    var rng = SplitMix64(seed: seed)
    var probs = [Double](repeating: 0, count: nv)
    var out: [[Int32]] = []
    let t0 = Date()
    for c in 0..<nChunks {
        session.reset()
        var seq = bos
        seq.append(starts[Int(rng.next() % UInt64(starts.count))])
        do {
            var logits = try seq.withUnsafeBufferPointer { (p) throws(EAError) in
                try session.evaluate(p)
                return session.lastLogits!
            }
            while seq.count < chunk {
                var next: Int32
                if seq.count - bos.count <= greedy {
                    var best = 0
                    for i in 1..<nv where logits[i] > logits[best] { best = i }
                    next = Int32(best)
                } else {
                    var mx = logits[0]
                    for i in 1..<nv where logits[i] > mx { mx = logits[i] }
                    var sum = 0.0
                    for i in 0..<nv { probs[i] = exp(Double(logits[i] - mx)); sum += probs[i] }
                    var u = rng.nextUniform() * sum
                    next = Int32(nv - 1)
                    for i in 0..<nv {
                        u -= probs[i]
                        if u < 0 { next = Int32(i); break }
                    }
                }
                // A document may end inside a chunk: go on with a new random start, as a corpus would.
                if tok.isEndOfGeneration(next) {
                    next = starts[Int(rng.next() % UInt64(starts.count))]
                }
                seq.append(next)
                if seq.count < chunk { logits = try session.decode(next) }
            }
        } catch {
            throw ConvertError("generating calibration text: \(error.message)")
        }
        out.append(seq)
        if progress {
            let s = Date().timeIntervalSince(t0), left = s / Double(c + 1) * Double(nChunks - c - 1)
            log("\rgenerating calibration text: \(c + 1)/\(nChunks) chunks of \(chunk) tokens, "
                + "\(Int(s)) s, about \(Int(left)) s left   ")
        }
    }
    if progress { log("\n") }
    return out
}
