import EAKernels
import EdgeAttn
import Foundation

/// `edgeattn convert`: any GGUF the runtime reads -> a W2A8 GGUF (W2 linear layers, W8/W4 where the
/// policy keeps more bits), calibrated on text.
public struct ConvertOptions {
    public var input = ""
    public var output = ""
    /// Default W2 group size (a multiple of 32; rows it does not divide use the largest multiple of 32
    /// below it that does).
    public var group = 64
    public var quantizer: Quantizer = .gptq
    public var calibFiles: [String] = []
    public var calibTokens = 4096
    /// Seed of the generated calibration text (used when calibFiles is empty).
    public var calibSeed: UInt64 = 0xca1b
    /// Where to write the generated calibration text (its chunks as text, one after another); nil = nowhere.
    public var saveCalib: String? = nil
    /// Format of the token embedding and output head, and of every other matrix.
    public var embedType: TargetType = .w8
    /// A separate output head of this type (nil: the source's layout). A tied source gets its own
    /// `output.weight` made from `token_embd.weight`, so the embedding keeps embedType while the
    /// head, read whole every token, can take fewer bits; the head is calibrated on its input (the
    /// final norm's output) like the layer matrices.
    public var headType: TargetType? = nil
    public var linearType: TargetType? = nil  // nil: .w2(group)
    /// (glob pattern, type) overrides, applied in order; the last match wins.
    public var overrides: [(String, TargetType)] = []
    public var progress = true
    /// Hadamard block for the layer matrices (0 = none; rows it does not divide use the largest power
    /// of two below it that does): W is stored as W*H and the runtime rotates
    /// each input by H, which spreads outlier channels across the block before quantization.
    public var rotate = 0
    /// GPTQ only: rounds of code coordinate descent + joint (d, m) least squares on each row's
    /// calibration objective after GPTQ (Refine.swift); 0 = plain GPTQ.
    public var refine = 0
    /// Calibrate layer by layer on the partly quantized model (GPTQ's sequential order): layer l's
    /// statistics come from hidden states that went through the already quantized layers 0..<l.
    public var sequential = false
    /// GPTQ only: quantize columns in order of decreasing Hessian diagonal, with static groups.
    public var actOrder = false
    /// With sequential, a fraction beta in (0, 1] (0 = off): each layer matrix is quantized towards
    /// W + beta (W* - W), W* = W (C + D)(H + D)^-1 the least-squares fit of the *source* model's
    /// output on the same tokens (min ||W* Xq - W Xf||, Calibration.floatTarget), so a layer makes
    /// up for part of the error the quantized layers before it left in its inputs. The whole step
    /// (beta = 1) overshoots badly on SmolLM2 (docs/converter.md); a quarter of it pays.
    public var floatTarget = 0.0
    /// With sequential: within a layer too, each matrix is calibrated on inputs that went through the
    /// layer's matrices converted before it (q/k/v, then the attention output, gate/up, down), as
    /// GPTQ's "true sequential" order; one observing pass per input site instead of one per layer.
    public var trueSequential = false
    /// Bits per weight the linear layers may take (nil = every layer matrix gets its own target):
    /// the default W2 matrices most sensitive per added bit become two-plane 4-bit (BitAllocation.swift).
    public var targetBpw: Double? = nil
    /// The target came from the defaults, not the user: when the 2-bit layers alone exceed it,
    /// convert without allocating instead of refusing.
    public var targetBpwIsDefault = false
    public init() {}
}

public struct TensorReport {
    public let name: String
    public let type: String
    public let elements: Int
    public let bytes: Int
    public let isLinear: Bool
    /// Relative RMS error of the layer output on calibration activations (of the weights without).
    public let relError: Double
    public let outputError: Bool
    public var bitsPerWeight: Double { Double(bytes * 8) / Double(elements) }
}

/// Shell-style match with '*' (any run) and '?' (one character).
func glob(_ pattern: String, _ name: String) -> Bool {
    let p = Array(pattern.utf8), s = Array(name.utf8)
    var pi = 0, si = 0, star = -1, mark = 0
    while si < s.count {
        if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) { pi += 1; si += 1 }
        else if pi < p.count && p[pi] == UInt8(ascii: "*") { star = pi; mark = si; pi += 1 }
        else if star >= 0 { pi = star + 1; mark += 1; si = mark }
        else { return false }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

/// (layer, site) of a layer matrix's input, as the session's observer numbers them.
func calibrationSite(_ name: String) -> (Int, Int)? {
    let parts = name.split(separator: ".")
    guard parts.count >= 3, parts[0] == "blk", let l = Int(parts[1]) else { return nil }
    switch parts[2] {
    case "attn_q", "attn_k", "attn_v": return (l, 0)
    case "attn_output": return (l, 1)
    case "ffn_gate", "ffn_up": return (l, 2)
    case "ffn_down": return (l, 3)
    default: return nil
    }
}

/// Calibration statistics per (layer, site): X^T X summed over tokens, and a sample of rows.
final class Calibration {
    let sampleRows = 256
    var gram: [Int: [Double]] = [:]
    var dims: [Int: Int] = [:]
    var sample: [Int: [Float]] = [:]
    var tokens: [Int: Int] = [:]
    var scratch: [Float] = []
    var xt: [Float] = []

    func observe(_ layer: Int, _ site: Int, _ x: UnsafePointer<Float>, _ n: Int, _ d: Int) {
        let key = layer * 4 + site
        if gram[key] == nil { gram[key] = [Double](repeating: 0, count: d * d); dims[key] = d; sample[key] = [] }
        let have = sample[key]!.count / d
        if have < sampleRows {
            sample[key]!.append(contentsOf: UnsafeBufferPointer(start: x, count: min(n, sampleRows - have) * d))
        }
        product(x, x, n, d)  // G = X^T X
        gram[key]!.withUnsafeMutableBufferPointer { gp in
            for i in 0..<(d * d) { gp[i] += Double(scratch[i]) }
        }
        tokens[key, default: 0] += n
    }

    /// scratch[j * d + i] = sum_t a[t][i] b[t][j] for n rows of d (A^T B, stored transposed), with the
    /// float matmul kernel: the rows of A^T are the "weights", those of B^T the "tokens". a == b gives
    /// the Gram matrix (symmetric, so the layout does not matter) transposing only once.
    private func product(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, _ d: Int) {
        if xt.count < n * d { xt = [Float](repeating: 0, count: n * d) }
        if scratch.count < d * d { scratch = [Float](repeating: 0, count: d * d) }
        for t in 0..<n { for c in 0..<d { xt[c * n + t] = b[t * d + c] } }
        let same = a == b
        if !same {
            if at.count < n * d { at = [Float](repeating: 0, count: n * d) }
            for t in 0..<n { for c in 0..<d { at[c * n + t] = a[t * d + c] } }
        }
        xt.withUnsafeBufferPointer { bp in
            at.withUnsafeBufferPointer { ap in
                scratch.withUnsafeMutableBufferPointer { sp in
                    eak_matmul(Int32(EAK_F32), same ? bp.baseAddress! : ap.baseAddress!, n * 4, Int32(d), Int32(n),
                               bp.baseAddress!, Int32(d), sp.baseAddress!, eak_num_cores())
                }
            }
        }
    }

    /// Per-channel importance (mean squared input) and GPTQ's Hessian X^T X / n (damped by 1% of the
    /// mean diagonal; dead channels get 1), both in the Hadamard-rotated basis when rotate > 0.
    func stats(_ key: Int, rotate: Int) -> (importance: [Float], hessian: [Double])? {
        guard let s = dampedStats(key, rotate: rotate) else { return nil }
        return (s.importance, s.hessian)
    }

    /// stats() and what the damping added to each diagonal entry.
    func dampedStats(_ key: Int, rotate: Int) -> (importance: [Float], hessian: [Double], added: [Double])? {
        guard var h = gram[key], let d = dims[key], let n = tokens[key], n > 0 else { return nil }
        for i in 0..<(d * d) { h[i] /= Double(n) }
        if rotate > 0 { rotateBothSides(&h, d, rotate) }
        let imp = (0..<d).map { Float(max(0, h[$0 * d + $0])) + 1e-8 }
        let raw = (0..<d).map { h[$0 * d + $0] }
        var mean = 0.0
        for i in 0..<d { if h[i * d + i] <= 0 { h[i * d + i] = 1 }; mean += h[i * d + i] }
        let damp = 0.01 * mean / Double(d)
        for i in 0..<d { h[i * d + i] += damp }
        return (imp, h, (0..<d).map { h[$0 * d + $0] - raw[$0] })
    }

    /// Xf^T Xq summed over tokens (--float-target): the source model's inputs of a matrix against the
    /// quantized model's, on the same tokens. `differs` stays false while every pair was identical
    /// (layer 0's first site), where the target is W itself.
    var cross: [Int: [Double]] = [:]
    var differs: [Int: Bool] = [:]
    var at: [Float] = []

    func observeCross(_ key: Int, _ xf: UnsafePointer<Float>, _ xq: UnsafePointer<Float>, _ n: Int, _ d: Int) {
        if cross[key] == nil { cross[key] = [Double](repeating: 0, count: d * d) }
        if memcmp(xf, xq, n * d * MemoryLayout<Float>.size) != 0 { differs[key] = true }
        product(xf, xq, n, d)
        cross[key]!.withUnsafeMutableBufferPointer { cp in
            for i in 0..<d { for j in 0..<d { cp[i * d + j] += Double(scratch[j * d + i]) } }
        }
    }

    /// The target a matrix W (rows x d, in the stored basis) is quantized towards: W + beta (W* - W),
    /// W* = argmin ||W' Xq - W Xf||^2 + ||(W' - W) D^(1/2)||^2 = W (C + D)(H + D)^-1, with
    /// H = Xq^T Xq / n, C = Xf^T Xq / n and D GPTQ's damping of H (identical inputs give W exactly).
    /// GPTQ with the Hessian H + D then minimises the same objective over the grid at beta = 1.
    /// nil when the inputs never differed or there are no cross statistics.
    func floatTarget(_ w: [Float], rows: Int, key: Int, rotate: Int, beta: Double) -> [Float]? {
        guard differs[key] == true, var c = cross[key], let d = dims[key], let n = tokens[key],
              let s = dampedStats(key, rotate: rotate) else { return nil }
        for i in 0..<(d * d) { c[i] /= Double(n) }
        if rotate > 0 { rotateBothSides(&c, d, rotate) }
        for i in 0..<d { c[i * d + i] += s.added[i] }
        var l = s.hessian
        let ok = l.withUnsafeMutableBufferPointer { choleskyInPlace($0.baseAddress!, d, parallel: true) }
        if !ok { return nil }
        var out = [Float](repeating: 0, count: rows * d)
        w.withUnsafeBufferPointer { wp in
            c.withUnsafeBufferPointer { cp in
                l.withUnsafeBufferPointer { lp in
                    out.withUnsafeMutableBufferPointer { op in
                        let W = wp.baseAddress!, C = cp.baseAddress!, L = lp.baseAddress!, O = op.baseAddress!
                        parallelFor(rows) { r in
                            // b = W[r] (C + D), then (H + D) x = b by the Cholesky factor: L y = b, L^T x = y
                            var y = [Double](repeating: 0, count: d)
                            let wr = W + r * d
                            for i in 0..<d {
                                let a = Double(wr[i])
                                if a == 0 { continue }
                                let ci = C + i * d
                                for j in 0..<d { y[j] += a * ci[j] }
                            }
                            for i in 0..<d {
                                var v = y[i]
                                let li = L + i * d
                                for k in 0..<i { v -= li[k] * y[k] }
                                y[i] = v / li[i]
                            }
                            for i in stride(from: d - 1, through: 0, by: -1) {
                                var v = y[i]
                                for k in (i + 1)..<max(i + 1, d) { v -= L[k * d + i] * y[k] }
                                y[i] = v / L[i * d + i]
                            }
                            for j in 0..<d {  // W* rounded to float first, then the step towards it
                                O[r * d + j] = Float(Double(wr[j]) + beta * (Double(Float(y[j])) - Double(wr[j])))
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// R M R for a d x d matrix M (row-major) and R the block-diagonal Hadamard of block `rotate`
/// (symmetric, orthonormal): statistics of inputs x in the basis of the rotated inputs R x.
func rotateBothSides(_ h: inout [Double], _ d: Int, _ rotate: Int) {
    var col = [Double](repeating: 0, count: d)
    for r in 0..<d { h.withUnsafeMutableBufferPointer { fwht($0.baseAddress! + r * d, d, rotate) } }
    for c in 0..<d {
        for r in 0..<d { col[r] = h[r * d + c] }
        col.withUnsafeMutableBufferPointer { fwht($0.baseAddress!, d, rotate) }
        for r in 0..<d { h[r * d + c] = col[r] }
    }
}

/// Orthonormal Walsh-Hadamard transform of each block of n (double; same transform as eak_hadamard).
func fwht(_ v: UnsafeMutablePointer<Double>, _ count: Int, _ block: Int) {
    let s = 1 / Double(block).squareRoot()
    var b0 = 0
    while b0 < count {
        var h = 1
        while h < block {
            var i = b0
            while i < b0 + block {
                for j in i..<(i + h) { let a = v[j], c = v[j + h]; v[j] = a + c; v[j + h] = a - c }
                i += 2 * h
            }
            h *= 2
        }
        for j in b0..<(b0 + block) { v[j] *= s }
        b0 += block
    }
}

func readText(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw ConvertError("cannot read '\(path)'") }
    return String(decoding: data, as: UTF8.self)
}

/// Tokens of calibration text the calibration runs over.
let calibrationChunk = 512

/// The calibration texts as chunks of calibrationChunk tokens (BOS first where the model adds one);
/// with no text given, text the source model generates (SelfCalibration.swift).
func calibrationChunks(_ model: Model, _ o: ConvertOptions, log: (String) -> Void) throws -> [[Int32]] {
    if model.hp.series != nil {
        throw ConvertError("calibration texts need a text model; convert series models with --quantizer rtn or search")
    }
    if o.calibFiles.isEmpty {
        let chunks = try generatedCalibration(model, chunks: max(1, o.calibTokens / calibrationChunk), chunk: calibrationChunk,
                                              seed: o.calibSeed, progress: o.progress, log: log)
        if let path = o.saveCalib {
            var bytes: [UInt8] = []
            for c in chunks {
                for t in c where t != model.tokenizer.bos || !model.tokenizer.addBos { bytes += model.tokenizer.piece(t) }
                bytes += Array("\n\n".utf8)
            }
            let tmp = path + ".tmp.\(getpid())"
            guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)), rename(tmp, path) == 0 else {
                unlink(tmp)
                throw ConvertError("cannot write '\(path)'")
            }
        }
        return chunks
    }
    var text = ""
    for f in o.calibFiles { text += try readText(f) + "\n" }
    var bytes = Array(text.utf8)
    let all = bytes.withUnsafeMutableBufferPointer {
        model.tokenizer.encode(UnsafeBufferPointer($0), addBos: false, parseSpecial: false)
    }
    let chunk = calibrationChunk
    let nChunks = min(all.count / chunk, max(1, o.calibTokens / chunk))
    if nChunks < 1 { throw ConvertError("calibration text has \(all.count) tokens; at least \(chunk) are needed") }
    let bos: [Int32] = model.tokenizer.addBos ? [model.tokenizer.bos] : []
    // Spread the chunks evenly over all the text rather than taking its head: with several texts
    // and a budget smaller than their sum, every text contributes (the same chunks as before when
    // the budget covers the whole text).
    let avail = all.count / chunk
    return (0..<nChunks).map { c in
        let s = c * avail / nChunks * chunk
        return bos + Array(all[s..<(s + chunk - bos.count)])
    }
}

/// A session for calibration passes: one chunk at a time, float cache.
func calibrationSession(_ model: Model) throws -> Session {
    var sp = SessionParams()
    sp.nCtx = calibrationChunk
    sp.nBatch = calibrationChunk
    sp.kvBits = 32
    do { return try Session(model: model, params: sp) } catch { throw ConvertError("calibration session: \(error.message)") }
}

/// Statistics of every layer matrix's input from one forward pass of the source model.
func calibrate(_ model: Model, _ o: ConvertOptions, chunks: [[Int32]], log: (String) -> Void) throws -> Calibration {
    let session = try calibrationSession(model)
    let cal = Calibration()
    session.observer = { cal.observe($0, $1, $2, $3, $4) }
    for (c, toks) in chunks.enumerated() {
        session.reset()
        do { try toks.withUnsafeBufferPointer { (p) throws(EAError) in try session.evaluate(p) } } catch {
            throw ConvertError("calibration forward pass: \(error.message)")
        }
        if o.progress { log("\rcalibrating: \(c + 1)/\(chunks.count) chunks of \(calibrationChunk) tokens") }
    }
    if o.progress { log("\n") }
    return cal
}

/// Relative RMS output error ||(Q - W) X|| / ||W X|| on the sample rows, or ||Q - W|| / ||W||.
func relativeError(_ w: [Float], _ q: [Float], rows: Int, cols: Int, sample: [Float]?) -> (Double, Bool) {
    if let x = sample, x.count >= cols {
        let n = x.count / cols
        var diff = [Float](repeating: 0, count: w.count)
        for i in 0..<w.count { diff[i] = q[i] - w[i] }
        var yw = [Float](repeating: 0, count: n * rows), yd = yw
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                yw.withUnsafeMutableBufferPointer {
                    eak_matmul(Int32(EAK_F32), wp.baseAddress!, cols * 4, Int32(rows), Int32(cols), xp.baseAddress!,
                               Int32(n), $0.baseAddress!, eak_num_cores())
                }
            }
            diff.withUnsafeBufferPointer { dp in
                yd.withUnsafeMutableBufferPointer {
                    eak_matmul(Int32(EAK_F32), dp.baseAddress!, cols * 4, Int32(rows), Int32(cols), xp.baseAddress!,
                               Int32(n), $0.baseAddress!, eak_num_cores())
                }
            }
        }
        var a = 0.0, b = 0.0
        for i in 0..<yw.count { a += Double(yd[i]) * Double(yd[i]); b += Double(yw[i]) * Double(yw[i]) }
        return (b > 0 ? (a / b).squareRoot() : 0, true)
    }
    var a = 0.0, b = 0.0
    for i in 0..<w.count { let e = Double(q[i] - w[i]); a += e * e; b += Double(w[i]) * Double(w[i]) }
    return (b > 0 ? (a / b).squareRoot() : 0, false)
}

/// A target that fits rows of `cols` weights: W2 and w4g groups shrink to the largest multiple of 32
/// (at most the requested size) dividing the row; formats that cannot fit fall back to f16.
func fitted(_ target: TargetType, cols: Int) -> TargetType {
    switch target {
    case .w2(let g), .w4g(let g):
        var gg = min(g, cols) / 32 * 32
        while gg >= 32 && cols % gg != 0 { gg -= 32 }
        if gg < 32 { return .f16 }
        if case .w2 = target { return .w2(gg) }
        return .w4g(gg)
    case .w4, .w8:
        return cols % 32 != 0 ? .f16 : target
    default:
        return target
    }
}

/// What one tensor becomes. dims: the logical [cols, rows] (a W2 source tensor is stored as bytes);
/// rotate: the Hadamard block it is stored rotated by; sourceRotation: the block the source matrix
/// was stored rotated by (undone after decoding).
struct ConvertPlan {
    let t: GGUFTensor
    var target: TargetType?
    let isLinear: Bool
    /// A --type override chose the target: --target-bpw leaves it as it is.
    var pinned = false
    /// Name written (nil: the source tensor's); the untied head is token_embd's data as output.weight.
    var name: String? = nil
    var outName: String { name ?? t.name }
    var rotate = 0
    var dims: [Int] = []
    var sourceRotation = 0
    /// The target is the source tensor's own block format (w4 from Q4_1, w8 from Q8_0, unrotated):
    /// its bytes are copied, since quantizing them again can only lose.
    var copy = false
}

/// One converted matrix: its file bytes, its dequantized values (in the stored, rotated basis) and
/// the relative error the summary reports.
struct ConvertedMatrix {
    let bytes: [UInt8]
    let deq: [Float]
    let relError: Double
    let onOutput: Bool
}

/// The source matrix of a plan as floats in its logical basis (rotation of the source undone).
func decodeSource(_ f: GGUFFile, _ p: ConvertPlan) throws -> [Float] {
    let rows = p.dims[1], cols = p.dims[0]
    var w = [Float](repeating: 0, count: rows * cols)
    let ok = w.withUnsafeMutableBufferPointer { dequantizeTensor(f, p.t, into: $0.baseAddress!) }
    if !ok { throw ConvertError("cannot decode tensor '\(p.t.name)' of type \(p.t.type)") }
    if p.sourceRotation > 0 {  // stored as W*H: (W*H)*H = W
        eak_hadamard(&w, Int32(rows), Int32(cols), Int32(p.sourceRotation), 1)
    }
    return w
}

/// Quantizes one matrix to its target with the calibration statistics of its input (if any).
func quantizeTensor(_ f: GGUFFile, _ p: ConvertPlan, _ target: TargetType, _ o: ConvertOptions,
                    cal: Calibration?, site: Int?) throws -> ConvertedMatrix {
    let rows = p.dims[1], cols = p.dims[0]
    var w = try decodeSource(f, p)
    let st = site.flatMap { cal?.stats($0, rotate: p.rotate) }
    let imp = st?.importance
    let hess = o.quantizer == .gptq ? st?.hessian : nil
    var sample = site.flatMap { cal?.sample[$0] }
    if p.rotate > 0 {  // quantize W*H against rotated inputs H*x
        eak_hadamard(&w, Int32(rows), Int32(cols), Int32(p.rotate), 1)
        if var x = sample {
            eak_hadamard(&x, Int32(x.count / cols), Int32(cols), Int32(p.rotate), 1)
            sample = x
        }
    }
    let source = w  // the summary's error stays relative to the source matrix
    if o.floatTarget > 0 && !p.copy, let key = site,
       let t = cal?.floatTarget(w, rows: rows, key: key, rotate: p.rotate, beta: o.floatTarget) {
        w = t
    }
    var bytes: [UInt8]
    var deq: [Float]
    switch target {
    case _ where p.copy: bytes = f.rowLayoutBytes(of: p.t); deq = w
    case .f32: bytes = toF32Bytes(w); deq = w
    case .f16: (bytes, deq) = toF16Bytes(w)
    case .w8: (bytes, deq) = packQ8_0(w)
    case .w4:
        var q = quantizeMatrix(w, rows: rows, cols: cols, bits: 4, group: 32, method: o.quantizer,
                               importance: imp, hessian: hess, actOrder: o.actOrder)
        if o.refine > 0, let hh = hess { _ = refineMatrix(&q, original: w, hessian: hh, rounds: o.refine) }
        bytes = packQ4_1(q); deq = q.dequantized()
    case .w2(let g):
        var q = quantizeMatrix(w, rows: rows, cols: cols, bits: 2, group: g, method: o.quantizer,
                               importance: imp, hessian: hess, actOrder: o.actOrder)
        if o.refine > 0, let hh = hess { _ = refineMatrix(&q, original: w, hessian: hh, rounds: o.refine) }
        bytes = packW2(q); deq = q.dequantized()
    case .w4g(let g):
        var q = quantizeMatrix(w, rows: rows, cols: cols, bits: 4, group: g, method: o.quantizer,
                               importance: imp, hessian: hess, actOrder: o.actOrder)
        if o.refine > 0, let hh = hess { _ = refineMatrix(&q, original: w, hessian: hh, rounds: o.refine) }
        bytes = packW2Planes(q); deq = q.dequantized()
    }
    let (err, onOutput) = relativeError(source, deq, rows: rows, cols: cols, sample: sample)
    return ConvertedMatrix(bytes: bytes, deq: deq, relError: err, onOutput: onOutput)
}

/// Sequential calibration and quantization of every layer matrix (GPTQ's order). The calibration
/// chunks' hidden states are kept (chunks x 512 x n_embd floats); for each layer l in turn, the
/// statistics of its matrices' inputs are gathered by running layer l over those states, its
/// matrices are quantized, and the states are advanced through the quantized layer l (a derived
/// model running the converted bytes as the runtime does: rotation, 8-bit activations, integer
/// kernels). So each layer is fitted to the inputs it sees at run time, errors of the layers before
/// it included, rather than to the source model's.
func quantizeSequentially(_ model: Model, _ plans: [ConvertPlan], _ o: ConvertOptions, chunks: [[Int32]],
                          log: (String) -> Void) throws -> [String: ConvertedMatrix] {
    let f = model.file, hp = model.hp, d = hp.nEmbd, n = calibrationChunk
    let states = UnsafeMutablePointer<Float>.allocate(capacity: chunks.count * n * d)
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * d)
    var owned: [UnsafeMutableRawPointer] = []  // the converted matrices the derived models use
    defer {
        states.deallocate()
        scratch.deallocate()
        for m in owned { m.deallocate() }
    }
    for (c, toks) in chunks.enumerated() {
        toks.withUnsafeBufferPointer { model.embed($0, into: states + c * n * d) }
    }
    // --float-target: the source model's states on the same chunks, advanced beside the quantized
    // ones, and its inputs of the current layer's matrices for the chunk being observed
    let fpStates: UnsafeMutablePointer<Float>? = o.floatTarget > 0 ? .allocate(capacity: chunks.count * n * d) : nil
    defer { fpStates?.deallocate() }
    if let fs = fpStates { fs.update(from: states, count: chunks.count * n * d) }
    let fpSession = o.floatTarget > 0 ? try calibrationSession(model) : nil
    var fpInputs: [[Float]] = [[], [], [], []]
    fpSession?.observer = { _, site, x, rows, cols in
        fpInputs[site].removeAll(keepingCapacity: true)
        fpInputs[site].append(contentsOf: UnsafeBufferPointer(start: x, count: rows * cols))
    }
    var current = model
    var out: [String: ConvertedMatrix] = [:]
    func run(_ session: Session, _ x: UnsafeMutablePointer<Float>, _ l: Int) throws {
        do { try session.runLayers(on: x, n: n, layers: l..<(l + 1)) } catch {
            throw ConvertError("calibration pass of layer \(l): \(error.message)")
        }
    }
    // One observing pass per layer, or with trueSequential one per input site in the order the layer
    // computes them, each after the layer's matrices before it were converted and swapped in.
    let stages: [[Int]] = o.trueSequential ? [[0], [1], [2], [3]] : [[0, 1, 2, 3]]
    let fpScratch: UnsafeMutablePointer<Float>? = fpSession != nil && stages.count > 1 ? .allocate(capacity: n * d) : nil
    defer { fpScratch?.deallocate() }
    for l in 0..<hp.nLayer {
        // statistics of layer l's inputs on the states the quantized layers before it produced
        let cal = Calibration()
        var mats: [String: WeightMatrix] = [:]
        for (si, sites) in stages.enumerated() {
            let observing = try calibrationSession(current)
            observing.observer = { layer, site, x, rows, cols in
                guard sites.contains(site) else { return }
                cal.observe(layer, site, x, rows, cols)
                if fpSession != nil {
                    fpInputs[site].withUnsafeBufferPointer { cal.observeCross(layer * 4 + site, $0.baseAddress!, x, rows, cols) }
                }
            }
            for c in 0..<chunks.count {
                if let fs = fpSession, let fp = fpStates {
                    if si == stages.count - 1 {
                        try run(fs, fp + c * n * d, l)  // source layer l, in place: the source states advance
                    } else if let fx = fpScratch {
                        fx.update(from: fp + c * n * d, count: n * d)
                        try run(fs, fx, l)
                    }
                }
                scratch.update(from: states + c * n * d, count: n * d)
                try run(observing, scratch, l)
            }
            for p in plans {
                guard let target = p.target, let (layer, site) = calibrationSite(p.t.name), layer == l, sites.contains(site) else { continue }
                if o.progress { log("\r[layer \(l + 1)/\(hp.nLayer)] \(p.t.name)" + String(repeating: " ", count: 16)) }
                let conv = try quantizeTensor(f, p, target, o, cal: cal, site: layer * 4 + site)
                out[p.t.name] = ConvertedMatrix(bytes: conv.bytes, deq: [], relError: conv.relError, onOutput: conv.onOutput)
                // the layer as the runtime will run it: the converted bytes, rotation and 8-bit activations
                mats[String(p.t.name.split(separator: ".")[2])] = runtimeMatrix(conv.bytes, target, p, owned: &owned)
            }
            current = current.replacingMatrices(layer: l, mats)
        }
        // advance the states through the quantized layer
        let advancing = try calibrationSession(current)
        for c in 0..<chunks.count { try run(advancing, states + c * n * d, l) }
    }
    // a separate head (--head) is fitted to its input in the quantized model: the final norm of the
    // states every quantized layer has run over
    if o.headType != nil, let p = plans.first(where: { $0.outName == "output.weight" }), let target = p.target {
        if o.progress { log("\r[head] output.weight" + String(repeating: " ", count: 24)) }
        let cal = Calibration(), key = hp.nLayer * 4
        var fpNorm = [Float](repeating: 0, count: fpStates == nil ? 0 : n * d)
        for c in 0..<chunks.count {
            model.finalNorm(states + c * n * d, n: n, into: scratch, threads: Int(eak_num_cores()))
            cal.observe(hp.nLayer, 0, scratch, n, d)
            if let fp = fpStates {
                fpNorm.withUnsafeMutableBufferPointer {
                    model.finalNorm(fp + c * n * d, n: n, into: $0.baseAddress!, threads: Int(eak_num_cores()))
                    cal.observeCross(key, $0.baseAddress!, scratch, n, d)
                }
            }
        }
        let conv = try quantizeTensor(f, p, target, o, cal: cal, site: key)
        out[p.outName] = ConvertedMatrix(bytes: conv.bytes, deq: [], relError: conv.relError, onOutput: conv.onOutput)
    }
    if o.progress { log("\n") }
    return out
}

public func convert(_ o: ConvertOptions, log: (String) -> Void) throws -> [TensorReport] {
    let model: Model
    do { model = try Model(path: o.input) } catch { throw ConvertError("\(error.status.text): \(error.message)") }
    let f = model.file
    if o.group < 32 || o.group % 32 != 0 { throw ConvertError("group size \(o.group) must be a multiple of 32") }
    if o.rotate != 0 && (o.rotate < 2 || o.rotate > 4096 || o.rotate & (o.rotate - 1) != 0) {
        throw ConvertError("--rotate \(o.rotate) must be a power of two (or 0)")
    }
    let needCalib = o.quantizer == .imatrix || o.quantizer == .gptq
    if (needCalib || o.sequential) && model.hp.series != nil {
        throw ConvertError("quantizer '\(o.quantizer.rawValue)'\(o.sequential ? " with --sequential" : "") calibrates on text; "
            + "convert series models with --quantizer rtn or search")
    }
    if o.floatTarget != 0 && !o.sequential { throw ConvertError("--float-target needs --sequential") }
    if !(o.floatTarget >= 0 && o.floatTarget <= 1) { throw ConvertError("--float-target \(o.floatTarget) must be in (0, 1]") }
    if o.trueSequential && !o.sequential { throw ConvertError("--true-sequential needs --sequential") }

    // Policy: what each tensor becomes.
    var plans: [ConvertPlan] = []
    let linearDefault = o.linearType ?? .w2(o.group)
    for t in f.tensors {
        let isMatrix = t.dims.count == 2 && t.name.hasSuffix(".weight")
        if !isMatrix { plans.append(ConvertPlan(t: t, target: nil, isLinear: false)); continue }
        let isEmbed = t.name == "token_embd.weight" || t.name == "output.weight"
        var target = isEmbed ? o.embedType : linearDefault
        var pinned = false
        for (pat, ty) in o.overrides where glob(pat, t.name) { target = ty; pinned = true }
        let dims = logicalDims(f, t), cols = dims[0]
        target = fitted(target, cols: cols)
        if case .w4g = target, t.name == "token_embd.weight" {
            throw ConvertError("token_embd.weight cannot be w4g: its rows are looked up, and two-plane rows are only multiplied")
        }
        // --head applies to a source's own head too; decided before `copy`, which depends on the target
        if let ht = o.headType, t.name == "output.weight" { target = fitted(ht, cols: cols) }
        let linear = t.name.hasPrefix("blk.")
        let srcRot = (try? f.int(Model.rotationKey(t.name))) ?? 0
        let copy = srcRot == 0
            && ((target == .w4 && t.type == Int32(EAK_Q4_1)) || (target == .w8 && t.type == Int32(EAK_Q8_0)))
        var rot = linear && !copy ? o.rotate : 0  // largest power of two <= --rotate dividing the row
        while rot > 1 && cols % rot != 0 { rot /= 2 }
        if rot < 2 { rot = 0 }
        if srcRot != 0 && (srcRot < 2 || srcRot & (srcRot - 1) != 0 || cols % srcRot != 0) {
            throw ConvertError("source tensor '\(t.name)': bad rotation block \(srcRot)")
        }
        plans.append(ConvertPlan(t: t, target: target, isLinear: linear, pinned: pinned, rotate: rot, dims: dims,
                                 sourceRotation: srcRot, copy: copy))
    }
    if let ht = o.headType, !f.tensors.contains(where: { $0.name == "output.weight" }) {
        guard let e = plans.first(where: { $0.t.name == "token_embd.weight" }), e.target != nil else {
            throw ConvertError("--head: the source has neither output.weight nor a token_embd.weight matrix")
        }
        if e.sourceRotation != 0 { throw ConvertError("--head: token_embd.weight is stored rotated") }
        if case .w2 = ht { throw ConvertError("--head takes w4, w4g<N>, w8, f16 or f32") }
        if e.dims[0] % 32 != 0, ht != .f16 && ht != .f32 {
            throw ConvertError("--head: rows of \(e.dims[0]) are not a multiple of 32")
        }
        let ht = fitted(ht, cols: e.dims[0])
        let copy = (ht == .w4 && e.t.type == Int32(EAK_Q4_1)) || (ht == .w8 && e.t.type == Int32(EAK_Q8_0))
        plans.append(ConvertPlan(t: e.t, target: ht, isLinear: false, name: "output.weight", dims: e.dims,
                                 copy: copy && !needCalib && o.calibFiles.isEmpty))
    }

    // Calibration: one pass of the source model, or layer by layer with the quantization itself.
    var cal: Calibration? = nil
    var done: [String: ConvertedMatrix] = [:]
    // The default bit allocation probes with text; a series model (numbers in) keeps its formats.
    let targetBpw = o.targetBpwIsDefault && model.hp.series != nil ? nil : o.targetBpw
    let chunks = needCalib || o.sequential || targetBpw != nil || !o.calibFiles.isEmpty
        ? try calibrationChunks(model, o, log: log) : []
    if let bpw = targetBpw {
        let a = try allocateBits(model, &plans, target: bpw, chunks: chunks, o, log: log)
        log("bit allocation: \(a.upgraded.count) matrices at 4 bits, linear layers \(String(format: "%.4f", a.bitsPerWeight)) "
            + "bits/weight (target \(bpw))\n")
        if o.progress {
            let up = a.units.filter { $0.upgraded }.sorted { $0.kl > $1.kl }
            log("  4 bits, most sensitive first: " + up.map { $0.name }.joined(separator: ", ") + "\n")
        }
    }
    if o.sequential {
        done = try quantizeSequentially(model, plans, o, chunks: chunks, log: log)
    } else if needCalib || !o.calibFiles.isEmpty {
        cal = try calibrate(model, o, chunks: chunks, log: log)
    }

    // Metadata: the source's entries verbatim (minus its file type and the keys a conversion writes:
    // a converted file may be converted again), then ours. The model description of architecture
    // "edgeattn" (edgeattn.block_count, layer_kinds, series.* ...) is kept.
    let alignment = f.alignment
    let writer = GGUFWriter(path: o.output, alignment: alignment)
    func written(_ k: String) -> Bool {
        k == "general.file_type" || k == "edgeattn.format_version" || k == "edgeattn.quantizer" || k == "edgeattn.kv_bits"
            || k.hasPrefix("edgeattn.w2.") || k.hasPrefix("edgeattn.rotation.")
    }
    for (i, k) in f.metadataKeys.enumerated() where !written(k) {
        let r = f.metadataRanges[i]
        writer.addRawKV(UnsafeRawBufferPointer(start: f.base + r.lowerBound, count: r.count))
    }
    writer.addU32("edgeattn.format_version", 1)
    writer.addString("edgeattn.quantizer", o.quantizer.rawValue)
    writer.addU32("edgeattn.w2.default_group_size", UInt32(o.group))
    writer.addU32("edgeattn.kv_bits", 4)  // converted files run with the 4-bit KV cache by default
    for p in plans {
        let info: GGUFWriter.TensorInfo
        if let target = p.target {
            if case .w2(let g) = target { writer.addU32(Model.w2GroupKey(p.outName), UInt32(g)) }
            if case .w4g(let g) = target {
                writer.addU32(Model.w2GroupKey(p.outName), UInt32(g))
                writer.addU32(Model.w2PlanesKey(p.outName), 2)
            }
            if p.rotate > 0 { writer.addU32(Model.rotationKey(p.t.name), UInt32(p.rotate)) }
            let s = target.storage(rows: p.dims[1], cols: p.dims[0])
            info = .init(name: p.outName, dims: s.dims, type: s.type, bytes: s.bytes)
        } else {
            info = .init(name: p.t.name, dims: p.t.dims, type: UInt32(p.t.type), bytes: p.t.byteCount)
        }
        writer.addTensor(info)
    }

    var reports: [TensorReport] = []
    do {
        try writer.begin()
        let total = plans.count
        for (idx, p) in plans.enumerated() {
            if o.progress {
                let w = 30, n = w * idx / max(1, total)
                log("\r[" + String(repeating: "#", count: n) + String(repeating: ".", count: w - n)
                    + "] \(idx + 1)/\(total) \(p.outName)" + String(repeating: " ", count: 12))
            }
            guard let target = p.target else {
                if f.isQ4Panels(p.t.name) {  // the file's row layout, not this process's panels
                    try f.rowLayoutBytes(of: p.t).withUnsafeBytes { try writer.writeTensor($0) }
                } else {
                    try writer.writeTensor(UnsafeRawBufferPointer(start: f.data(of: p.t), count: p.t.byteCount))
                }
                continue
            }
            let site = p.outName == "output.weight" && o.headType != nil ? model.hp.nLayer * 4 : calibrationSite(p.t.name).map { $0.0 * 4 + $0.1 }
            let conv = try done.removeValue(forKey: p.outName) ?? quantizeTensor(f, p, target, o, cal: cal, site: site)
            try conv.bytes.withUnsafeBytes { try writer.writeTensor($0) }
            reports.append(TensorReport(name: p.outName, type: target.name, elements: p.dims[0] * p.dims[1],
                                        bytes: conv.bytes.count, isLinear: p.isLinear, relError: conv.relError,
                                        outputError: conv.onOutput))
        }
        if o.progress { log("\r[" + String(repeating: "#", count: 30) + "] done" + String(repeating: " ", count: 40) + "\n") }
        try writer.finish()
    } catch {
        writer.abandon()
        throw error
    }
    return reports
}
