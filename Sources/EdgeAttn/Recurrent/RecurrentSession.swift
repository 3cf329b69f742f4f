import EAKernels

/// The recurrent side of a session: resetting the constant per-layer state, and evaluating series
/// models (numbers in, forecasts out) through the same layer stack as token models.
extension Session {
    /// Empty recurrent state: Aaren tuples (m = -inf, u = 0, w = 0), linear-attention matrices 0.
    func recurrentReset() {
        let hp = model.hp, st = arena.floats(at: plan.rnnState)
        for l in 0..<hp.nLayer {
            let base = st + plan.rnnOffset[l]
            switch plan.kinds[l] {
            case .aaren:
                let tw = hp.headDim + 2
                for h in 0..<hp.nHead {
                    base[h * tw] = -Float.infinity
                    (base + h * tw + 1).update(repeating: 0, count: tw - 1)
                }
            case .linear: base.update(repeating: 0, count: hp.nHead * hp.headDim * hp.headDim)
            case .softmax: break
            }
        }
    }

    /// Series models: feeds samples (one number per step) and writes, for each, the model's forecast
    /// of what follows (outputs numbers per sample, many-to-many) into out. Checked before any work:
    /// a failed call leaves the state untouched.
    public func evaluateSeries(_ samples: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>,
                               abort: UnsafePointer<Int32>? = nil) throws(EAError) {
        guard let sp = model.hp.series else {
            throw EAError(.modelKind, "this model reads tokens, not series samples")
        }
        for (i, v) in samples.enumerated() where !v.isFinite {
            throw EAError(.invalidArgument, "sample \(i) is not a finite number")
        }
        if samples.count > plan.maxPositions - nPast {
            throw EAError(.contextFull, "\(samples.count) samples do not fit: \(nPast) of \(plan.maxPositions) positions are used")
        }
        let L = sp.lags, d = model.hp.nEmbd, no = sp.outputs
        let feats = arena.floats(at: plan.seriesFeatures), lagBuf = arena.floats(at: plan.seriesLags)
        let x = arena.floats(at: plan.x), logits = arena.floats(at: plan.logits)
        var done = 0
        while done < samples.count {
            if let a = abort, eak_load_flag(a) != 0 {
                throw EAError(.aborted, "aborted after \(done) of \(samples.count) samples")
            }
            let n = min(plan.nBatch, samples.count - done)
            // lag features, newest first; before the first sample the lags repeat it
            for i in 0..<n {
                let v = (samples[done + i] - sp.mean) / sp.scale
                if nPast + i == 0 {
                    lagBuf.update(repeating: v, count: L)
                } else {
                    var j = L - 1
                    while j > 0 { lagBuf[j] = lagBuf[j - 1]; j -= 1 }
                    lagBuf[0] = v
                }
                (feats + i * L).update(from: lagBuf, count: L)
            }
            let taken = acquireTeam()
            model.tokenEmbd.apply(feats, nTok: n, into: x, threads: threads, act: matmulScratch)
            if let b = model.inputBias { for i in 0..<n { eak_add(x + i * d, b, Int64(d)) } }
            runLayers(n: n, layers: 0..<model.hp.nLayer)
            head(n, logitsFrom: 0)
            releaseTeam(taken)
            for i in 0..<n {
                let base = sp.residual ? samples[done + i] : sp.mean
                for j in 0..<no {
                    let y = logits[i * no + j] + (model.outputBias?[j] ?? 0)
                    out[(done + i) * no + j] = base + sp.scale * y
                }
            }
            lastLogitsRow = -1
            done += n
        }
    }
}
