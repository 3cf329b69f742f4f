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
    /// Bits per cached key/value element: 32 (float), 16 (IEEE half, as llama.cpp), 8 or 4
    /// (quantized, see eak_kvq); 0 = the model's default (Hyperparams.defaultKVBits).
    public var kvBits: Int = 0
    /// KV8/KV4 group: tokens per key record, channels per value record (0 = 32, or the largest even
    /// divisor of the head dimension below 32).
    public var kvGroup: Int = 0
    /// KV8/KV4: leading positions kept exact (attention sinks).
    public var kvSinks: Int = 4
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
    /// KV8/KV4 layout: group, exact leading positions, float ring slots, complete blocks per layer.
    public let kvGroup: Int, kvSinks: Int, kvRing: Int, kvBlocks: Int
    /// Byte offsets of the regions in the arena. The caches hold layerKVElements elements per layer.
    let kCache: Int, vCache: Int, layerKVElements: Int, kNew: Int, vNew: Int
    let x: Int, xb: Int, tmp: Int, q: Int, attnOut: Int, ffnG: Int, ffnU: Int
    let logits: Int, attnScratch: Int, act: Int, rotated: Int
    /// KV8/KV4 regions (all layers; per-layer strides below).
    let kvqKeys: Int, kvqValues: Int, kvSinkK: Int, kvSinkV: Int, kvRingK: Int, kvRingV: Int
    let kvqKeysLayer: Int, kvqValuesLayer: Int
    public let totalBytes: Int
    /// (name, bytes) of each region, for reports and budget errors.
    public let regions: [(String, Int)]

    /// KV cache bytes one decoded token reads per cached position (keys and values, all layers).
    public func kvBytesPerPosition(_ hp: Hyperparams) -> Double {
        let perElement: Double = kvBits <= 8
            ? Double(Int(eak_kvq_record_bytes(Int32(kvBits), Int32(kvGroup)))) / Double(kvGroup) : Double(kvBits / 8)
        return perElement * Double(2 * hp.kvDim * hp.nLayer)
    }

    public static func make(_ hp: Hyperparams, _ p: SessionParams) throws(EAError) -> SessionPlan {
        let nCtx = p.nCtx == 0 ? hp.nCtxTrain : p.nCtx
        if nCtx < 1 || nCtx > 1 << 24 { throw EAError(.invalidArgument, "n_ctx \(nCtx) out of range [1, 2^24]") }
        if p.nBatch < 1 || p.nBatch > 4096 { throw EAError(.invalidArgument, "n_batch \(p.nBatch) out of range [1, 4096]") }
        if p.nThreads < 0 || p.nThreads > 1024 { throw EAError(.invalidArgument, "n_threads \(p.nThreads) out of range [0, 1024]") }
        let nThreads = p.nThreads == 0 ? Int(eak_num_cores()) : p.nThreads
        let nBatch = min(p.nBatch, nCtx)
        let kvBits = p.kvBits == 0 ? hp.defaultKVBits : p.kvBits
        if ![4, 8, 16, 32].contains(kvBits) { throw EAError(.invalidArgument, "kv_bits \(p.kvBits): supported 4, 8, 16, 32 (0 = model default)") }
        let quant = kvBits <= 8
        // default group: 32, or the largest even divisor of the head dimension below it
        var group = p.kvGroup
        if group == 0 {
            group = 32
            while group > 2 && hp.headDim % group != 0 { group -= 2 }
        }
        if quant && (group < 2 || group > 256 || group % 2 != 0 || hp.headDim % group != 0) {
            throw EAError(.invalidArgument, "kv_group \(group) must be even, at most 256 and divide the head dimension \(hp.headDim)")
        }
        if p.kvSinks < 0 || p.kvSinks > 1 << 16 { throw EAError(.invalidArgument, "kv_sinks \(p.kvSinks) out of range [0, 65536]") }
        let sinks = quant ? min(p.kvSinks, nCtx) : 0
        let ring = quant ? (group + nBatch + group - 1) / group * group : 0
        let blocks = quant ? (nCtx - sinks) / group : 0

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
        let layerKV = quant ? 0 : checkedMul(nCtx, hp.kvDim)
        let kv = layerKV.flatMap { checkedMul($0, hp.nLayer) }
        let kCache = try region("k_cache", kv, elementBytes: kvBits / 8)
        let vCache = try region("v_cache", kv, elementBytes: kvBits / 8)
        // KV8/KV4: quantized records, exact sinks and the float ring, per layer
        let rb = Int(eak_kvq_record_bytes(Int32(kvBits), Int32(group)))
        let kqLayer = quant ? checkedMul(blocks, hp.kvDim).flatMap { checkedMul($0, rb) } : 0
        let vqLayer = quant ? checkedMul(blocks * group, hp.kvDim / group).flatMap { checkedMul($0, rb) } : 0
        let kvqKeys = try region("kv_quant_keys", kqLayer.flatMap { checkedMul($0, hp.nLayer) }, elementBytes: 1)
        let kvqValues = try region("kv_quant_values", vqLayer.flatMap { checkedMul($0, hp.nLayer) }, elementBytes: 1)
        let kvSinkK = try region("kv_sink_keys", sinks * hp.kvDim * hp.nLayer)
        let kvSinkV = try region("kv_sink_values", sinks * hp.kvDim * hp.nLayer)
        let kvRingK = try region("kv_ring_keys", ring * hp.kvDim * hp.nLayer)
        let kvRingV = try region("kv_ring_values", ring * hp.kvDim * hp.nLayer)
        // new keys/values in float before they are rounded or quantized into the cache
        let kNew = try region("k_new", kvBits == 32 ? 0 : nBatch * hp.kvDim)
        let vNew = try region("v_new", kvBits == 32 ? 0 : nBatch * hp.kvDim)
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
        let rot = try region("x_rotated", hp.hasRotation ? nBatch * maxCols : 0)
        return SessionPlan(nCtx: nCtx, nBatch: nBatch, nThreads: nThreads, kvBits: kvBits,
                           kvGroup: group, kvSinks: sinks, kvRing: ring, kvBlocks: blocks, kCache: kCache,
                           vCache: vCache, layerKVElements: layerKV ?? 0, kNew: kNew, vNew: vNew, x: x, xb: xb, tmp: tmp, q: q, attnOut: attnOut,
                           ffnG: ffnG, ffnU: ffnU, logits: logits, attnScratch: scratch, act: act, rotated: rot,
                           kvqKeys: kvqKeys, kvqValues: kvqValues, kvSinkK: kvSinkK, kvSinkV: kvSinkV,
                           kvRingK: kvRingK, kvRingV: kvRingV, kvqKeysLayer: kqLayer ?? 0, kvqValuesLayer: vqLayer ?? 0,
                           totalBytes: off, regions: regions)
    }
}
