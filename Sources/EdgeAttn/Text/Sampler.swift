import EAKernels

public struct SamplerParams {
    public var temperature: Float = 0
    public var topK: Int = 40
    public var topP: Float = 0.95
    public var minP: Float = 0.05
    public var repeatPenalty: Float = 1
    public var repeatLastN: Int = 64
    public var seed: UInt64 = 0x5eed
    public init() {}
}

/// The sampling chain, in llama.cpp's order: repetition penalty -> top-k -> top-p -> min-p ->
/// temperature -> random draw. Greedy (temperature <= 0) applies only the penalty, then argmax.
/// All scratch is allocated at creation; sampling a token allocates nothing.
public final class Sampler {
    public let params: SamplerParams
    let nVocab: Int
    let work: UnsafeMutablePointer<Float>
    let idx: UnsafeMutablePointer<Int32>
    let probs: UnsafeMutablePointer<Float>
    let history: UnsafeMutablePointer<Int32>
    var historyCount = 0
    var historyHead = 0
    var rng: SplitMix64

    public convenience init(vocabSize: Int, params: SamplerParams) throws(EAError) {
        if vocabSize < 1 { throw EAError(.invalidArgument, "vocabulary size \(vocabSize)") }
        if params.topK < 0 || params.repeatLastN < 0 || params.repeatLastN > 1 << 20 {
            throw EAError(.invalidArgument, "top_k and repeat_last_n must be >= 0 (repeat_last_n <= 2^20)")
        }
        if !(params.topP > 0 && params.topP <= 1) || !(params.minP >= 0 && params.minP <= 1)
            || !(params.repeatPenalty > 0) || params.temperature.isNaN {
            throw EAError(.invalidArgument, "top_p must be in (0,1], min_p in [0,1], repeat_penalty > 0")
        }
        self.init(validated: params, vocabSize: vocabSize)
    }

    init(validated params: SamplerParams, vocabSize: Int) {
        self.params = params
        nVocab = vocabSize
        work = .allocate(capacity: vocabSize)
        idx = .allocate(capacity: vocabSize)
        probs = .allocate(capacity: vocabSize)
        history = .allocate(capacity: max(params.repeatLastN, 1))
        rng = SplitMix64(seed: params.seed)
    }

    deinit {
        work.deallocate()
        idx.deallocate()
        probs.deallocate()
        history.deallocate()
    }

    /// Bytes of scratch this sampler holds.
    public var allocatedBytes: Int { nVocab * 12 + max(params.repeatLastN, 1) * 4 }

    public func accept(_ token: Int32) {
        let n = params.repeatLastN
        if n == 0 { return }
        history[historyHead] = token
        historyHead = (historyHead + 1) % n
        historyCount = min(historyCount + 1, n)
    }

    public func reset() {
        historyCount = 0
        historyHead = 0
        rng = SplitMix64(seed: params.seed)
    }

    func nextUniform() -> Double { rng.nextUniform() }

    public func sample(_ logits: UnsafePointer<Float>) -> Int32 {
        work.update(from: logits, count: nVocab)
        if params.repeatPenalty != 1 {
            // each distinct token of the window is penalised once
            for h in 0..<historyCount {
                let t = Int(history[h])
                if t < 0 || t >= nVocab { continue }
                var seen = false
                for e in 0..<h where history[e] == history[h] {
                    seen = true
                    break
                }
                if seen { continue }
                work[t] = work[t] > 0 ? work[t] / params.repeatPenalty : work[t] * params.repeatPenalty
            }
        }
        let token: Int32
        if params.temperature <= 0 {
            var best = 0
            for i in 1..<nVocab where work[i] > work[best] { best = i }
            token = Int32(best)
        } else {
            token = sampleRandom()
        }
        accept(token)
        return token
    }

    func sampleRandom() -> Int32 {
        let k = params.topK > 0 ? min(params.topK, nVocab) : nVocab
        eak_top_k(work, Int32(nVocab), Int32(k), idx)
        // probabilities at temperature 1 for the filters
        let mx = work[Int(idx[0])]
        var sum: Float = 0
        for i in 0..<k {
            let p = eak_expf(work[Int(idx[i])] - mx)
            probs[i] = p
            sum += p
        }
        var n = k
        if params.topP < 1 {
            var cum: Float = 0
            for i in 0..<k {
                cum += probs[i] / sum
                if cum >= params.topP {
                    n = i + 1
                    break
                }
            }
        }
        if params.minP > 0 {
            let cut = params.minP * probs[0]
            var m = 1
            while m < n && probs[m] >= cut { m += 1 }
            n = m
        }
        // temperature on the survivors
        var tsum: Float = 0
        let invT = 1 / params.temperature
        for i in 0..<n {
            let p = eak_expf((work[Int(idx[i])] - mx) * invT)
            probs[i] = p
            tsum += p
        }
        var r = Float(nextUniform()) * tsum
        for i in 0..<n {
            r -= probs[i]
            if r < 0 { return idx[i] }
        }
        return idx[n - 1]
    }
}


