import EAKernels

/// The token mixing of a recurrent layer (docs/algorithms.md sections 4-5): Aaren's softmax RNN or
/// decayed linear attention, reading and updating the layer's constant-size state in the arena.
extension Session {
    /// Aaren or linear attention of layer l over the normed rows xb, into out (n x q_dim): the
    /// layer's constant state carries everything earlier.
    func recurrentMix(layer l: Int, _ w: LayerWeights, n: Int, xb: UnsafeMutablePointer<Float>,
                      out: UnsafeMutablePointer<Float>) {
        let hp = model.hp, th = threads, act = matmulScratch
        let kNew = arena.floats(at: plan.kNew), vNew = arena.floats(at: plan.vNew), q = arena.floats(at: plan.q)
        let state = arena.floats(at: plan.rnnState) + plan.rnnOffset[l]
        w.wk.apply(xb, nTok: n, into: kNew, threads: th, act: act)
        w.wv.apply(xb, nTok: n, into: vNew, threads: th, act: act)
        if w.kind == .aaren {
            eak_aaren(w.aarenQuery, kNew, vNew, Int32(n), Int32(hp.nHead), Int32(hp.headDim), attnScale, state, out,
                      arena.floats(at: plan.aarenScratch), Int32(th))
            return
        }
        w.wq!.apply(xb, nTok: n, into: q, threads: th, act: act)
        eak_feature_map(q, Int64(n * hp.qDim), hp.linearFeatureMap)
        eak_feature_map(kNew, Int64(n * hp.kvDim), hp.linearFeatureMap)
        eak_linear_attention(q, kNew, vNew, Int32(n), Int32(hp.nHead), Int32(hp.headDim), w.decay, state, out,
                             Int32(hp.linearChunk), Int32(th))
        if let on = w.attnOutNorm { eak_rmsnorm(out, out, on, Int32(hp.headDim), Int32(n * hp.nHead), hp.rmsEps, 0, Int32(th)) }
        if let g = w.attnGate {
            g.apply(xb, nTok: n, into: q, threads: th, act: act)
            eak_sigmoid_mul(out, q, Int64(n * hp.qDim))
        }
    }
}
