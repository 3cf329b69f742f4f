import EAKernels

public struct SessionParams {
    /// Tokens the KV cache holds; 0 = the model's training context.
    public var nCtx: Int = 0
    /// Tokens evaluated together in prefill.
    public var nBatch: Int = 32
    /// Threads for this session's kernels; 0 = all cores.
    public var nThreads: Int = 0
    /// Bytes the session may allocate; 0 = no limit.
    public var memoryBudget: UInt64 = 0
    /// Bits per cached key/value element: 16 (IEEE half, the default, as llama.cpp) or 32 (float).
    public var kvBits: Int = 16
    public init() {}
}

/// Every buffer a session owns, laid out in one arena. The planner is the allocator's only input:
/// `ea_estimate_session_bytes` returns `totalBytes` of the same plan `Session` allocates, so the
/// estimate is exact by construction, and the per-token path only uses these regions.
public struct SessionPlan {
    public let nCtx: Int
    public let nBatch: Int
    public let nThreads: Int
    public let kvBits: Int
    /// Byte offsets of the regions in the arena. The caches hold layerKVElements elements per layer.
    let kCache: Int, vCache: Int, layerKVElements: Int, kNew: Int, vNew: Int
    let x: Int, xb: Int, tmp: Int, q: Int, attnOut: Int, ffnG: Int, ffnU: Int
    let logits: Int, attnScratch: Int, act: Int
    public let totalBytes: Int
    /// (name, bytes) of each region, for reports and budget errors.
    public let regions: [(String, Int)]

    public static func make(_ hp: Hyperparams, _ p: SessionParams) throws(EAError) -> SessionPlan {
        let nCtx = p.nCtx == 0 ? hp.nCtxTrain : p.nCtx
        if nCtx < 1 || nCtx > 1 << 24 { throw EAError(.invalidArgument, "n_ctx \(nCtx) out of range [1, 2^24]") }
        if p.nBatch < 1 || p.nBatch > 4096 { throw EAError(.invalidArgument, "n_batch \(p.nBatch) out of range [1, 4096]") }
        if p.nThreads < 0 || p.nThreads > 1024 { throw EAError(.invalidArgument, "n_threads \(p.nThreads) out of range [0, 1024]") }
        let nThreads = p.nThreads == 0 ? Int(eak_num_cores()) : p.nThreads
        let nBatch = min(p.nBatch, nCtx)
        if p.kvBits != 16 && p.kvBits != 32 { throw EAError(.invalidArgument, "kv_bits \(p.kvBits): supported 16, 32") }

        var off = 0
        var regions: [(String, Int)] = []
        func region(_ name: String, _ floats: Int?, elementBytes: Int = 4) throws(EAError) -> Int {
            guard let f = floats, let bytes = checkedMul(f, elementBytes), bytes < Int.max / 4 else {
                throw EAError(.budget, "session buffer '\(name)' size overflows")
            }
            let start = off
            off = alignUp(off + bytes, 64)
            if off > Int.max / 4 { throw EAError(.budget, "session plan size overflows") }
            regions.append((name, bytes))
            return start
        }
        let layerKV = checkedMul(nCtx, hp.kvDim)
        let kv = layerKV.flatMap { checkedMul($0, hp.nLayer) }
        let kCache = try region("k_cache", kv, elementBytes: p.kvBits / 8)
        let vCache = try region("v_cache", kv, elementBytes: p.kvBits / 8)
        // new keys/values in float before they are rounded into a 16-bit cache
        let kNew = try region("k_new", p.kvBits == 16 ? nBatch * hp.kvDim : 0)
        let vNew = try region("v_new", p.kvBits == 16 ? nBatch * hp.kvDim : 0)
        let x = try region("x", nBatch * hp.nEmbd)
        let xb = try region("xb", nBatch * hp.nEmbd)
        let tmp = try region("tmp", nBatch * hp.nEmbd)
        let q = try region("q", nBatch * hp.qDim)
        let attnOut = try region("attn_out", nBatch * hp.qDim)
        let ffnG = try region("ffn_gate", nBatch * hp.nFF)
        let ffnU = try region("ffn_up", nBatch * hp.nFF)
        let logits = try region("logits", checkedMul(nBatch, hp.nVocab))
        let scratch = try region("attn_scores", checkedMul(nThreads, nCtx))
        // 8-bit activation blocks for the widest matrix input (in floats' units: bytes / 4)
        let maxCols = max(hp.nEmbd, max(hp.qDim, hp.nFF))
        let act = try region("act_q8", Int(eak_act_bytes(Int32(nBatch), Int32(maxCols))) / 4)
        return SessionPlan(nCtx: nCtx, nBatch: nBatch, nThreads: nThreads, kvBits: p.kvBits, kCache: kCache,
                           vCache: vCache, layerKVElements: layerKV ?? 0, kNew: kNew, vNew: vNew, x: x, xb: xb, tmp: tmp, q: q, attnOut: attnOut,
                           ffnG: ffnG, ffnU: ffnU, logits: logits, attnScratch: scratch, act: act,
                           totalBytes: off, regions: regions)
    }
}
