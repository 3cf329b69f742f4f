import EAKernels

/// One conversation over a shared model: the KV cache and scratch of one arena planned by
/// `SessionPlan`. Evaluating tokens never allocates.
public final class Session {
    public let model: Model
    public let plan: SessionPlan
    /// The parameters the plan was made from (after auto_fit, what it chose).
    public let params: SessionParams
    let arena: AlignedBuffer
    public internal(set) var nPast = 0
    /// Row of the logits buffer holding the last evaluated token's logits, or -1.
    var lastLogitsRow = -1
    /// DHSA: query blocks reaching this position attend densely (the current prompt's tail).
    var dhsaDenseFrom = Int.max
    /// 1/sqrt(head_dim), the softmax scale of every attention kernel.
    let attnScale: Float
    /// Calibration hook (host tools only; nil in normal use): called with (layer, site, rows, n, cols)
    /// for the inputs of the layer's matrices: site 0 = attention input (q, k, v), 1 = attention
    /// output projection input, 2 = FFN input (gate, up), 3 = FFN down input; and (n_layer, 0, ...) for
    /// the output head's input (the final norm's output) of every row a full forward pass runs.
    public var observer: ((Int, Int, UnsafePointer<Float>, Int, Int) -> Void)? = nil
    /// DHSA hook (tests and tools; nil in normal use): (layer, b0, b1, lists) after each query block's
    /// selection; lists[h] are kv head h's key positions, empty when the block was dense.
    public var selectionObserver: ((Int, Int, Int, [[Int32]]) -> Void)? = nil

    public convenience init(model: Model, params: SessionParams) throws(EAError) {
        var plan = try SessionPlan.make(model.hp, params)
        var used = params
        if let limit = params.byteLimit, plan.totalBytes > limit {
            if params.autoFit {
                (plan, used) = try SessionPlan.fit(model.hp, params, limit: limit)
            } else {
                var largest = ("", 0)
                for r in plan.regions where r.1 > largest.1 { largest = r }
                let what = params.workspace != nil && params.workspaceSize == limit ? "the workspace holds" : "the budget is"
                throw EAError(.budget, "session needs \(plan.totalBytes) bytes (largest: \(largest.0) \(largest.1) bytes for n_ctx \(plan.nCtx)) but \(what) \(limit) bytes")
            }
        }
        // the arena stops where the bookkeeping reserve starts: in a workspace the reserve holds
        // this session's objects (see eak_region_begin), otherwise they are on the heap
        let arena: AlignedBuffer
        if let ws = params.workspace {
            if Int(bitPattern: ws) % 64 != 0 { throw EAError(.invalidArgument, "workspace must be 64-byte aligned") }
            // fail before anything touches the arena if planning already used more than the reserve
            if eak_region_set_floor(ws + plan.tablesOffset) != 0 {
                throw EAError(.budget, "session bookkeeping needed more than its reserve of \(plan.totalBytes - plan.tablesOffset) bytes in the workspace")
            }
            arena = AlignedBuffer.external(ws, byteCount: plan.tablesOffset)
        } else {
            arena = try AlignedBuffer(byteCount: plan.tablesOffset)
        }
        self.init(model: model, plan: plan, arena: arena, params: used)
    }

    init(model: Model, plan: SessionPlan, arena: AlignedBuffer, params: SessionParams) {
        self.params = params
        self.model = model
        self.plan = plan
        self.arena = arena
        attnScale = 1 / Float(model.hp.headDim).squareRoot()
        dhsaReset()
        recurrentReset()
    }

    /// The session's planned bytes (the estimate): arena plus bookkeeping reserve.
    public var allocatedBytes: Int { plan.totalBytes }

    /// Team size of the batch being evaluated: plan.nThreads, or fewer when the process-wide
    /// thread limit (eak_threads_acquire) is in use by other sessions. Results do not depend on it.
    var threads = 1

    /// Takes up to plan.nThreads kernel threads from the process-wide limit; returns the slots taken
    /// (0: run on the calling thread alone). A one-thread session takes none.
    func acquireTeam() -> Int32 {
        let taken = plan.nThreads > 1 ? eak_threads_acquire(Int32(plan.nThreads)) : 0
        threads = max(1, Int(taken))
        return taken
    }

    func releaseTeam(_ taken: Int32) {
        eak_threads_release(taken)
        threads = 1
    }
    public var nCtx: Int { plan.nCtx }

    public func reset() {
        nPast = 0
        lastLogitsRow = -1
        dhsaReset()
        recurrentReset()
    }

    /// Logits of the last evaluated token (vocab floats), or nil.
    public var lastLogits: UnsafePointer<Float>? {
        lastLogitsRow < 0 ? nil : UnsafePointer(arena.floats(at: plan.logits) + lastLogitsRow * model.hp.nVocab)
    }

    /// Checks ids and room before any work, so a failed call leaves the cache untouched.
    func validate(_ tokens: UnsafeBufferPointer<Int32>) throws(EAError) {
        if model.hp.series != nil { throw EAError(.modelKind, "this series model reads numbers, not tokens (ea_session_eval_series)") }
        let nv = model.hp.nVocab
        for (i, t) in tokens.enumerated() where t < 0 || Int(t) >= nv {
            throw EAError(.tokenRange, "token \(t) at index \(i) is outside [0, \(nv))")
        }
        if tokens.count > plan.maxPositions - nPast {
            throw EAError(.contextFull, "\(tokens.count) tokens do not fit: \(nPast) of \(plan.maxPositions) context slots are used")
        }
    }

    /// Appends tokens to the cache. Logits are computed for the tokens at index >= logitsFrom
    /// (default: only the last), and onLogits(i, logits) is called for each of them in order; the
    /// last one stays available as lastLogits. abort (may be nil) is checked between batches.
    public func evaluate(_ tokens: UnsafeBufferPointer<Int32>, logitsFrom: Int? = nil,
                         abort: UnsafePointer<Int32>? = nil,
                         onLogits: (Int, UnsafePointer<Float>) -> Void = { _, _ in }) throws(EAError) {
        try validate(tokens)
        let from = max(0, logitsFrom ?? tokens.count - 1)
        let tail = plan.dhsa.denseTail
        dhsaDenseFrom = tokens.count > 1 && tail > 0 ? nPast + max(0, tokens.count - tail) : Int.max
        defer { dhsaDenseFrom = Int.max }
        var done = 0
        while done < tokens.count {
            if let a = abort, eak_load_flag(a) != 0 {
                throw EAError(.aborted, "aborted after \(done) of \(tokens.count) tokens")
            }
            let n = min(plan.nBatch, tokens.count - done)
            let firstRow = min(n, max(0, from - done))
            let taken = acquireTeam()
            forward(UnsafeBufferPointer(rebasing: tokens[done..<(done + n)]), logitsFrom: firstRow)
            releaseTeam(taken)
            if firstRow < n {
                let base = arena.floats(at: plan.logits)
                for r in firstRow..<n { onLogits(done + r, UnsafePointer(base + (r - firstRow) * model.hp.nVocab)) }
                lastLogitsRow = n - 1 - firstRow
            }
            done += n
        }
    }

    /// Appends one token; returns its logits (valid until the next call).
    public func decode(_ token: Int32) throws(EAError) -> UnsafePointer<Float> {
        var t = token
        try withUnsafePointer(to: &t) { (p) throws(EAError) in
            try evaluate(UnsafeBufferPointer(start: p, count: 1))
        }
        return lastLogits!
    }

    /// The forward pass (Llama family; Gemma 3 adds the options in Hyperparams) for one batch of n tokens at positions nPast..<nPast+n.
    /// Logits are computed for rows logitsFrom..<n into the logits region (row 0 = logitsFrom).
    func forward(_ tokens: UnsafeBufferPointer<Int32>, logitsFrom: Int) {
        model.embed(tokens, into: arena.floats(at: plan.x))
        runLayers(n: tokens.count, layers: 0..<model.hp.nLayer)
        if let observe = observer { // the head's input for calibration: every row, not just the scored ones
            let d = model.hp.nEmbd, xb = arena.floats(at: plan.xb)
            model.finalNorm(arena.floats(at: plan.x), n: tokens.count, into: xb, threads: threads)
            observe(model.hp.nLayer, 0, xb, tokens.count, d)
        }
        head(tokens.count, logitsFrom: logitsFrom)
    }

    /// Host tools (sequential calibration): runs `layers` of the model over n hidden-state rows x
    /// (n x n_embd, replaced by the layers' output) at positions 0..<n of an emptied cache. The
    /// observer sees those layers' matrix inputs. No logits. n must be at most n_batch and n_ctx.
    public func runLayers(on x: UnsafeMutablePointer<Float>, n: Int, layers: Range<Int>) throws(EAError) {
        if n < 1 || n > plan.nBatch || n > plan.maxPositions || layers.lowerBound < 0 || layers.upperBound > model.hp.nLayer {
            throw EAError(.invalidArgument, "runLayers: \(n) rows, layers \(layers.lowerBound)..<\(layers.upperBound) do not fit this session")
        }
        reset()
        let ax = arena.floats(at: plan.x), d = model.hp.nEmbd
        ax.update(from: x, count: n * d)
        let taken = acquireTeam()
        runLayers(n: n, layers: layers)
        releaseTeam(taken)
        x.update(from: ax, count: n * d)
        reset()
    }

    /// Host tools (the converter's bit allocation): the final norm and output head over n hidden-state
    /// rows x (n x n_embd, n <= n_batch). Returns the n x n_vocab logits, valid until the next call.
    public func headLogits(of x: UnsafePointer<Float>, n: Int) throws(EAError) -> UnsafePointer<Float> {
        if n < 1 || n > plan.nBatch || model.hp.series != nil {
            throw EAError(.invalidArgument, "headLogits: \(n) rows do not fit this session")
        }
        arena.floats(at: plan.x).update(from: x, count: n * model.hp.nEmbd)
        let taken = acquireTeam()
        head(n, logitsFrom: 0)
        releaseTeam(taken)
        return UnsafePointer(arena.floats(at: plan.logits))
    }

    var matmulScratch: MatmulScratch {
        MatmulScratch(act: arena.raw + plan.act, rotated: model.hp.hasRotation ? arena.floats(at: plan.rotated) : nil,
                      planes: model.hp.planeCols > 0 ? arena.raw + plan.actPlanes : nil)
    }

    /// Final norm and output head for rows logitsFrom..<n of x, into the logits region.
    func head(_ n: Int, logitsFrom: Int) {
        let rows = n - logitsFrom, d = model.hp.nEmbd
        if rows <= 0 { return }
        let xb = arena.floats(at: plan.xb)
        model.finalNorm(arena.floats(at: plan.x) + logitsFrom * d, n: rows, into: xb, threads: threads)
        model.output.apply(xb, nTok: rows, into: arena.floats(at: plan.logits), threads: threads, act: matmulScratch)
    }

    /// The given layers (all of them in a forward pass) over the n rows in x (positions
    /// nPast..<nPast+n); advances nPast.
    func runLayers(n: Int, layers: Range<Int>) {
        let hp = model.hp
        let d = hp.nEmbd, pos0 = nPast, th = threads
        let x = arena.floats(at: plan.x), xb = arena.floats(at: plan.xb), tmp = arena.floats(at: plan.tmp)
        let att = arena.floats(at: plan.attnOut)
        let g = arena.floats(at: plan.ffnG), u = arena.floats(at: plan.ffnU)
        let act = matmulScratch
        for l in layers {
            let w = model.layers[l]
            // token mixing: softmax attention over the cache (Attention/) or a recurrent layer's
            // constant state (Recurrent/)
            eak_rmsnorm(xb, x, w.attnNorm, Int32(d), Int32(n), hp.rmsEps, 0, Int32(th))
            observer?(l, 0, xb, n, d)
            if w.kind != .softmax {
                recurrentMix(layer: l, w, n: n, xb: xb, out: att)
            } else {
                softmaxAttention(layer: l, w, n: n, pos0: pos0, xb: xb, out: att)
            }
            observer?(l, 1, att, n, hp.qDim)
            w.wo.apply(att, nTok: n, into: tmp, threads: th, act: act)
            if let pn = w.postAttnNorm { eak_rmsnorm(tmp, tmp, pn, Int32(d), Int32(n), hp.rmsEps, 0, Int32(th)) }
            eak_add(x, tmp, Int64(n * d))

            eak_rmsnorm(xb, x, w.ffnNorm, Int32(d), Int32(n), hp.rmsEps, 0, Int32(th))
            observer?(l, 2, xb, n, d)
            WeightMatrix.applyShared(w.gate, w.up, nil, xb, nTok: n, g, u, nil, threads: th, act: act)
            eak_glu(g, g, u, Int64(n * hp.nFF), hp.geluFFN ? 1 : 0, Int32(th))
            observer?(l, 3, g, n, hp.nFF)
            w.down.apply(g, nTok: n, into: tmp, threads: th, act: act)
            if let pn = w.postFFNNorm { eak_rmsnorm(tmp, tmp, pn, Int32(d), Int32(n), hp.rmsEps, 0, Int32(th)) }
            eak_add(x, tmp, Int64(n * d))
        }
        nPast += n
    }
}
