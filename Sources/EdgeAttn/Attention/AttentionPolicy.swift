/// Which keys each query of a layer attends to (docs/algorithms.md sections 2-3).
public enum AttentionPolicy: Int, Sendable {
    /// Every earlier key (or the model's own sliding window on local layers).
    case dense = 0
    /// Λ-shaped: `sinks` first tokens + the latest `window` tokens, in a ring of bounded size.
    case lambda = 1
    /// Dynamic hierarchical sparse attention: chunked keys, a per-query-block budget of tokens.
    case dhsa = 2

    public static func parse(_ s: String) -> AttentionPolicy? {
        switch s {
        case "dense": return .dense
        case "lambda", "λ", "Λ": return .lambda
        case "dhsa": return .dhsa
        default: return nil
        }
    }

    public var name: String { self == .dense ? "dense" : self == .lambda ? "lambda" : "dhsa" }
}

/// How a Λ layer places its sink keys relative to the query once the stream outgrows the window.
public enum PositionMode: Int, Sendable {
    /// StreamingLLM: positions are cache slots, so a sink is at distance (its slot's) <= S + W - 1.
    case streaming = 0
    /// LM-Infinite: true positions in the window; sink distance capped at the training context.
    case lmInfinite = 1
}

/// DHSA settings (docs/algorithms.md section 3); docs/attention.md documents the chunking rule.
public struct DHSAParams: Sendable {
    /// Keys each query block may attend (including `global` and `local`); 0 = half the context.
    public var budget = 0
    /// The first keys every query keeps (attention sinks).
    public var global = 64
    /// Recent keys every query keeps before its block (the block itself is always kept).
    public var local = 128
    /// Chunk lengths: a boundary is never placed before `minChunk` keys, always at `maxChunk`.
    public var minChunk = 16, maxChunk = 64
    /// Between those, a key starts a new chunk when its cosine similarity to the mean of the open
    /// chunk's keys (before RoPE, all kv heads) falls below this.
    public var threshold: Float = 0.8
    /// Queries that share one selection in prefill (decode selects per token).
    public var queryBlock = 32
    /// > 0: each query block reads this fraction of the keys it may see (its causal prefix),
    /// at least global + local + queryBlock and at most `budget`; 0: every block reads `budget`.
    public var prefixFraction: Float = 0
    /// The last `denseTail` positions of a multi-token evaluation (a prompt's end: the
    /// instruction) attend densely, as the authors keep the last instruction tokens dense;
    /// single-token decode stays sparse. The answer's first token is predicted there, so it
    /// sees every key (measured: a needle at 4K found 5/5 with 64, 4/5 without).
    public var denseTail = 64
    /// How the query heads that share a kv head score a chunk: the largest of their scores
    /// (a chunk one head needs is kept) or the score of their summed query.
    public var headMax = true
    /// The fewest keys a sparse block reads: the first keys, the local window and the block.
    public var minKeys: Int { global + local + queryBlock }
    public init() {}
}
