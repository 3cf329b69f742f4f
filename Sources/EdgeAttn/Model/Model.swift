import EAKernels

/// A weight matrix in whatever format the file stores it: the one interface the forward pass uses
/// for weights, so later formats (W2/W4/W8 with integer kernels) plug in here.
public struct WeightMatrix {
    public let type: Int32
    public let data: UnsafeRawPointer
    public let rows: Int
    public let cols: Int
    public let rowBytes: Int
    /// W2 only: weights per scale/offset group (0 for ggml types).
    public let group: Int
    /// Hadamard block size if the converter stored W*H (the input is rotated by H first), else 0.
    public let rotation: Int
    /// W2 and Q4_1: the rows are reordered into 16-row panels (eak_w2_pack_panels, eak_q4p_pack_panels).
    public let panels: Bool
    /// W2 only: 1, or 2 for 4-bit weights stored as two W2 planes (a W2 matrix of 2 * cols columns:
    /// each row's high code bits with scale 4d and offset m, then its low bits with scale d and offset
    /// 0, so W = W_hi + W_lo and W x = [W_hi | W_lo] [x; x]). Runs on the W2 kernels unchanged.
    public let planes: Int

    public init(type: Int32, data: UnsafeRawPointer, rows: Int, cols: Int, rowBytes: Int, group: Int = 0,
                rotation: Int = 0, panels: Bool = false, planes: Int = 1) {
        self.type = type
        self.data = data
        self.rows = rows
        self.cols = cols
        self.rowBytes = rowBytes
        self.group = group
        self.rotation = rotation
        self.panels = panels
        self.planes = planes
    }

    /// Columns of the W2 matrix the kernels see (cols * planes).
    var storedCols: Int { cols * planes }

    static let w2Type = Int32(EAK_W2)

    /// True when products run on 8-bit activations with integer dot products (A8).
    public var usesInt8Activations: Bool { type == WeightMatrix.w2Type || eak_act_type(type) >= 0 }

    /// True when this matrix prepares its input (rotation, 8-bit activation blocks) exactly as `o`
    /// does, so a product with `o` on the same input leaves the prepared input in the scratch.
    @inline(__always)
    func sharesInput(with o: WeightMatrix) -> Bool {
        cols == o.cols && rotation == o.rotation && usesInt8Activations == o.usesInt8Activations
    }

    /// y[t][r] = W[r] . x[t] for nTok tokens. act: scratch for the quantized activations
    /// (eak_act_bytes(nTok, cols) bytes), used when the weight type has an integer path.
    /// reuseInput: the previous product used the same x with a matrix that sharesInput(with: self),
    /// so the rotated and quantized input in the scratch is reused (q/k/v and gate/up share theirs).
    @inline(__always)
    func apply(_ xIn: UnsafePointer<Float>, nTok: Int, into y: UnsafeMutablePointer<Float>, threads: Int,
               act scratch: MatmulScratch, reuseInput: Bool = false) {
        if usesInt8Activations {
            let blocks = prepareInput(xIn, nTok: nTok, threads: threads, act: scratch, reuseInput: reuseInput)
            if type == WeightMatrix.w2Type {
                let xq = planes == 2 ? doubled(blocks, nTok: nTok, act: scratch) : blocks
                if panels {
                    eak_matmul_w2p(data, rowBytes, Int32(rows), Int32(storedCols), Int32(group), xq, Int32(nTok), y,
                                   Int32(threads))
                } else {
                    eak_matmul_w2(data, rowBytes, Int32(rows), Int32(storedCols), Int32(group), xq, Int32(nTok), y,
                                  Int32(threads))
                }
            } else if panels {
                eak_matmul_q4p(data, rowBytes, Int32(rows), Int32(cols), blocks, Int32(nTok), y, Int32(threads))
            } else {
                eak_matmul_q8(type, data, rowBytes, Int32(rows), Int32(cols), blocks, Int32(nTok), y, Int32(threads))
            }
        } else {
            var x = xIn
            if rotation > 0, let r = scratch.rotated {
                if !reuseInput { rotate(xIn, nTok: nTok, into: r, threads: threads) }
                x = UnsafePointer(r)
            }
            eak_matmul(type, data, rowBytes, Int32(rows), Int32(cols), x, Int32(nTok), y, Int32(threads))
        }
    }

    @inline(__always)
    func rotate(_ xIn: UnsafePointer<Float>, nTok: Int, into r: UnsafeMutablePointer<Float>, threads: Int) {
        r.update(from: xIn, count: nTok * cols)
        eak_hadamard(r, Int32(nTok), Int32(cols), Int32(rotation), Int32(threads))
    }

    /// The input as 8-bit activation blocks in the scratch (rotated first when the matrix is stored
    /// as W*H); reuseInput: they are there already.
    @inline(__always)
    func prepareInput(_ xIn: UnsafePointer<Float>, nTok: Int, threads: Int, act scratch: MatmulScratch,
                      reuseInput: Bool) -> UnsafePointer<eak_act_block> {
        let blocks = scratch.act.assumingMemoryBound(to: eak_act_block.self)
        if !reuseInput {
            var x = xIn
            if rotation > 0, let r = scratch.rotated {
                rotate(xIn, nTok: nTok, into: r, threads: threads)
                x = UnsafePointer(r)
            }
            eak_quantize_act(x, Int32(nTok), Int32(cols), blocks, Int32(threads))
        }
        return UnsafePointer(blocks)
    }

    /// [x; x] for a two-plane matrix: each token's blocks twice, in the planes scratch (the blocks in
    /// `act` stay for reuse).
    @inline(__always)
    func doubled(_ blocks: UnsafePointer<eak_act_block>, nTok: Int, act scratch: MatmulScratch) -> UnsafePointer<eak_act_block> {
        guard let dup = scratch.planes else { return blocks }
        let nb = cols / 32, bytes = nb * MemoryLayout<eak_act_block>.stride
        for t in 0..<nTok {
            let src = UnsafeRawPointer(blocks + t * nb)
            (dup + 2 * t * bytes).copyMemory(from: src, byteCount: bytes)
            (dup + (2 * t + 1) * bytes).copyMemory(from: src, byteCount: bytes)
        }
        return UnsafePointer(dup.assumingMemoryBound(to: eak_act_block.self))
    }

    /// Panel-packed W2 that can join a shared-input product group (eak_matmul_w2p_jobs).
    var joinsW2Jobs: Bool { type == WeightMatrix.w2Type && panels }

    @inline(__always)
    func w2pJob(_ xq: UnsafePointer<eak_act_block>, _ y: UnsafeMutablePointer<Float>) -> eak_w2p_job {
        eak_w2p_job(w: data, row_bytes: rowBytes, rows: Int32(rows), cols: Int32(storedCols), group: Int32(group), xq: xq, y: y)
    }

    /// The products of two or three matrices with one input (q/k/v, gate/up): when all are W2 panels
    /// with the same input preparation, the input is rotated, quantized and doubled once and the
    /// products run in one parallel region (one fork and join instead of three); else one apply after
    /// another. Same results either way.
    static func applyShared(_ a: WeightMatrix, _ b: WeightMatrix, _ c: WeightMatrix?, _ x: UnsafePointer<Float>, nTok: Int,
                            _ ya: UnsafeMutablePointer<Float>, _ yb: UnsafeMutablePointer<Float>,
                            _ yc: UnsafeMutablePointer<Float>?, threads: Int, act: MatmulScratch) {
        var grouped = a.joinsW2Jobs && b.joinsW2Jobs && b.sharesInput(with: a)
        if let c { grouped = grouped && yc != nil && c.joinsW2Jobs && c.sharesInput(with: a) }
        if !grouped {
            a.apply(x, nTok: nTok, into: ya, threads: threads, act: act)
            b.apply(x, nTok: nTok, into: yb, threads: threads, act: act, reuseInput: b.sharesInput(with: a))
            if let c, let yc { c.apply(x, nTok: nTok, into: yc, threads: threads, act: act, reuseInput: c.sharesInput(with: b)) }
            return
        }
        let blocks = a.prepareInput(x, nTok: nTok, threads: threads, act: act, reuseInput: false)
        let twoPlanes = a.planes == 2 || b.planes == 2 || c?.planes == 2
        let dup = twoPlanes ? a.doubled(blocks, nTok: nTok, act: act) : blocks
        var ja = a.w2pJob(a.planes == 2 ? dup : blocks, ya), jb = b.w2pJob(b.planes == 2 ? dup : blocks, yb)
        if let c, let yc {
            var jc = c.w2pJob(c.planes == 2 ? dup : blocks, yc)
            eak_matmul_w2p_jobs(&ja, &jb, &jc, Int32(nTok), Int32(threads))
        } else {
            eak_matmul_w2p_jobs(&ja, &jb, nil, Int32(nTok), Int32(threads))
        }
    }

    /// Decodes row r into out (cols floats).
    @inline(__always)
    public func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        // only looked-up matrices (token embeddings) take this path, and the loader keeps them to one plane
        precondition(planes == 1, "row lookup in a two-plane matrix")
        if type == WeightMatrix.w2Type {
            _ = panels ? eak_w2p_dequantize_row(data, rowBytes, Int32(r), out, Int32(cols), Int32(group))
                       : eak_w2_dequantize_row(data + r * rowBytes, out, Int32(cols), Int32(group))
        } else {
            precondition(!panels, "row lookup in a Q4_1 panel matrix")
            _ = eak_dequantize(type, data + r * rowBytes, out, Int64(cols))
        }
    }

    public var byteCount: Int { rows * rowBytes }
    /// Storage bits per weight (scales and offsets included).
    public var bitsPerWeight: Double { Double(byteCount * 8) / Double(rows * cols) }
}

/// Scratch a matrix product may use: 8-bit activation blocks, and room for Hadamard-rotated inputs
/// (nBatch x widest input floats; nil when the model has no rotated matrices), and the doubled
/// activation blocks of two-plane matrices (nil when the model has none).
struct MatmulScratch {
    let act: UnsafeMutableRawPointer
    let rotated: UnsafeMutablePointer<Float>?
    var planes: UnsafeMutableRawPointer? = nil
}

public struct Hyperparams {
    public var architecture: String
    public var nVocab: Int
    public var nCtxTrain: Int
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    public var nHeadKV: Int
    public var headDim: Int
    public var nFF: Int
    public var ropeBase: Float
    public var ropeFreqScale: Float
    public var rmsEps: Float
    /// Architecture variations (llama: all off).
    /// Rotary pairs (i, i + head_dim/2) instead of (2i, 2i+1).
    public var ropeNeox = false
    /// Token embeddings are multiplied by this (Gemma: sqrt(n_embd)).
    public var embedScale: Float = 1
    /// GeGLU (tanh GELU) instead of SwiGLU.
    public var geluFFN = false
    /// Sliding-window attention on local layers: window (0 = none), their RoPE base, and the period
    /// of global layers (layer l is global iff l % period == period - 1).
    public var slidingWindow = 0
    public var ropeBaseLocal: Float = 0
    public var globalLayerPeriod = 0
    /// KV cache bits a session uses when it asks for the model's default (converted files: 4).
    public var defaultKVBits = 16
    /// Some matrices are stored Hadamard-rotated (edgeattn.rotation.* keys): sessions need scratch.
    public var hasRotation = false
    /// Widest input of a two-plane (4-bit) matrix, 0 when there is none: sessions then plan the
    /// doubled activation blocks those products read.
    public var planeCols = 0
    /// Attention kind of each layer (architecture "edgeattn"; the others are all softmax).
    public var layerKinds: [LayerKind] = []
    /// Linear layers: feature map on q and k (0 none, 1 SiLU, 2 ELU+1) and prefill chunk length.
    public var linearFeatureMap: Int32 = 0
    public var linearChunk = 64
    /// Series models (numbers in, numbers out) instead of tokens; nil for language models.
    public var series: SeriesSpec? = nil
    public var qDim: Int { nHead * headDim }
    public var kvDim: Int { nHeadKV * headDim }

    public func isLocal(_ layer: Int) -> Bool {
        slidingWindow > 0 && globalLayerPeriod > 0 && layer % globalLayerPeriod != globalLayerPeriod - 1
    }
}

/// How a layer mixes positions: softmax attention over a KV cache (dense, Λ or DHSA by session
/// policy), Aaren's softmax RNN with a learned query, or decayed linear attention (docs/recurrent.md).
public enum LayerKind: Int {
    case softmax = 0, aaren = 1, linear = 2

    public static func named(_ s: String) -> LayerKind? {
        switch s {
        case "softmax": return .softmax
        case "aaren": return .aaren
        case "linear": return .linear
        default: return nil
        }
    }
    public var isRecurrent: Bool { self != .softmax }
}

/// A series model's input and output (docs/recurrent.md): the input at step t is the last
/// `lags` samples, standardized as (x - mean) / scale (before the first sample arrives earlier
/// lags repeat the first sample); the model predicts `outputs` numbers, returned as mean + scale * y,
/// or x_t + scale * y when `residual`.
public struct SeriesSpec {
    public var lags: Int
    public var outputs: Int
    public var mean: Float
    public var scale: Float
    public var residual: Bool
}

public struct LayerWeights {
    let kind: LayerKind
    /// RoPE base and attention window (0 = all keys) of this layer.
    let ropeBase: Float
    let window: Int
    /// Gemma: per-head RMSNorm of q and k, and norms of the attention and FFN outputs.
    let qNorm: UnsafePointer<Float>?
    let kNorm: UnsafePointer<Float>?
    let postAttnNorm: UnsafePointer<Float>?
    let postFFNNorm: UnsafePointer<Float>?
    let attnNorm: UnsafePointer<Float>
    var wq: WeightMatrix?  // nil for Aaren (its query is learned: aarenQuery)
    var wk: WeightMatrix
    var wv: WeightMatrix
    var wo: WeightMatrix
    let ffnNorm: UnsafePointer<Float>
    var gate: WeightMatrix
    var up: WeightMatrix
    var down: WeightMatrix
    /// Aaren: the learned query (n_head x head_dim). Linear: per-head decay, and the optional output
    /// gate (sigmoid(W_g x)) and per-head output RMSNorm.
    let aarenQuery: UnsafePointer<Float>?
    let decay: UnsafePointer<Float>?
    let attnGate: WeightMatrix?
    let attnOutNorm: UnsafePointer<Float>?
}

/// A loaded model: hyperparameters from metadata, weights in place in the mapped file, small float
/// vectors (norms) decoded into one owned buffer, and the tokenizer. Read-only after load, so one
/// model serves many sessions on many threads.
public final class Model {
    public let file: GGUFFile
    public let hp: Hyperparams
    public let tokenizer: Tokenizer
    let tokenEmbd: WeightMatrix
    let output: WeightMatrix
    let outputNorm: UnsafePointer<Float>
    let layers: [LayerWeights]
    let vectors: AlignedBuffer
    /// Series models: biases of the input projection (tokenEmbd holds input.weight) and of the head.
    let inputBias: UnsafePointer<Float>?
    let outputBias: UnsafePointer<Float>?

    public static let supportedArchitectures = ["llama", "gemma3", "edgeattn"]

    public convenience init(path: String, useMmap: Bool = true, validateData: Bool = false) throws(EAError) {
        let f = try GGUFFile(path: path, useMmap: useMmap)
        guard let arch = try f.string("general.architecture") else {
            throw EAError(.metadata, "required metadata 'general.architecture' is missing")
        }
        if !Model.supportedArchitectures.contains(arch) {
            throw EAError(.unsupportedArch, "architecture '\(arch)' is not supported (supported: llama, gemma3, edgeattn)")
        }
        var hp = try Model.readHyperparams(f, arch: arch)

        // Small float vectors (norms, biases, learned queries, decays): decoded to float once (any
        // stored type) into one owned buffer. (name, floats, required)
        let gemma = arch == "gemma3"
        var vecNames: [(String, Int, Bool)] = [("output_norm.weight", hp.nEmbd, true)]
        if let sp = hp.series {
            vecNames.append(("input.bias", hp.nEmbd, false))
            vecNames.append(("output.bias", sp.outputs, false))
        }
        for l in 0..<hp.nLayer {
            let p = "blk.\(l)."
            vecNames.append((p + "attn_norm.weight", hp.nEmbd, true))
            vecNames.append((p + "ffn_norm.weight", hp.nEmbd, true))
            if gemma {
                vecNames.append((p + "attn_q_norm.weight", hp.headDim, true))
                vecNames.append((p + "attn_k_norm.weight", hp.headDim, true))
                vecNames.append((p + "post_attention_norm.weight", hp.nEmbd, true))
                vecNames.append((p + "post_ffw_norm.weight", hp.nEmbd, true))
            }
            switch hp.layerKinds[l] {
            case .aaren: vecNames.append((p + "attn_query", hp.qDim, true))
            case .linear:
                vecNames.append((p + "attn_decay", hp.nHead, true))
                vecNames.append((p + "attn_out_norm.weight", hp.headDim, false))
            case .softmax: break
            }
        }
        // every tensor is found and shape-checked before the buffer is allocated, so a small file
        // claiming huge dimensions fails without allocating for them (found by the fuzzer)
        var found: [(Int, GGUFTensor)] = []
        for (i, (name, n, required)) in vecNames.enumerated() {
            if !required && f.tensor(name) == nil { continue }
            // the learned Aaren query is a matrix [head_dim, n_head] in the file; the rest are vectors
            found.append((i, try Model.tensor(f, name, name.hasSuffix(".attn_query") ? [hp.headDim, hp.nHead] : [n])))
        }
        var vecOffsets: [Int] = [], vecTotal = 0
        for (_, n, _) in vecNames {
            vecOffsets.append(vecTotal)
            vecTotal += alignUp(n * 4, 64)
        }
        let vectors = try AlignedBuffer(byteCount: max(vecTotal, 64))
        var vecPtr: [String: UnsafePointer<Float>] = [:]
        for (i, t) in found {
            let (name, n, _) = vecNames[i]
            let dst = vectors.floats(at: vecOffsets[i])
            _ = eak_dequantize(t.type, f.data(of: t), dst, Int64(n))
            vecPtr[name] = UnsafePointer(dst)
        }
        for l in 0..<hp.nLayer where hp.layerKinds[l] == .linear {
            let dec = vecPtr["blk.\(l).attn_decay"]!
            for h in 0..<hp.nHead where !(dec[h] > 0 && dec[h] <= 1) {
                throw EAError(.corrupt, "tensor 'blk.\(l).attn_decay' holds \(dec[h]) for head \(h): decays must lie in (0, 1]")
            }
        }

        // token models look rows up in token_embd; series models multiply the lag vector by input.weight
        let tokenEmbd: WeightMatrix
        var output: WeightMatrix
        if let sp = hp.series {
            tokenEmbd = try Model.matrix(f, "input.weight", rows: hp.nEmbd, cols: sp.lags)
            output = try Model.matrix(f, "output.weight", rows: sp.outputs, cols: hp.nEmbd)
        } else {
            tokenEmbd = try Model.matrix(f, "token_embd.weight", rows: hp.nVocab, cols: hp.nEmbd)
            output = tokenEmbd  // tied embeddings unless the file has its own head
            if f.tensor("output.weight") != nil {
                output = try Model.matrix(f, "output.weight", rows: hp.nVocab, cols: hp.nEmbd)
            }
        }
        var ls: [LayerWeights] = []
        for l in 0..<hp.nLayer {
            let p = "blk.\(l)."
            let local = hp.isLocal(l)
            let kind = hp.layerKinds[l]
            ls.append(LayerWeights(
                kind: kind,
                ropeBase: local ? hp.ropeBaseLocal : hp.ropeBase,
                window: local ? hp.slidingWindow : 0,
                qNorm: vecPtr[p + "attn_q_norm.weight"],
                kNorm: vecPtr[p + "attn_k_norm.weight"],
                postAttnNorm: vecPtr[p + "post_attention_norm.weight"],
                postFFNNorm: vecPtr[p + "post_ffw_norm.weight"],
                attnNorm: vecPtr[p + "attn_norm.weight"]!,
                wq: kind == .aaren ? nil : try Model.matrix(f, p + "attn_q.weight", rows: hp.qDim, cols: hp.nEmbd),
                wk: try Model.matrix(f, p + "attn_k.weight", rows: hp.kvDim, cols: hp.nEmbd),
                wv: try Model.matrix(f, p + "attn_v.weight", rows: hp.kvDim, cols: hp.nEmbd),
                wo: try Model.matrix(f, p + "attn_output.weight", rows: hp.nEmbd, cols: hp.qDim),
                ffnNorm: vecPtr[p + "ffn_norm.weight"]!,
                gate: try Model.matrix(f, p + "ffn_gate.weight", rows: hp.nFF, cols: hp.nEmbd),
                up: try Model.matrix(f, p + "ffn_up.weight", rows: hp.nFF, cols: hp.nEmbd),
                down: try Model.matrix(f, p + "ffn_down.weight", rows: hp.nEmbd, cols: hp.nFF),
                aarenQuery: vecPtr[p + "attn_query"],
                decay: vecPtr[p + "attn_decay"],
                attnGate: kind == .linear && f.tensor(p + "attn_gate.weight") != nil
                    ? try Model.matrix(f, p + "attn_gate.weight", rows: hp.qDim, cols: hp.nEmbd) : nil,
                attnOutNorm: vecPtr[p + "attn_out_norm.weight"]))
        }
        let tokenizer = hp.series != nil ? Tokenizer.none() : try Tokenizer(file: f, vocabSize: hp.nVocab)
        if validateData { try Model.scanFinite(f) }
        let all: [WeightMatrix?] = [output] + ls.flatMap({ [$0.wq, $0.wk, $0.wv, $0.wo, $0.gate, $0.up, $0.down, $0.attnGate] })
        for m in all {
            if let m = m, m.planes > 1 { hp.planeCols = max(hp.planeCols, m.cols) }
        }
        self.init(file: f, hp: hp, tokenizer: tokenizer, tokenEmbd: tokenEmbd, output: output,
                  outputNorm: vecPtr["output_norm.weight"]!, layers: ls, vectors: vectors,
                  inputBias: vecPtr["input.bias"], outputBias: vecPtr["output.bias"])
    }

    /// Host tools (sequential calibration): a model sharing this one's file, vectors and tokenizer whose
    /// layer `layer` uses the given matrices instead (keys: "attn_q", "attn_k", "attn_v", "attn_output",
    /// "ffn_gate", "ffn_up", "ffn_down"; other keys are ignored). The matrices' memory must outlive it.
    /// This model is not changed: models stay read-only so that sessions on other threads can share them.
    public func replacingMatrices(layer: Int, _ mats: [String: WeightMatrix]) -> Model {
        var ls = layers, h = hp
        for (k, m) in mats {
            if m.rotation > 0 { h.hasRotation = true }  // sessions then plan the rotated-input scratch
            if m.planes > 1 { h.planeCols = max(h.planeCols, m.cols) }
            switch k {
            case "attn_q": ls[layer].wq = m
            case "attn_k": ls[layer].wk = m
            case "attn_v": ls[layer].wv = m
            case "attn_output": ls[layer].wo = m
            case "ffn_gate": ls[layer].gate = m
            case "ffn_up": ls[layer].up = m
            case "ffn_down": ls[layer].down = m
            default: break
            }
        }
        return Model(file: file, hp: h, tokenizer: tokenizer, tokenEmbd: tokenEmbd, output: output,
                     outputNorm: outputNorm, layers: ls, vectors: vectors, inputBias: inputBias, outputBias: outputBias)
    }

    /// Host tools: the embedding rows of tokens (scaled as the forward pass scales them) into x
    /// (tokens.count x n_embd floats). Token ids must be in range.
    public func embed(_ tokens: UnsafeBufferPointer<Int32>, into x: UnsafeMutablePointer<Float>) {
        let d = hp.nEmbd
        for i in 0..<tokens.count { tokenEmbd.row(Int(tokens[i]), into: x + i * d) }
        if hp.embedScale != 1 { eak_scale(x, hp.embedScale, Int64(tokens.count * d)) }
    }

    /// The final norm of n hidden-state rows x into out (n x n_embd): the output head's input (the
    /// session's head, and the converter's head calibration).
    public func finalNorm(_ x: UnsafePointer<Float>, n: Int, into out: UnsafeMutablePointer<Float>, threads: Int) {
        eak_rmsnorm(out, x, outputNorm, Int32(hp.nEmbd), Int32(n), hp.rmsEps, 0, Int32(threads))
    }

    init(file: GGUFFile, hp: Hyperparams, tokenizer: Tokenizer, tokenEmbd: WeightMatrix, output: WeightMatrix,
         outputNorm: UnsafePointer<Float>, layers: [LayerWeights], vectors: AlignedBuffer,
         inputBias: UnsafePointer<Float>? = nil, outputBias: UnsafePointer<Float>? = nil) {
        self.inputBias = inputBias
        self.outputBias = outputBias
        self.file = file
        self.hp = hp
        self.tokenizer = tokenizer
        self.tokenEmbd = tokenEmbd
        self.output = output
        self.outputNorm = outputNorm
        self.layers = layers
        self.vectors = vectors
    }



    static func readHyperparams(_ f: GGUFFile, arch: String) throws(EAError) -> Hyperparams {
        let a = arch + "."
        let nEmbd = try f.requireInt(a + "embedding_length")
        let nLayer = try f.requireInt(a + "block_count")
        let nFF = try f.requireInt(a + "feed_forward_length")
        let nHead = try f.requireInt(a + "attention.head_count")
        let nHeadKV = try f.int(a + "attention.head_count_kv") ?? nHead
        let nCtx = try f.int(a + "context_length") ?? 2048
        let headDim = try f.int(a + "attention.key_length") ?? (nHead > 0 ? nEmbd / nHead : 0)
        let ropeBase = try f.float(a + "rope.freq_base") ?? 10000
        let ropeScale = try f.float(a + "rope.scaling.factor") ?? 1
        let eps = try f.float(a + "attention.layer_norm_rms_epsilon") ?? 1e-5
        func bad(_ what: String) -> EAError { EAError(.metadata, "inconsistent hyperparameters: \(what)") }
        if nEmbd < 1 || nEmbd > 1 << 16 { throw bad("embedding_length \(nEmbd)") }
        if nLayer < 1 || nLayer > 1024 { throw bad("block_count \(nLayer)") }
        if nFF < 1 || nFF > 1 << 20 { throw bad("feed_forward_length \(nFF)") }
        if nHead < 1 || nHead > 1024 { throw bad("head_count \(nHead)") }
        if nHeadKV < 1 || nHead % nHeadKV != 0 { throw bad("head_count_kv \(nHeadKV) does not divide head_count \(nHead)") }
        if headDim < 2 || headDim % 2 != 0 || headDim > 512 { throw bad("head dimension \(headDim)") }
        if nCtx < 1 || nCtx > 1 << 24 { throw bad("context_length \(nCtx)") }
        // token models: vocabulary from the tokenizer; series models: outputs (edgeattn.series.*)
        var series: SeriesSpec? = nil
        if arch == "edgeattn", let lags = try f.int(a + "series.lags") {
            let outs = try f.int(a + "series.outputs") ?? 1
            let mean = try f.float(a + "series.mean") ?? 0, scale = try f.float(a + "series.scale") ?? 1
            if lags < 1 || lags > 4096 { throw bad("series.lags \(lags) (1...4096)") }
            if outs < 1 || outs > 4096 { throw bad("series.outputs \(outs) (1...4096)") }
            if !mean.isFinite || !(scale > 0) || !scale.isFinite { throw bad("series.mean/scale must be finite, scale > 0") }
            series = SeriesSpec(lags: lags, outputs: outs, mean: Float(mean), scale: Float(scale),
                                residual: (try f.bool(a + "series.residual")) ?? false)
        }
        var nVocab = series?.outputs ?? 0
        if series == nil {
            guard let tokens = try f.array("tokenizer.ggml.tokens") else {
                throw EAError(.tokenizer, "required metadata 'tokenizer.ggml.tokens' is missing")
            }
            if tokens.count < 1 || tokens.count > 1 << 22 { throw bad("vocabulary of \(tokens.count) tokens") }
            nVocab = tokens.count
        }
        if !(ropeBase > 0) || !(eps > 0) || !(ropeScale > 0) { throw bad("rope base, scale or norm epsilon not positive") }
        var hp = Hyperparams(architecture: arch, nVocab: nVocab, nCtxTrain: nCtx, nEmbd: nEmbd,
                             nLayer: nLayer, nHead: nHead, nHeadKV: nHeadKV, headDim: headDim, nFF: nFF,
                             ropeBase: Float(ropeBase), ropeFreqScale: Float(1 / ropeScale), rmsEps: Float(eps))
        hp.hasRotation = f.metadataKeys.contains { $0.hasPrefix("edgeattn.rotation.") }
        if let kb = try f.int("edgeattn.kv_bits") {
            if ![4, 8, 16, 32].contains(kb) { throw bad("edgeattn.kv_bits \(kb)") }
            hp.defaultKVBits = kb
        }
        hp.series = series
        hp.layerKinds = [LayerKind](repeating: .softmax, count: nLayer)
        if arch == "edgeattn" {
            if let ka = try f.array(a + "layer_kinds") {
                if ka.elementType != .string || ka.count != nLayer {
                    throw bad("'\(a)layer_kinds' must be an array of \(nLayer) strings")
                }
                var unknown = ""
                f.forEachString(ka) { i, b in
                    let name = String(decoding: b, as: UTF8.self)
                    if let k = LayerKind.named(name) { hp.layerKinds[i] = k } else if unknown.isEmpty { unknown = name }
                }
                if !unknown.isEmpty { throw bad("layer kind '\(unknown)' (supported: softmax, aaren, linear)") }
            }
            if hp.layerKinds.contains(where: { $0.isRecurrent }) && nHeadKV != nHead {
                throw bad("recurrent layers need head_count_kv == head_count")
            }
            if let fm = try f.string(a + "linear.feature_map") {
                switch fm {
                case "none": hp.linearFeatureMap = 0
                case "silu": hp.linearFeatureMap = 1
                case "elu1": hp.linearFeatureMap = 2
                default: throw bad("linear.feature_map '\(fm)' (supported: none, silu, elu1)")
                }
            }
            if let c = try f.int(a + "linear.chunk") {
                if c < 1 || c > 4096 { throw bad("linear.chunk \(c) (1...4096)") }
                hp.linearChunk = c
            }
        }
        if arch == "gemma3" {
            // Gemma 3: embeddings scaled by sqrt(d), NEOX rotary pairs, GeGLU, and 5 of every 6 layers
            // local with a sliding window and RoPE base 10000 (the value llama.cpp and the reference
            // implementation use; the file carries only the global base).
            hp.ropeNeox = true
            hp.embedScale = Float(nEmbd).squareRoot()
            hp.geluFFN = true
            hp.slidingWindow = try f.int(a + "attention.sliding_window") ?? 0
            if hp.slidingWindow < 0 { throw bad("sliding_window \(hp.slidingWindow)") }
            hp.ropeBaseLocal = 10000
            hp.globalLayerPeriod = 6
        }
        return hp
    }

    /// A required tensor with exactly these ggml dims.
    static func tensor(_ f: GGUFFile, _ name: String, _ dims: [Int]) throws(EAError) -> GGUFTensor {
        guard let t = f.tensor(name) else { throw EAError(.missingTensor, "required tensor '\(name)' is missing") }
        if t.dims != dims {
            throw EAError(.shape, "tensor '\(name)' has shape \(shapeText(t.dims)), expected \(shapeText(dims))")
        }
        return t
    }

    /// Metadata key holding the group size of a W2 tensor (its presence marks the tensor as W2).
    public static func w2GroupKey(_ tensor: String) -> String { "edgeattn.w2.\(tensor).group_size" }

    /// Metadata key holding the plane count of a W2 tensor: absent or 1, or 2 for 4-bit weights.
    public static func w2PlanesKey(_ tensor: String) -> String { "edgeattn.w2.\(tensor).planes" }

    /// Metadata key holding the Hadamard block size of a rotated matrix.
    public static func rotationKey(_ tensor: String) -> String { "edgeattn.rotation.\(tensor)" }

    public static func matrix(_ f: GGUFFile, _ name: String, rows: Int, cols: Int) throws(EAError) -> WeightMatrix {
        let m = try storedMatrix(f, name, rows: rows, cols: cols)
        guard let rot = try f.int(rotationKey(name)) else { return m }
        if rot < 2 || rot > 4096 || rot & (rot - 1) != 0 || cols % rot != 0 {
            throw EAError(.metadata, "'\(rotationKey(name))' = \(rot): must be a power of two dividing \(cols)")
        }
        if name == "token_embd.weight" {
            throw EAError(.metadata, "the token embedding cannot be stored rotated (rows are looked up, not multiplied)")
        }
        return WeightMatrix(type: m.type, data: m.data, rows: rows, cols: cols, rowBytes: m.rowBytes, group: m.group,
                            rotation: rot, panels: m.panels, planes: m.planes)
    }

    static func storedMatrix(_ f: GGUFFile, _ name: String, rows: Int, cols: Int) throws(EAError) -> WeightMatrix {
        if let group = try f.int(w2GroupKey(name)) {
            // W2: stored as raw bytes (GGUF type I8) of shape [row_bytes, rows]
            let planes = try f.int(w2PlanesKey(name)) ?? 1
            if planes != 1 && planes != 2 {
                throw EAError(.metadata, "'\(w2PlanesKey(name))' = \(planes): must be 1 or 2")
            }
            if planes > 1 && name == "token_embd.weight" {
                throw EAError(.metadata, "the token embedding cannot be stored in two planes (rows are looked up, not multiplied)")
            }
            let sc = cols * planes
            // a group never spans the two planes: it must divide the logical row
            let rb = group > 0 && group <= 1 << 16 && cols <= 1 << 24 && cols % group == 0
                ? Int(eak_w2_row_bytes(Int32(sc), Int32(group))) : 0
            if rb == 0 {
                throw EAError(.shape, "W2 tensor '\(name)': group size \(group) does not fit rows of \(cols) weights (multiple of 32 dividing the row)")
            }
            guard let t = f.tensor(name) else { throw EAError(.missingTensor, "required tensor '\(name)' is missing") }
            if t.type != Int32(EAK_I8) {
                throw EAError(.unsupportedType, "W2 tensor '\(name)' must be stored as I8 bytes, found type \(t.type)")
            }
            if t.dims != [rb, rows] {
                throw EAError(.shape, "W2 tensor '\(name)' has shape \(shapeText(t.dims)), expected \(shapeText([rb, rows])) (\(cols) weights in groups of \(group)\(planes > 1 ? ", two planes" : ""))")
            }
            // matrices of whole panels run on the panel kernels (same results, no horizontal adds)
            let panels = f.packW2Panels(t, rows: rows, cols: sc, group: group, rowBytes: rb)
            return WeightMatrix(type: WeightMatrix.w2Type, data: f.data(of: t), rows: rows, cols: cols, rowBytes: rb,
                                group: group, panels: panels, planes: planes)
        }
        let t = try tensor(f, name, [cols, rows])
        if t.type == Int32(EAK_I8) {
            throw EAError(.metadata, "tensor '\(name)' holds I8 bytes but has no '\(w2GroupKey(name))' metadata")
        }
        // Q4_1 matrices that are only multiplied (not the looked-up embedding) decode from panels
        let panels = name != "token_embd.weight" && f.packQ4Panels(t, rows: rows, cols: cols)
        return WeightMatrix(type: t.type, data: f.data(of: t), rows: rows, cols: cols, rowBytes: t.rowBytes, panels: panels)
    }

    /// Optional full scan for NaN/Inf in float-typed tensors (quantized blocks are checked by their
    /// scales when decoded; a NaN there shows up as NaN logits).
    static func scanFinite(_ f: GGUFFile) throws(EAError) {
        for t in f.tensors where t.type == 0 {
            let p = f.data(of: t).assumingMemoryBound(to: Float.self)
            for i in 0..<t.elementCount where !p[i].isFinite {
                throw EAError(.corrupt, "tensor '\(t.name)' holds a non-finite value at element \(i)")
            }
        }
    }

    /// Weight bytes one decoded token reads: every layer matrix, the output head and one embedding row.
    public var weightBytesPerToken: Int {
        var n = output.byteCount + tokenEmbd.rowBytes
        for w in layers {
            for m in [w.wq, w.wk, w.wv, w.wo, w.gate, w.up, w.down, w.attnGate] { n += m?.byteCount ?? 0 }
        }
        return n
    }

    /// Bytes held outside the mapped file.
    public var residentBytes: Int { vectors.byteCount + tokenizer.residentBytes }
}

/// "[576, 49152]": arrays have no reliable description in Embedded Swift.
public func shapeText(_ dims: [Int]) -> String {
    var s = "["
    for (i, d) in dims.enumerated() { s += (i > 0 ? ", " : "") + String(d) }
    return s + "]"
}
