import EAKernels

/// Dynamic hierarchical sparse attention (docs/algorithms.md section 3), for prefill and decode.
///
/// Chunking (training-free, causal, incremental, so prefill and decode build the same chunks): token
/// p closes the open chunk and starts a new one when the open chunk already has `maxChunk` keys, or
/// has at least `minChunk` keys and the cosine similarity between p's key and the open chunk's mean
/// key (before RoPE, all kv heads concatenated: RoPE would make neighbours look alike by position
/// alone) is below `threshold`. Boundaries therefore strictly increase from 0.
///
/// Chunk representation: k_c = sqrt(n_c) * mean(k_j, j in c) = sum_c / sqrt(n_c), per kv head, from
/// running per-chunk sums of the cached (post-RoPE) keys: a segmented prefix sum, kept
/// incrementally so decode never rescans the cache.
///
/// Selection, per query block [b0, b1] (prefill: blocks of `queryBlock` positions aligned to
/// multiples of it; decode: the token) and per kv head: the first `global` keys, the local range
/// [b0 - local, b1] (the block itself included), then the chunks between them in descending order of
/// score, each chunk upsampled to its tokens, until the budget is full (the last chunk taken
/// contributes its latest tokens). So exactly min(budget, b1 + 1) keys, ascending and unique; a
/// budget >= b1 + 1 is dense attention. A chunk's score for a kv head is the largest over its query
/// heads of (that head's summed block queries) . k_c (headMax: a chunk one retrieval head needs is
/// not outvoted by the others), or (all those queries summed) . k_c. The budget is fixed, or a
/// fraction of b1 + 1 (DHSAParams.prefixFraction); the blocks holding the last denseTail positions
/// of a prompt are dense.
extension Session {
    private func dhsaTable(_ slot: Int) -> UnsafeMutablePointer<Int32> {
        (arena.raw + plan.dhsaTable).assumingMemoryBound(to: Int32.self) + slot * (plan.dhsaMaxChunks + 1)
    }
    private func dhsaSums(_ slot: Int) -> UnsafeMutablePointer<Float> {
        arena.floats(at: plan.dhsaSums) + slot * plan.dhsaMaxChunks * model.hp.kvDim
    }
    private func dhsaOpen(_ slot: Int) -> UnsafeMutablePointer<Float> {
        arena.floats(at: plan.dhsaOpen) + slot * model.hp.kvDim
    }

    func dhsaReset() {
        for l in 0..<model.hp.nLayer where plan.dhsaSlot[l] >= 0 { dhsaTable(plan.dhsaSlot[l])[0] = 0 }
    }

    /// Chunk boundaries (starts) of layer l so far: for tests and reports.
    public func dhsaChunkStarts(layer l: Int) -> [Int] {
        let s = plan.dhsaSlot[l]
        if s < 0 { return [] }
        let t = dhsaTable(s)
        return (0..<Int(t[0])).map { Int(t[1 + $0]) }
    }

    /// Adds token p (pre-RoPE key kPre, cached key kRot) to layer slot's chunking.
    func dhsaAppend(slot: Int, p: Int, kPre: UnsafePointer<Float>, kRot: UnsafePointer<Float>) {
        let kvd = model.hp.kvDim, d = plan.dhsa
        let tbl = dhsaTable(slot), open = dhsaOpen(slot)
        let n = Int(tbl[0])
        var start = n == 0
        if !start {
            let len = p - Int(tbl[n])  // keys already in the open chunk (chunk n-1 starts at tbl[n])
            if len >= d.maxChunk {
                start = true
            } else if len >= d.minChunk {
                let dot = eak_dot_f32(kPre, open, Int32(kvd))
                let nk = eak_dot_f32(kPre, kPre, Int32(kvd)), no = eak_dot_f32(open, open, Int32(kvd))
                let den = (nk * no).squareRoot()
                if den > 0 && dot / den < d.threshold { start = true }
            }
        }
        var c = n - 1
        if start {
            c = n
            tbl[1 + n] = Int32(p)
            tbl[0] = Int32(n + 1)
            open.update(repeating: 0, count: kvd)
            dhsaSums(slot).advanced(by: c * kvd).update(repeating: 0, count: kvd)
        }
        let sum = dhsaSums(slot) + c * kvd
        for i in 0..<kvd {
            open[i] += kPre[i]
            sum[i] += kRot[i]
        }
    }

    /// The keys of query block [b0, b1] (queries q: [b1 - b0 + 1][qDim]) in layer slot, written to the
    /// key-list region; returns the count, or -1 when the budget covers every allowed key (dense).
    func dhsaSelect(slot: Int, b0: Int, b1: Int, q: UnsafePointer<Float>) -> Int {
        let hp = model.hp, d = plan.dhsa
        let allowed = b1 + 1, budget = plan.dhsaBlockBudget(allowed: allowed)
        if budget >= allowed || b1 >= dhsaDenseFrom { return -1 }
        let g = min(d.global, allowed)
        let lStart = max(g, b0 - d.local)
        let room = budget - g - (b1 - lStart + 1)  // keys left for chunks between global and local
        let tbl = dhsaTable(slot), nC = Int(tbl[0])
        let starts = tbl + 1
        @inline(__always) func end(_ c: Int) -> Int { c + 1 < nC ? Int(starts[c + 1]) : b1 + 1 }
        // chunks overlapping the middle [g, lStart): c0 holds g, c1 holds lStart - 1
        var c0 = 0
        while c0 + 1 < nC && Int(starts[c0 + 1]) <= g { c0 += 1 }
        var c1 = c0
        while c1 + 1 < nC && Int(starts[c1 + 1]) < lStart { c1 += 1 }
        let m = c1 - c0 + 1
        let qs = arena.floats(at: plan.dhsaQSum)
        let scores = arena.floats(at: plan.dhsaScores)
        let order = (arena.raw + plan.dhsaOrder).assumingMemoryBound(to: Int32.self)
        let lists = (arena.raw + plan.dhsaLists).assumingMemoryBound(to: Int32.self)
        let hd = hp.headDim, group = hp.nHead / hp.nHeadKV, nq = b1 - b0 + 1
        let sums = dhsaSums(slot)
        var count = 0
        for h in 0..<hp.nHeadKV {
            // the block's query summary for this kv head: per query head (head max), or summed
            let nSum = d.headMax ? group : 1
            qs.update(repeating: 0, count: nSum * hd)
            for t in 0..<nq {
                for j in 0..<group {
                    let qr = q + t * hp.qDim + (h * group + j) * hd, qj = qs + (d.headMax ? j * hd : 0)
                    for i in 0..<hd { qj[i] += qr[i] }
                }
            }
            for k in 0..<m {
                let c = c0 + k
                let n = Float(end(c) - Int(starts[c])), kc = sums + c * hp.kvDim + h * hd
                var best = eak_dot_f32(qs, kc, Int32(hd))
                for j in 1..<nSum { best = max(best, eak_dot_f32(qs + j * hd, kc, Int32(hd))) }
                scores[k] = best / n.squareRoot()
            }
            eak_top_k(scores, Int32(m), Int32(m), order)
            // tokens each chunk contributes, reusing scores[] (small integers are exact in float)
            for k in 0..<m { scores[k] = 0 }
            var left = room
            for r in 0..<m where left > 0 {
                let k = Int(order[r]), c = c0 + k
                let ov = min(end(c), lStart) - max(Int(starts[c]), g)
                let take = min(ov, left)
                scores[k] = Float(take)
                left -= take
            }
            let list = lists + h * plan.dhsaBudget
            var n = 0
            for p in 0..<g { list[n] = Int32(p); n += 1 }
            for k in 0..<m where scores[k] > 0 {
                let oe = min(end(c0 + k), lStart)
                for p in (oe - Int(scores[k]))..<oe { list[n] = Int32(p); n += 1 }
            }
            for p in lStart...b1 { list[n] = Int32(p); n += 1 }
            count = n
        }
        return count
    }

    /// The key lists written by the last dhsaSelect, for tests: [kv head][count].
    public func dhsaLastLists(count: Int) -> [[Int32]] {
        let lists = (arena.raw + plan.dhsaLists).assumingMemoryBound(to: Int32.self)
        return (0..<model.hp.nHeadKV).map { h in Array(UnsafeBufferPointer(start: lists + h * plan.dhsaBudget, count: count)) }
    }
}
