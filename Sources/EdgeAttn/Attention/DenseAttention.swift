import EAKernels

/// Dense causal attention over the session's KV cache (float or IEEE half). The cache of a layer is
/// [n_ctx slots][n_kv_head * head_dim] for keys and for values; slot = position.
struct DenseAttention {
    let hp: Hyperparams
    let scale: Float

    init(_ hp: Hyperparams) {
        self.hp = hp
        scale = 1 / Float(hp.headDim).squareRoot()
    }

    /// q: [n][qDim] (already rotated); the new keys/values are already stored at pos0..<pos0+n.
    /// window: attend to the last `window` keys only (0 = all).
    func run(q: UnsafePointer<Float>, kCache: UnsafePointer<Float>, vCache: UnsafePointer<Float>,
             out: UnsafeMutablePointer<Float>, n: Int, pos0: Int, window: Int,
             scratch: UnsafeMutablePointer<Float>, threads: Int) {
        eak_attention(q, kCache, vCache, out, Int32(n), Int32(pos0), Int32(hp.nHead), Int32(hp.nHeadKV),
                      Int32(hp.headDim), scale, Int32(window), scratch, Int32(threads))
    }

    func runHalf(q: UnsafePointer<Float>, kCache: UnsafePointer<UInt16>, vCache: UnsafePointer<UInt16>,
                 out: UnsafeMutablePointer<Float>, n: Int, pos0: Int, window: Int,
                 scratch: UnsafeMutablePointer<Float>, threads: Int) {
        eak_attention_f16(q, kCache, vCache, out, Int32(n), Int32(pos0), Int32(hp.nHead), Int32(hp.nHeadKV),
                          Int32(hp.headDim), scale, Int32(window), scratch, Int32(threads))
    }
}
