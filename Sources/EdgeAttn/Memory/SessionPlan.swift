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
    /// Attention policy of every layer not overridden by `layerAttention`.
    public var attention: AttentionPolicy = .dense
    /// Per-layer policy overrides (index = layer); shorter than the layer count = the rest use `attention`.
    public var layerAttention: [AttentionPolicy] = []
    /// Λ layers: sink tokens and window (the latest tokens, the query included).
    public var sinks: Int = 4, window: Int = 1020
    public var positionMode: PositionMode = .streaming
    public var dhsa = DHSAParams()
    /// Caller memory for the session's arena (64-byte aligned, at least the planned bytes); the
    /// session then allocates no buffer of its own and never frees this one.
    public var workspace: UnsafeMutableRawPointer? = nil
    public var workspaceSize = 0
    /// When the plan exceeds the budget (memoryBudget, or the workspace size), shrink it instead of
    /// failing: KV bits, then n_batch, then the context (dense/DHSA) or the Λ window.
    public var autoFit = false
    public init() {}

    /// The byte limit a session must respect: the budget, the workspace, or the smaller of both.
    var byteLimit: Int? {
        var lim: Int? = memoryBudget == 0 ? nil : Int(clamping: memoryBudget)
        if workspace != nil { lim = min(lim ?? Int.max, workspaceSize) }
        return lim
    }
}

extension SessionPlan {
    /// auto_fit: the largest configuration within `limit`, in this order of sacrifice: KV cache bits
    /// (16/32 -> 8 -> 4), prefill batch (halved down to 1), then the context of dense and DHSA
    /// layers (a DHSA budget left at 0 follows it) or, for Λ-only sessions, the window (largest that
    /// fits, by bisection, not below 16). Returns the plan and the params it was made from.
    public static func fit(_ hp: Hyperparams, _ p0: SessionParams, limit: Int) throws(EAError) -> (SessionPlan, SessionParams) {
        var p = p0
        // Each candidate is planned and dropped inside `bytes`, which returns a plain number: in a
        // workspace (see eak_region_begin) its temporaries are then given back, so the search fits
        // in the bookkeeping reserve however many candidates it tries.
        @inline(never) func bytes(_ q: SessionParams) -> Int? {
            guard let plan = try? SessionPlan.make(hp, q) else { return nil }
            return plan.totalBytes
        }
        func fits(_ q: SessionParams) -> Bool {
            let mark = eak_region_mark()
            let b = bytes(q)
            eak_region_release(mark)
            return b.map { $0 <= limit } ?? false
        }
        func chosen(_ q: SessionParams) throws(EAError) -> (SessionPlan, SessionParams) { (try SessionPlan.make(hp, q), q) }
        if fits(p) { return try chosen(p) }
        let bits = p.kvBits == 0 ? hp.defaultKVBits : p.kvBits
        for b in [8, 4] where b < bits {
            p.kvBits = b
            if fits(p) { return try chosen(p) }
        }
        while p.nBatch > 1 {
            p.nBatch = max(1, p.nBatch / 2)
            if fits(p) { return try chosen(p) }
        }
        @inline(never) func shape(_ q: SessionParams) throws(EAError) -> (lambdaOnly: Bool, nCtx: Int, bytes: Int) {
            let full = try SessionPlan.make(hp, q)
            return (full.maxPositions > full.nCtx && full.policies.contains(.lambda), full.nCtx, full.totalBytes)
        }
        let mark = eak_region_mark()
        let full = try shape(p)
        eak_region_release(mark)
        let lambdaOnly = full.lambdaOnly
        var lo = 16, hi = lambdaOnly ? p.window : full.nCtx
        var best: SessionParams? = nil
        while lo <= hi {
            let mid = (lo + hi) / 2
            var q = p
            if lambdaOnly { q.window = mid } else { q.nCtx = mid }
            if fits(q) {
                best = q
                lo = mid + 1
            } else {
                hi = mid - 1
            }
        }
        if let b = best { return try chosen(b) }
        var smallest = p
        if lambdaOnly { smallest.window = 16 } else { smallest.nCtx = 16 }
        let need = bytes(smallest) ?? full.bytes
        throw EAError(.budget, "auto_fit: even KV \(p.kvBits == 0 ? bits : p.kvBits) bits, n_batch 1 and a \(lambdaOnly ? "window" : "context") of 16 need \(need) bytes; the limit is \(limit) bytes")
    }
}

/// Every buffer a session owns, laid out in one arena. The planner is the allocator's only input:
/// `ea_estimate_session_bytes` returns `totalBytes` of the same plan `Session` allocates, so the
/// estimate is exact by construction, and the per-token path only uses these regions.
public struct SessionPlan {
    /// Context of dense and DHSA layers; `maxPositions` is the stream limit (unbounded, i.e.
    /// Int32.max, when every layer is Λ).
    public let nCtx: Int
    public let maxPositions: Int
    public let nBatch: Int
    public let nThreads: Int
    public let kvBits: Int
    /// Policy of each layer, and the Λ geometry: sinks, window, ring slots after the sinks
    /// (window + n_batch - 1, so a prefill batch is stored before its first query reads the window).
    public let policies: [AttentionPolicy]
    public let lambdaSinks: Int, lambdaWindow: Int, lambdaRing: Int
    public let positionMode: PositionMode
    public let dhsa: DHSAParams
    /// KV8/KV4 layout: group, exact leading positions, float ring slots.
    public let kvGroup: Int, kvSinks: Int, kvRing: Int
    /// Per layer: float/half cache slots and element offset; KV8/KV4 block slots, whether they form a
    /// ring (Λ), and byte offsets of the key and value records.
    public let kvSlots: [Int]
    let kvOffset: [Int]
    public let kvqBlocks: [Int]
    let kvqBlockRing: [Bool], kvqKeyOffset: [Int], kvqValueOffset: [Int]
    /// Byte offsets of the regions in the arena.
    let kCache: Int, vCache: Int, kNew: Int, vNew: Int
    let x: Int, xb: Int, tmp: Int, q: Int, attnOut: Int, ffnG: Int, ffnU: Int
    let logits: Int, attnScratch: Int, act: Int, rotated: Int
    /// Two-plane (4-bit) matrices: their doubled 8-bit input blocks.
    let actPlanes: Int
    /// KV8/KV4 regions (all layers).
    let kvqKeys: Int, kvqValues: Int, kvSinkK: Int, kvSinkV: Int, kvRingK: Int, kvRingV: Int
    /// Λ: sink keys re-rotated per query ([n_batch][sinks][kv_dim]).
    let sinkShift: Int
    /// DHSA: per DHSA layer (dhsaSlot[l] >= 0) the chunk table (count, then starts), the post-RoPE key
    /// sum of each chunk and the pre-RoPE key sum of the open chunk; shared scratch for one
    /// selection: pre-RoPE keys of the batch, query summary, chunk scores, order, per-head key lists.
    public let dhsaSlot: [Int]
    public let dhsaMaxChunks: Int
    let dhsaTable: Int, dhsaSums: Int, dhsaOpen: Int, dhsaKPre: Int, dhsaQSum: Int
    let dhsaScores: Int, dhsaOrder: Int, dhsaLists: Int
    /// Layer kinds, recurrent state offsets (floats, per layer) and regions; series input scratch.
    public let kinds: [LayerKind]
    let rnnOffset: [Int]
    let rnnState: Int, aarenScratch: Int, seriesFeatures: Int, seriesLags: Int
    /// (byte offset, bytes) of the regions a state snapshot saves.
    public let persistent: [(Int, Int)]
    /// Where the bookkeeping reserve starts: the bytes of the arena proper (see tableReserveBytes).
    public let tablesOffset: Int
    /// Everything: the arena plus the bookkeeping reserve. This is the estimate.
    public let totalBytes: Int
    /// (name, bytes) of each region, for reports and budget errors.
    public let regions: [(String, Int)]

    public var unbounded: Bool { maxPositions > nCtx }

    /// Upper bound of what a session keeps besides its arena, plus the temporaries of planning
    /// it (auto_fit's search included): a fixed part for the objects and the region list, and a
    /// per-layer part for the per-layer tables. Measured use is well below it (Tests/c/test_alloc.c
    /// checks creation inside a workspace of exactly the estimate over a sweep of configurations).
    static func tableReserveBytes(_ hp: Hyperparams) -> Int {
        16384 + 512 * hp.nLayer
    }
    public func policy(_ l: Int) -> AttentionPolicy { policies[l] }

    /// KV cache bytes one decoded token reads per attended position (keys and values, all layers).
    public func kvBytesPerPosition(_ hp: Hyperparams) -> Double {
        let perElement: Double = kvBits <= 8
            ? Double(Int(eak_kvq_record_bytes(Int32(kvBits), Int32(kvGroup)))) / Double(kvGroup) : Double(kvBits / 8)
        return perElement * Double(2 * hp.kvDim * hp.nLayer)
    }

    /// Positions a query at `pos` reads in layer l (for bytes-per-token reports).
    public func attendedPositions(layer l: Int, pos: Int) -> Int {
        if kinds[l] != .softmax { return 0 }
        switch policies[l] {
        case .dense: return pos + 1
        case .lambda: return min(pos + 1, lambdaSinks + lambdaWindow)
        case .dhsa: return min(pos + 1, dhsaBlockBudget(allowed: pos + 1))
        }
    }

    /// Keys a DHSA query block that may see `allowed` keys reads (before the min with allowed).
    public func dhsaBlockBudget(allowed: Int) -> Int {
        if dhsa.prefixFraction <= 0 { return dhsaBudget }
        return min(dhsaBudget, max(dhsa.minKeys, Int((dhsa.prefixFraction * Float(allowed)).rounded(.up))))
    }

    public var dhsaBudget: Int { dhsa.budget == 0 ? max(1, nCtx / 2) : dhsa.budget }

    public static func make(_ hp: Hyperparams, _ p: SessionParams) throws(EAError) -> SessionPlan {
        if p.nBatch < 1 || p.nBatch > 4096 { throw EAError(.invalidArgument, "n_batch \(p.nBatch) out of range [1, 4096]") }
        if p.nThreads < 0 || p.nThreads > 1024 { throw EAError(.invalidArgument, "n_threads \(p.nThreads) out of range [0, 1024]") }
        if p.layerAttention.count > hp.nLayer {
            throw EAError(.invalidArgument, "\(p.layerAttention.count) per-layer attention policies for a model of \(hp.nLayer) layers")
        }
        var policies = [AttentionPolicy](repeating: p.attention, count: hp.nLayer)
        for (l, a) in p.layerAttention.enumerated() { policies[l] = a }
        // recurrent layers keep a constant state whatever the policy says; only softmax layers cache keys
        let kinds = hp.layerKinds.count == hp.nLayer ? hp.layerKinds : [LayerKind](repeating: .softmax, count: hp.nLayer)
        func softmax(_ l: Int) -> Bool { kinds[l] == .softmax }
        let nSoftmax = kinds.filter { $0 == .softmax }.count
        let anyLambda = (0..<hp.nLayer).contains { softmax($0) && policies[$0] == .lambda }
        // bounded: every softmax layer is Λ (true as well for purely recurrent stacks)
        let allLambda = !(0..<hp.nLayer).contains { softmax($0) && policies[$0] != .lambda }
        if anyLambda {
            if p.sinks < 0 || p.sinks > 1 << 16 { throw EAError(.invalidArgument, "attn_sinks \(p.sinks) out of range [0, 65536]") }
            if p.window < 1 || p.window > 1 << 24 { throw EAError(.invalidArgument, "attn_window \(p.window) out of range [1, 2^24]") }
        }
        // a Λ-only session has no context limit; n_ctx then only bounds nothing but the report
        let nCtx = p.nCtx == 0 ? (allLambda ? p.sinks + p.window : hp.nCtxTrain) : p.nCtx
        if nCtx < 1 || nCtx > 1 << 24 { throw EAError(.invalidArgument, "n_ctx \(nCtx) out of range [1, 2^24]") }
        // recurrent-only stacks use no positions at all: a stream never ends; Λ needs int32 RoPE positions
        let maxPositions = nSoftmax == 0 ? Int.max : (allLambda ? Int(Int32.max) : nCtx)
        let nThreads = p.nThreads == 0 ? Int(eak_num_cores()) : p.nThreads
        let nBatch = allLambda ? p.nBatch : min(p.nBatch, nCtx)
        let kvBits = p.kvBits == 0 ? hp.defaultKVBits : p.kvBits
        if ![4, 8, 16, 32].contains(kvBits) { throw EAError(.invalidArgument, "kv_bits \(p.kvBits): supported 4, 8, 16, 32 (0 = model default)") }
        let quant = kvBits <= 8
        var dh = p.dhsa
        if (0..<hp.nLayer).contains(where: { softmax($0) && policies[$0] == .dhsa }) {
            if dh.budget < 0 || dh.global < 0 || dh.local < 0 {
                throw EAError(.invalidArgument, "DHSA budget, global and local must not be negative")
            }
            if dh.minChunk < 1 || dh.maxChunk < dh.minChunk || dh.maxChunk > 1 << 16 {
                throw EAError(.invalidArgument, "DHSA chunk lengths min \(dh.minChunk), max \(dh.maxChunk): need 1 <= min <= max <= 65536")
            }
            if dh.queryBlock < 1 || dh.queryBlock > 4096 { throw EAError(.invalidArgument, "DHSA query block \(dh.queryBlock) out of range [1, 4096]") }
            if !(dh.threshold >= -1 && dh.threshold <= 1) { throw EAError(.invalidArgument, "DHSA threshold \(dh.threshold) outside [-1, 1]") }
            if !(dh.prefixFraction >= 0 && dh.prefixFraction <= 1) {
                throw EAError(.invalidArgument, "DHSA budget fraction \(dh.prefixFraction) outside [0, 1]")
            }
            if dh.denseTail < 0 || dh.denseTail > 1 << 20 { throw EAError(.invalidArgument, "DHSA dense tail \(dh.denseTail) out of range [0, 1048576]") }
            let floor = dh.minKeys
            // a fraction alone is capped by what the longest prefix needs
            let budget = dh.budget != 0 ? dh.budget
                : dh.prefixFraction > 0 ? max(floor, Int((dh.prefixFraction * Float(nCtx)).rounded(.up)))
                : max(1, nCtx / 2)
            if budget < floor && budget < nCtx {
                throw EAError(.invalidArgument, "DHSA budget \(budget) tokens is below global \(dh.global) + local \(dh.local) + query block \(dh.queryBlock) = \(floor)")
            }
            dh.budget = min(budget, nCtx)  // no block sees more than n_ctx keys: the lists' stride
        }
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
        let S = anyLambda ? p.sinks : 0, W = anyLambda ? p.window : 0
        let lambdaRing = anyLambda ? W + nBatch - 1 : 0
        // KV8/KV4 keeps the Λ sinks exact too, so sinks never pass through 4 bits
        let sinks = quant && nSoftmax > 0 ? min(max(p.kvSinks, S), allLambda ? max(p.kvSinks, S) : nCtx) : 0
        let ring = quant && nSoftmax > 0 ? (group + nBatch + group - 1) / group * group : 0

        // per-layer geometry
        // (capacities reserved up front: no regrowth, so planning inside a workspace wastes nothing)
        var kvSlots = [Int](), kvOffset = [Int](), qBlocks = [Int](), qRing = [Bool](), kqOff = [Int](), vqOff = [Int]()
        kvSlots.reserveCapacity(hp.nLayer); kvOffset.reserveCapacity(hp.nLayer); qBlocks.reserveCapacity(hp.nLayer)
        qRing.reserveCapacity(hp.nLayer); kqOff.reserveCapacity(hp.nLayer); vqOff.reserveCapacity(hp.nLayer)
        let rb = Int(eak_kvq_record_bytes(Int32(kvBits), Int32(group)))
        var slotsTotal = 0, kqTotal = 0, vqTotal = 0
        for l in 0..<hp.nLayer {
            let lam = policies[l] == .lambda
            let slots = quant || !softmax(l) ? 0 : (lam ? (allLambda ? S + lambdaRing : min(S + lambdaRing, nCtx)) : nCtx)
            kvSlots.append(slots)
            kvOffset.append(slotsTotal * hp.kvDim)
            slotsTotal += slots
            // Λ on KV8/KV4: a ring of blocks covering the window, the batch and one partial block
            let ringBlocks = (W + nBatch - 1 + group - 1) / group + 1
            let full = quant ? max(0, nCtx - sinks) / group : 0
            let blocks = quant && softmax(l) ? (lam ? (allLambda ? ringBlocks : min(ringBlocks, full)) : full) : 0
            qBlocks.append(blocks)
            qRing.append(quant && lam && (allLambda || ringBlocks < full))
            kqOff.append(kqTotal)
            vqOff.append(vqTotal)
            kqTotal += blocks * hp.kvDim * rb
            vqTotal += blocks * group * (hp.kvDim / group) * rb
            if slotsTotal > 1 << 34 || kqTotal > 1 << 40 { throw EAError(.budget, "session KV cache size overflows") }
        }

        var off = 0
        var regions: [(String, Int)] = []
        regions.reserveCapacity(48)
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
        let kv = checkedMul(slotsTotal, hp.kvDim)
        let kCache = try region("k_cache", kv, elementBytes: kvBits / 8)
        let vCache = try region("v_cache", kv, elementBytes: kvBits / 8)
        // KV8/KV4: quantized records, exact sinks and the float ring, per layer
        let kvqKeys = try region("kv_quant_keys", kqTotal, elementBytes: 1)
        let kvqValues = try region("kv_quant_values", vqTotal, elementBytes: 1)
        let kvSinkK = try region("kv_sink_keys", sinks * hp.kvDim * hp.nLayer)
        let kvSinkV = try region("kv_sink_values", sinks * hp.kvDim * hp.nLayer)
        let kvRingK = try region("kv_ring_keys", ring * hp.kvDim * hp.nLayer)
        let kvRingV = try region("kv_ring_values", ring * hp.kvDim * hp.nLayer)
        // new keys/values in float before they are rounded or quantized into the cache
        let kNew = try region("k_new", nBatch * hp.kvDim)
        let vNew = try region("v_new", nBatch * hp.kvDim)
        let x = try region("x", nBatch * hp.nEmbd)
        let xb = try region("xb", nBatch * hp.nEmbd)
        let tmp = try region("tmp", nBatch * hp.nEmbd)
        let q = try region("q", nBatch * hp.qDim)
        let attnOut = try region("attn_out", nBatch * hp.qDim)
        let ffnG = try region("ffn_gate", nBatch * hp.nFF)
        let ffnU = try region("ffn_up", nBatch * hp.nFF)
        let logits = try region("logits", checkedMul(nBatch, hp.nVocab))
        // scores of one query: the most keys any layer's policy lets a query read
        var maxKeys = 0
        for (l, a) in policies.enumerated() where softmax(l) {
            switch a {
            case .dense: maxKeys = max(maxKeys, nCtx)
            case .lambda: maxKeys = max(maxKeys, allLambda ? S + W : min(S + W, nCtx))
            case .dhsa: maxKeys = max(maxKeys, min(dh.budget, nCtx))
            }
        }
        // KV8/KV4 attention scores the query heads of a kv head together, a segment of keys at a
        // time, and keeps each segment's partial sums until they are merged
        let scratchFloats = quant
            ? Int(eak_kvq_scratch_floats(Int32(hp.nHead), Int32(hp.nHeadKV), Int32(hp.headDim), Int32(sinks),
                                         Int32(clamping: maxKeys), Int32(nThreads)))
            : checkedMul(nThreads, maxKeys)
        let scratch = try region("attn_scores", scratchFloats)
        // 8-bit activation blocks for the widest matrix input (in floats' units: bytes / 4)
        let maxCols = max(hp.nEmbd, max(hp.qDim, hp.nFF))
        let act = try region("act_q8", Int(eak_act_bytes(Int32(nBatch), Int32(maxCols))) / 4)
        let rot = try region("x_rotated", hp.hasRotation ? nBatch * maxCols : 0)
        let actPlanes = try region("act_q8_two_planes",
                                   hp.planeCols > 0 ? Int(eak_act_bytes(Int32(nBatch), Int32(2 * hp.planeCols))) / 4 : 0)
        let sinkShift = try region("lambda_sink_keys", anyLambda ? nBatch * S * hp.kvDim : 0)
        var dhsaSlot = [Int](repeating: -1, count: hp.nLayer), nD = 0
        for l in 0..<hp.nLayer where softmax(l) && policies[l] == .dhsa { dhsaSlot[l] = nD; nD += 1 }
        let maxChunks = nD > 0 ? nCtx / dh.minChunk + 2 : 0
        let dTable = try region("dhsa_chunk_table", nD * (maxChunks + 1))
        let dSums = try region("dhsa_chunk_key_sums", checkedMul(nD * maxChunks, hp.kvDim))
        let dOpen = try region("dhsa_open_chunk_sum", nD * hp.kvDim)
        let dKPre = try region("dhsa_keys_before_rope", nD > 0 ? nBatch * hp.kvDim : 0)
        let dQSum = try region("dhsa_query_summary", nD > 0 ? hp.qDim : 0)
        let dScores = try region("dhsa_chunk_scores", maxChunks)
        let dOrder = try region("dhsa_chunk_order", maxChunks)
        let dLists = try region("dhsa_key_lists", nD > 0 ? hp.nHeadKV * min(dh.budget, nCtx) : 0)
        // recurrent layers: Aaren (m, u, w) per head, linear attention a head_dim^2 matrix per head
        var rnnOffset = [Int](), rnnFloats = 0
        rnnOffset.reserveCapacity(hp.nLayer)
        for l in 0..<hp.nLayer {
            rnnOffset.append(rnnFloats)
            switch kinds[l] {
            case .aaren: rnnFloats += hp.nHead * (hp.headDim + 2)
            case .linear: rnnFloats += hp.nHead * hp.headDim * hp.headDim
            case .softmax: break
            }
        }
        let rnnState = try region("recurrent_state", rnnFloats)
        let aarenScratch = try region("aaren_scan_blocks", kinds.contains(.aaren)
            ? Int(eak_aaren_scratch_floats(Int32(nBatch), Int32(hp.nHead), Int32(hp.headDim))) : 0)
        let lags = hp.series?.lags ?? 0
        let seriesFeatures = try region("series_features", nBatch * lags)
        let seriesLags = try region("series_lags", lags)
        // last: the reserve for the session's own bookkeeping (this plan's tables, the session and
        // handle objects). With a workspace they are carved from here (top down), so a session
        // created in caller memory calls no allocator; without one they live on the heap and the
        // arena stops before this region. Either way the estimate covers all of a session's memory.
        let tables = try region("session_tables", SessionPlan.tableReserveBytes(hp), elementBytes: 1)
        // what a state snapshot holds: every cache and recurrent region (scratch excluded)
        let keep: Set<String> = ["k_cache", "v_cache", "kv_quant_keys", "kv_quant_values", "kv_sink_keys",
                                 "kv_sink_values", "kv_ring_keys", "kv_ring_values", "dhsa_chunk_table",
                                 "dhsa_chunk_key_sums", "dhsa_open_chunk_sum", "recurrent_state", "series_lags"]
        var persistent: [(Int, Int)] = [], at = 0
        persistent.reserveCapacity(regions.count)
        for (name, bytes) in regions {
            if keep.contains(name) && bytes > 0 { persistent.append((at, bytes)) }
            at = alignUp(at + bytes, 64)
        }
        return SessionPlan(nCtx: nCtx, maxPositions: maxPositions, nBatch: nBatch, nThreads: nThreads, kvBits: kvBits,
                           policies: policies, lambdaSinks: S, lambdaWindow: W, lambdaRing: lambdaRing,
                           positionMode: p.positionMode, dhsa: dh,
                           kvGroup: group, kvSinks: sinks, kvRing: ring, kvSlots: kvSlots, kvOffset: kvOffset,
                           kvqBlocks: qBlocks, kvqBlockRing: qRing, kvqKeyOffset: kqOff, kvqValueOffset: vqOff,
                           kCache: kCache, vCache: vCache, kNew: kNew, vNew: vNew, x: x, xb: xb, tmp: tmp, q: q,
                           attnOut: attnOut, ffnG: ffnG, ffnU: ffnU, logits: logits, attnScratch: scratch, act: act,
                           rotated: rot, actPlanes: actPlanes, kvqKeys: kvqKeys, kvqValues: kvqValues, kvSinkK: kvSinkK, kvSinkV: kvSinkV,
                           kvRingK: kvRingK, kvRingV: kvRingV, sinkShift: sinkShift,
                           dhsaSlot: dhsaSlot, dhsaMaxChunks: maxChunks, dhsaTable: dTable, dhsaSums: dSums,
                           dhsaOpen: dOpen, dhsaKPre: dKPre, dhsaQSum: dQSum, dhsaScores: dScores,
                           dhsaOrder: dOrder, dhsaLists: dLists, kinds: kinds, rnnOffset: rnnOffset,
                           rnnState: rnnState, aarenScratch: aarenScratch, seriesFeatures: seriesFeatures,
                           seriesLags: seriesLags, persistent: persistent, tablesOffset: tables, totalBytes: off,
                           regions: regions)
    }
}
