import ArgumentParser
import EdgeAttn

/// The attention-policy flags shared by generate/run, logits, ppl, bench and needle.
struct AttentionOptions: ParsableArguments {
    @Option(name: .customLong("attn"), help: "Attention policy: dense, lambda (sinks + window) or dhsa (sparse).")
    var attn: String = "dense"
    @Option(name: .long, help: "Λ: sink tokens (the first tokens every query keeps).") var sinks: Int = 4
    @Option(name: .long, help: "Λ: window of latest tokens (the query included).") var window: Int = 1020
    @Option(name: .customLong("pos-mode"), help: "Λ sink positions: streaming (StreamingLLM, cache-slot positions) or lm-infinite (distance capped at the training context).")
    var posMode: String = "streaming"
    @Option(name: .customLong("budget-tokens"), help: "DHSA: keys per query block, sinks and local window included (0 = half the context).")
    var budget: Int = 0
    @Option(name: .customLong("budget-frac"), help: "DHSA: budget as a fraction of the context (overrides --budget-tokens when > 0).")
    var budgetFrac: Double = 0
    @Option(name: .customLong("budget-prefix-frac"), help: "DHSA: each query block reads this fraction of the keys it may see (at least global + local + query block; capped by --budget-tokens when set).")
    var budgetPrefixFrac: Float = 0
    @Option(name: .customLong("dense-tail"), help: "DHSA: the query blocks holding a prompt's last N tokens attend densely (decode stays sparse).")
    var denseTail: Int = DHSAParams().denseTail
    @Option(name: .customLong("dhsa-score"), help: "DHSA: a chunk's score over the query heads sharing a kv head: max (largest head score) or sum (summed query).")
    var dhsaScore: String = "max"
    @Option(name: .customLong("dhsa-global"), help: "DHSA: first tokens every query keeps.") var global: Int = 64
    @Option(name: .customLong("dhsa-local"), help: "DHSA: recent tokens every query keeps.") var local: Int = 128
    @Option(name: .customLong("chunk-min"), help: "DHSA: shortest chunk.") var chunkMin: Int = 16
    @Option(name: .customLong("chunk-max"), help: "DHSA: longest chunk.") var chunkMax: Int = 64
    @Option(name: .customLong("chunk-threshold"), help: "DHSA: a key whose cosine similarity to its open chunk's mean key falls below this starts a new chunk.")
    var chunkThreshold: Float = DHSAParams().threshold
    @Option(name: .customLong("query-block"), help: "DHSA: prefill queries sharing one selection.") var queryBlock: Int = 32
    @Option(name: .customLong("layer-attn"), help: "Per-layer overrides, e.g. '0-1=dense,2-29=dhsa'.")
    var layerAttn: String = ""

    var policy: AttentionPolicy {
        guard let p = AttentionPolicy.parse(attn) else { die("--attn \(attn): expected dense, lambda or dhsa") }
        return p
    }

    /// Writes the flags into session params; ctx is the session context (for --budget-frac).
    func apply(_ sp: inout SessionParams, nLayer: Int, ctx: Int) {
        sp.attention = policy
        sp.sinks = sinks
        sp.window = window
        switch posMode {
        case "streaming", "streamingllm": sp.positionMode = .streaming
        case "lm-infinite", "lminfinite": sp.positionMode = .lmInfinite
        default: die("--pos-mode \(posMode): expected streaming or lm-infinite")
        }
        var d = DHSAParams()
        d.budget = budgetFrac > 0 ? max(1, Int((Double(ctx) * budgetFrac).rounded())) : budget
        d.global = global
        d.local = local
        d.minChunk = chunkMin
        d.maxChunk = chunkMax
        d.threshold = chunkThreshold
        d.queryBlock = queryBlock
        d.prefixFraction = budgetPrefixFrac
        d.denseTail = denseTail
        switch dhsaScore {
        case "max": d.headMax = true
        case "sum": d.headMax = false
        default: die("--dhsa-score \(dhsaScore): expected max or sum")
        }
        sp.dhsa = d
        if !layerAttn.isEmpty {
            var per = [AttentionPolicy](repeating: policy, count: nLayer)
            for item in layerAttn.split(separator: ",") {
                let kv = item.split(separator: "=")
                guard kv.count == 2, let pol = AttentionPolicy.parse(String(kv[1])) else { die("--layer-attn: bad item '\(item)'") }
                let r = kv[0].split(separator: "-")
                guard let lo = Int(r[0]), let hi = Int(r.count > 1 ? r[1] : r[0]), r.count <= 2, lo >= 0, lo <= hi, hi < nLayer else {
                    die("--layer-attn: bad layer range '\(kv[0])' (the model has \(nLayer) layers)")
                }
                for l in lo...hi { per[l] = pol }
            }
            sp.layerAttention = per
        }
    }

    var summary: String {
        switch policy {
        case .dense: return "dense"
        case .lambda: return "lambda S=\(sinks) W=\(window) \(posMode)"
        case .dhsa:
            let b = budgetPrefixFrac > 0 ? "\(budgetPrefixFrac)x prefix" : budgetFrac > 0 ? "\(budgetFrac)x" : String(budget)
            return "dhsa budget=\(b) global=\(global) local=\(local) chunks \(chunkMin)-\(chunkMax) score=\(dhsaScore) dense-tail=\(denseTail)"
        }
    }
}
