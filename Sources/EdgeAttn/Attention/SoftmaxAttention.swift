import EAKernels

/// Softmax attention of one layer (dense, Λ-shaped or DHSA, per the session plan) over the KV cache
/// in its three formats: float, half, and the 8/4-bit records of kvquant (docs/algorithms.md
/// sections 1-3). The policies' own bookkeeping lives beside this file (LambdaWindow.swift,
/// DHSA.swift); this is where a layer's queries, keys and values meet them.
extension Session {
    /// Layer l over the n normed rows xb at positions pos0..<pos0+n: computes q, k, v, stores the
    /// new keys and values at their cache slots, and writes the attention output (n x q_dim) to out.
    func softmaxAttention(layer l: Int, _ w: LayerWeights, n: Int, pos0: Int, xb: UnsafeMutablePointer<Float>,
                          out att: UnsafeMutablePointer<Float>) {
        let hp = model.hp, th = threads, act = matmulScratch
        let q = arena.floats(at: plan.q), scratch = arena.floats(at: plan.attnScratch)
        let neox: Int32 = hp.ropeNeox ? 1 : 0
        let half = plan.kvBits == 16, quant = plan.kvBits <= 8
        // keys/values are computed in float into k_new/v_new, then stored (copied, rounded to
        // half or quantized) at their cache slots
        let kNew = arena.floats(at: plan.kNew), vNew = arena.floats(at: plan.vNew)
        WeightMatrix.applyShared(w.wq!, w.wk, w.wv, xb, nTok: n, q, kNew, vNew, threads: th, act: act)
        if let qn = w.qNorm, let kn = w.kNorm {  // per-head norms (Gemma)
            eak_rmsnorm(q, q, qn, Int32(hp.headDim), Int32(n * hp.nHead), hp.rmsEps, 0, Int32(th))
            eak_rmsnorm(kNew, kNew, kn, Int32(hp.headDim), Int32(n * hp.nHeadKV), hp.rmsEps, 0, Int32(th))
        }
        // DHSA chunks on keys before RoPE
        let dslot = w.window == 0 ? plan.dhsaSlot[l] : -1  // sliding-window layers keep their window
        let kPre = arena.floats(at: plan.dhsaKPre)
        if dslot >= 0 { kPre.update(from: kNew, count: n * hp.kvDim) }
        eak_rope_rows(q, Int32(hp.nHead), kNew, Int32(hp.nHeadKV), Int32(hp.headDim), Int32(n), Int32(pos0),
                      w.ropeBase, hp.ropeFreqScale, neox, Int32(th))
        var span = eak_span()
        let lambda = plan.policies[l] == .lambda
        if lambda {
            span.n_sink = Int32(plan.lambdaSinks)
            span.window = Int32(plan.lambdaWindow)
            span.ring = Int32(plan.lambdaRing)
        } else if w.window > 0 {
            span.window = Int32(w.window)
        }
        // store the new keys/values, then attend: the whole batch at once, or DHSA query blocks
        var cq = quantCache(layer: l)
        let eb = plan.kvBits / 8, kvd = hp.kvDim
        let kc = arena.raw + plan.kCache + plan.kvOffset[l] * eb, vc = arena.raw + plan.vCache + plan.kvOffset[l] * eb
        if quant {
            eak_kvq_append(&cq, kNew, vNew, Int32(pos0), Int32(n), Int32(th))
        } else {
            for i in 0..<n {
                let slot = lambda ? lambdaSlot(pos0 + i) : pos0 + i
                if half {
                    eak_f32_to_f16_row(kNew + i * kvd, kc.assumingMemoryBound(to: UInt16.self) + slot * kvd, Int64(kvd))
                    eak_f32_to_f16_row(vNew + i * kvd, vc.assumingMemoryBound(to: UInt16.self) + slot * kvd, Int64(kvd))
                } else {
                    (kc.assumingMemoryBound(to: Float.self) + slot * kvd).update(from: kNew + i * kvd, count: kvd)
                    (vc.assumingMemoryBound(to: Float.self) + slot * kvd).update(from: vNew + i * kvd, count: kvd)
                }
            }
        }
        if lambda { span.sink_k = shiftedSinks(layer: l, n: n, pos0: pos0, ropeBase: w.ropeBase) }
        func attend(_ t0: Int, _ nt: Int, _ sp: inout eak_span) {
            let qp = q + t0 * hp.qDim, op = att + t0 * hp.qDim, p0 = Int32(pos0 + t0)
            if quant {
                eak_kvq_attention(&cq, qp, op, Int32(nt), p0, Int32(hp.nHead), attnScale, &sp, scratch, Int32(th))
            } else if half {
                eak_attention_f16(qp, kc.assumingMemoryBound(to: UInt16.self), vc.assumingMemoryBound(to: UInt16.self),
                                  op, Int32(nt), p0, Int32(hp.nHead), Int32(hp.nHeadKV), Int32(hp.headDim),
                                  attnScale, &sp, scratch, Int32(th))
            } else {
                eak_attention(qp, kc.assumingMemoryBound(to: Float.self), vc.assumingMemoryBound(to: Float.self),
                              op, Int32(nt), p0, Int32(hp.nHead), Int32(hp.nHeadKV), Int32(hp.headDim),
                              attnScale, &sp, scratch, Int32(th))
            }
        }
        if dslot >= 0 {
            let qb = plan.dhsa.queryBlock
            var t0 = 0
            while t0 < n {
                let b0 = pos0 + t0, b1 = min(pos0 + n, (b0 / qb + 1) * qb) - 1, nt = b1 - b0 + 1
                for i in t0..<(t0 + nt) {
                    dhsaAppend(slot: dslot, p: pos0 + i, kPre: kPre + i * kvd, kRot: kNew + i * kvd)
                }
                let count = dhsaSelect(slot: dslot, b0: b0, b1: b1, q: q + t0 * hp.qDim)
                if let so = selectionObserver { so(l, b0, b1, count < 0 ? [] : dhsaLastLists(count: count)) }
                var sp = eak_span()
                if count >= 0 {
                    sp.keys = UnsafePointer((arena.raw + plan.dhsaLists).assumingMemoryBound(to: Int32.self))
                    sp.n_keys = Int32(count)
                    sp.keys_stride = Int32(plan.dhsaBudget)
                }
                attend(t0, nt, &sp)
                t0 += nt
            }
        } else {
            attend(0, n, &span)
        }
    }

    /// Layer l's view of the KV8/KV4 regions.
    func quantCache(layer l: Int) -> eak_kvq {
        let hp = model.hp, kvf = hp.kvDim
        return eak_kvq(head_dim: Int32(hp.headDim), n_kv_head: Int32(hp.nHeadKV), bits: Int32(plan.kvBits),
                       group: Int32(plan.kvGroup), n_sink: Int32(plan.kvSinks), ring: Int32(plan.kvRing),
                       block_slots: Int32(plan.kvqBlockRing[l] ? plan.kvqBlocks[l] : 0),
                       kq: (arena.raw + plan.kvqKeys + plan.kvqKeyOffset[l]).assumingMemoryBound(to: UInt8.self),
                       vq: (arena.raw + plan.kvqValues + plan.kvqValueOffset[l]).assumingMemoryBound(to: UInt8.self),
                       sink_k: arena.floats(at: plan.kvSinkK) + l * plan.kvSinks * kvf,
                       sink_v: arena.floats(at: plan.kvSinkV) + l * plan.kvSinks * kvf,
                       ring_k: arena.floats(at: plan.kvRingK) + l * plan.kvRing * kvf,
                       ring_v: arena.floats(at: plan.kvRingV) + l * plan.kvRing * kvf)
    }
}
