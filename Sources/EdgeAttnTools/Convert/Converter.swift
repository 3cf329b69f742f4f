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
    /// Format of the token embedding and output head, and of every other matrix.
    public var embedType: TargetType = .w8
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
        // G = X^T X with the float matmul kernel: rows of X^T are both the "weights" and the "tokens"
        if xt.count < n * d { xt = [Float](repeating: 0, count: n * d) }
        if scratch.count < d * d { scratch = [Float](repeating: 0, count: d * d) }
        for t in 0..<n { for c in 0..<d { xt[c * n + t] = x[t * d + c] } }
        xt.withUnsafeBufferPointer { xp in
            scratch.withUnsafeMutableBufferPointer { sp in
                eak_matmul(Int32(EAK_F32), xp.baseAddress!, n * 4, Int32(d), Int32(n), xp.baseAddress!, Int32(d),
                           sp.baseAddress!, eak_num_cores())
            }
        }
        gram[key]!.withUnsafeMutableBufferPointer { gp in
            for i in 0..<(d * d) { gp[i] += Double(scratch[i]) }
        }
        tokens[key, default: 0] += n
    }

    /// Per-channel importance (mean squared input) and GPTQ's Hessian X^T X / n (damped by 1% of the
    /// mean diagonal; dead channels get 1), both in the Hadamard-rotated basis when rotate > 0.
    func stats(_ key: Int, rotate: Int) -> (importance: [Float], hessian: [Double])? {
        guard var h = gram[key], let d = dims[key], let n = tokens[key], n > 0 else { return nil }
        for i in 0..<(d * d) { h[i] /= Double(n) }
        if rotate > 0 {  // R H R with R block-diagonal Hadamard: rows, then columns
            var col = [Double](repeating: 0, count: d)
            for r in 0..<d { h.withUnsafeMutableBufferPointer { fwht($0.baseAddress! + r * d, d, rotate) } }
            for c in 0..<d {
                for r in 0..<d { col[r] = h[r * d + c] }
                col.withUnsafeMutableBufferPointer { fwht($0.baseAddress!, d, rotate) }
                for r in 0..<d { h[r * d + c] = col[r] }
            }
        }
        let imp = (0..<d).map { Float(max(0, h[$0 * d + $0])) + 1e-8 }
        var mean = 0.0
        for i in 0..<d { if h[i * d + i] <= 0 { h[i * d + i] = 1 }; mean += h[i * d + i] }
        let damp = 0.01 * mean / Double(d)
        for i in 0..<d { h[i * d + i] += damp }
        return (imp, h)
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

func calibrate(_ model: Model, _ o: ConvertOptions, log: (String) -> Void) throws -> Calibration {
    if model.hp.series != nil {
        throw ConvertError("calibration texts need a text model; convert series models with --quantizer rtn or search")
    }
    var text = ""
    for f in o.calibFiles { text += try readText(f) + "\n" }
    var bytes = Array(text.utf8)
    let all = bytes.withUnsafeMutableBufferPointer {
        model.tokenizer.encode(UnsafeBufferPointer($0), addBos: false, parseSpecial: false)
    }
    let chunk = 512
    let nChunks = min(all.count / chunk, max(1, o.calibTokens / chunk))
    if nChunks < 1 { throw ConvertError("calibration text has \(all.count) tokens; at least \(chunk) are needed") }
    var sp = SessionParams()
    sp.nCtx = chunk
    sp.nBatch = chunk
    sp.kvBits = 32
    let session: Session
    do { session = try Session(model: model, params: sp) } catch { throw ConvertError("calibration session: \(error.message)") }
    let cal = Calibration()
    session.observer = { cal.observe($0, $1, $2, $3, $4) }
    let bos: [Int32] = model.tokenizer.addBos ? [model.tokenizer.bos] : []
    for c in 0..<nChunks {
        session.reset()
        let toks = bos + Array(all[(c * chunk)..<((c + 1) * chunk - bos.count)])
        do { try toks.withUnsafeBufferPointer { (p) throws(EAError) in try session.evaluate(p) } } catch {
            throw ConvertError("calibration forward pass: \(error.message)")
        }
        if o.progress { log("\rcalibrating: \(c + 1)/\(nChunks) chunks of \(chunk) tokens") }
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

public func convert(_ o: ConvertOptions, log: (String) -> Void) throws -> [TensorReport] {
    let model: Model
    do { model = try Model(path: o.input) } catch { throw ConvertError("\(error.status.text): \(error.message)") }
    let f = model.file
    if o.group < 32 || o.group % 32 != 0 { throw ConvertError("group size \(o.group) must be a multiple of 32") }
    if o.rotate != 0 && (o.rotate < 2 || o.rotate > 4096 || o.rotate & (o.rotate - 1) != 0) {
        throw ConvertError("--rotate \(o.rotate) must be a power of two (or 0)")
    }
    let needCalib = o.quantizer == .imatrix || o.quantizer == .gptq
    if needCalib && o.calibFiles.isEmpty { throw ConvertError("quantizer '\(o.quantizer.rawValue)' needs --calib TEXT") }
    let cal: Calibration? = o.calibFiles.isEmpty ? nil : try calibrate(model, o, log: log)

    // Policy: what each tensor becomes.
    // dims: the logical [cols, rows] (a W2 source tensor is stored as bytes); sourceRotation: the
    // Hadamard block a source matrix was stored rotated by (undone after decoding)
    struct Plan { let t: GGUFTensor; let target: TargetType?; let isLinear: Bool; var rotate = 0; var dims: [Int] = []
                  var sourceRotation = 0 }
    var plans: [Plan] = []
    let linearDefault = o.linearType ?? .w2(o.group)
    for t in f.tensors {
        let isMatrix = t.dims.count == 2 && t.name.hasSuffix(".weight")
        if !isMatrix { plans.append(Plan(t: t, target: nil, isLinear: false)); continue }
        let isEmbed = t.name == "token_embd.weight" || t.name == "output.weight"
        var target = isEmbed ? o.embedType : linearDefault
        for (pat, ty) in o.overrides where glob(pat, t.name) { target = ty }
        let dims = logicalDims(f, t), cols = dims[0]
        switch target {
        case .w2(let g):
            var gg = min(g, cols) / 32 * 32
            while gg >= 32 && cols % gg != 0 { gg -= 32 }
            target = gg >= 32 ? .w2(gg) : .f16
        case .w4, .w8:
            if cols % 32 != 0 { target = .f16 }
        default: break
        }
        let linear = t.name.hasPrefix("blk.")
        var rot = linear ? o.rotate : 0  // largest power of two <= --rotate dividing the row
        while rot > 1 && cols % rot != 0 { rot /= 2 }
        if rot < 2 { rot = 0 }
        let srcRot = (try? f.int(Model.rotationKey(t.name))) ?? 0
        if srcRot != 0 && (srcRot < 2 || srcRot & (srcRot - 1) != 0 || cols % srcRot != 0) {
            throw ConvertError("source tensor '\(t.name)': bad rotation block \(srcRot)")
        }
        plans.append(Plan(t: t, target: target, isLinear: linear, rotate: rot, dims: dims, sourceRotation: srcRot))
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
            if case .w2(let g) = target { writer.addU32(Model.w2GroupKey(p.t.name), UInt32(g)) }
            if p.rotate > 0 { writer.addU32(Model.rotationKey(p.t.name), UInt32(p.rotate)) }
            let s = target.storage(rows: p.dims[1], cols: p.dims[0])
            info = .init(name: p.t.name, dims: s.dims, type: s.type, bytes: s.bytes)
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
                let w = 30, done = w * idx / max(1, total)
                log("\r[" + String(repeating: "#", count: done) + String(repeating: ".", count: w - done)
                    + "] \(idx + 1)/\(total) \(p.t.name)" + String(repeating: " ", count: 12))
            }
            guard let target = p.target else {
                try writer.writeTensor(UnsafeRawBufferPointer(start: f.data(of: p.t), count: p.t.byteCount))
                continue
            }
            let rows = p.dims[1], cols = p.dims[0]
            var w = [Float](repeating: 0, count: rows * cols)
            let ok = w.withUnsafeMutableBufferPointer { dequantizeTensor(f, p.t, into: $0.baseAddress!) }
            if !ok { throw ConvertError("cannot decode tensor '\(p.t.name)' of type \(p.t.type)") }
            if p.sourceRotation > 0 {  // stored as W*H: (W*H)*H = W
                eak_hadamard(&w, Int32(rows), Int32(cols), Int32(p.sourceRotation))
            }
            let site = calibrationSite(p.t.name).map { $0.0 * 4 + $0.1 }
            let st = site.flatMap { cal?.stats($0, rotate: p.rotate) }
            let imp = st?.importance
            let hess = o.quantizer == .gptq ? st?.hessian : nil
            var sample = site.flatMap { cal?.sample[$0] }
            if p.rotate > 0 {  // quantize W*H against rotated inputs H*x
                eak_hadamard(&w, Int32(rows), Int32(cols), Int32(p.rotate))
                if var x = sample {
                    eak_hadamard(&x, Int32(x.count / cols), Int32(cols), Int32(p.rotate))
                    sample = x
                }
            }
            var bytes: [UInt8]
            var deq: [Float]
            switch target {
            case .f32: bytes = toF32Bytes(w); deq = w
            case .f16: (bytes, deq) = toF16Bytes(w)
            case .w8: (bytes, deq) = packQ8_0(w)
            case .w4:
                var q = quantizeMatrix(w, rows: rows, cols: cols, bits: 4, group: 32, method: o.quantizer,
                                       importance: imp, hessian: hess)
                if o.refine > 0, let hh = hess { _ = refineMatrix(&q, original: w, hessian: hh, rounds: o.refine) }
                bytes = packQ4_1(q); deq = q.dequantized()
            case .w2(let g):
                var q = quantizeMatrix(w, rows: rows, cols: cols, bits: 2, group: g, method: o.quantizer,
                                       importance: imp, hessian: hess)
                if o.refine > 0, let hh = hess { _ = refineMatrix(&q, original: w, hessian: hh, rounds: o.refine) }
                bytes = packW2(q); deq = q.dequantized()
            }
            let (err, onOutput) = relativeError(w, deq, rows: rows, cols: cols, sample: sample)
            try bytes.withUnsafeBytes { try writer.writeTensor($0) }
            reports.append(TensorReport(name: p.t.name, type: target.name, elements: rows * cols, bytes: bytes.count,
                                        isLinear: p.isLinear, relError: err, outputError: onOutput))
        }
        if o.progress { log("\r[" + String(repeating: "#", count: 30) + "] done" + String(repeating: " ", count: 40) + "\n") }
        try writer.finish()
    } catch {
        writer.abandon()
        throw error
    }
    return reports
}
