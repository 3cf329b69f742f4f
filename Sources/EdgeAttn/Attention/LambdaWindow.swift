import EAKernels

/// Λ-shaped attention (docs/algorithms.md section 2): each query reads the first `S` tokens (sinks) and
/// the latest `W` tokens. The kernels (eak_span) read sinks at slots 0..S-1 and the window from a ring
/// of `lambdaRing` slots; this file holds the bookkeeping: where a position lives, and where the
/// sinks appear to be, position-wise, for a query far down the stream.
///
/// Keys are cached after RoPE at their true positions. Inside the window that is what both published
/// schemes see (relative distances are true distances). For the sinks the schemes differ, and since
/// RoPE is a rotation, R(a) R(b) = R(a + b): moving a sink from position i to i + δ is one rotation of
/// the cached key by δ, which we apply per query into `lambda_sink_keys`:
/// - StreamingLLM re-indexes the cache by slot (sinks 0..S-1, window S..S+n-1, query last), so a
///   sink sits at distance S + W - 1 - i once the window is full: δ = max(0, p - (S + W - 1)).
/// - LM-Infinite caps the distance to a sink at the training context L: δ_i = max(0, p - i - L).
extension Session {
    /// Cache slot of position p in a Λ layer (float and half caches).
    @inline(__always) func lambdaSlot(_ p: Int) -> Int {
        let s = plan.lambdaSinks
        return p < s ? p : s + (p - s) % plan.lambdaRing
    }

    /// Shift of sink i for a query at position p.
    @inline(__always) func sinkShift(query p: Int, sink i: Int) -> Int {
        switch plan.positionMode {
        case .streaming: return max(0, p - (plan.lambdaSinks + plan.lambdaWindow - 1))
        case .lmInfinite: return max(0, p - i - model.hp.nCtxTrain)
        }
    }

    /// Fills lambda_sink_keys with the layer's sink keys moved by their shifts for the queries
    /// pos0..<pos0+n, or returns nil when no query needs a shift (the cached keys are then exact).
    func shiftedSinks(layer l: Int, n: Int, pos0: Int, ropeBase: Float) -> UnsafePointer<Float>? {
        let hp = model.hp, S = plan.lambdaSinks, kvd = hp.kvDim
        if S == 0 || sinkShift(query: pos0 + n - 1, sink: 0) == 0 { return nil }  // the shift grows with p and falls with i
        let out = arena.floats(at: plan.sinkShift)
        let neox: Int32 = hp.ropeNeox ? 1 : 0
        // the cached sink keys (float in every format: half caches are widened, KV8/KV4 keep them exact)
        let cached = out + (n - 1) * S * kvd  // staged in the last query's rows, which are written last
        if plan.kvBits <= 8 {
            cached.update(from: arena.floats(at: plan.kvSinkK) + l * plan.kvSinks * kvd, count: S * kvd)
        } else if plan.kvBits == 16 {
            let src = (arena.raw + plan.kCache + plan.kvOffset[l] * 2)
            _ = eak_dequantize(Int32(EAK_F16), src, cached, Int64(S * kvd))
        } else {
            cached.update(from: arena.floats(at: plan.kCache + plan.kvOffset[l] * 4), count: S * kvd)
        }
        for t in 0..<n {
            let dst = out + t * S * kvd
            if t < n - 1 { dst.update(from: cached, count: S * kvd) }
            if plan.positionMode == .streaming {
                // one shift for every sink: rotate all S x n_kv_head heads in one call
                let delta = sinkShift(query: pos0 + t, sink: 0)
                if delta > 0 {
                    eak_rope(dst, Int32(S * hp.nHeadKV), Int32(hp.headDim), Int32(delta), ropeBase, hp.ropeFreqScale, neox)
                }
            } else {
                for i in 0..<S {
                    let delta = sinkShift(query: pos0 + t, sink: i)
                    if delta > 0 {
                        eak_rope(dst + i * kvd, Int32(hp.nHeadKV), Int32(hp.headDim), Int32(delta), ropeBase,
                                 hp.ropeFreqScale, neox)
                    }
                }
            }
        }
        return UnsafePointer(out)
    }
}
