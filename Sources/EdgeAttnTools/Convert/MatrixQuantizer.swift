import Dispatch
import EAKernels

/// Storage formats the converter writes.
public enum TargetType: Equatable {
    case f32, f16
    /// ggml Q8_0: symmetric 8-bit, blocks of 32.
    case w8
    /// ggml Q4_1: asymmetric 4-bit, blocks of 32 (scale and offset per block).
    case w4
    /// libedgeattn W2 with this group size (see ea_kernels.h).
    case w2(Int)
    /// Asymmetric 4-bit groups of this size stored as two W2 planes (high and low code bits; see
    /// WeightMatrix.planes): 4 + 64/group bits per weight, on the W2 kernels.
    case w4g(Int)

    public var name: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .w8: return "w8 (q8_0)"
        case .w4: return "w4 (q4_1)"
        case .w2(let g): return "w2 g\(g)"
        case .w4g(let g): return "w4 g\(g)"
        }
    }

    /// Parses "f32", "f16", "w8", "w4", "w2" (group from the default), "w2g128", "w4g" (group from
    /// the default) or "w4g576" (4-bit groups of 576 in two W2 planes).
    public static func parse(_ s: String, defaultGroup: Int) -> TargetType? {
        switch s.lowercased() {
        case "f32": return .f32
        case "f16": return .f16
        case "w8", "q8_0": return .w8
        case "w4", "q4_1": return .w4
        case "w2": return .w2(defaultGroup)
        case "w4g": return .w4g(defaultGroup)
        default:
            if s.hasPrefix("w2g"), let g = Int(s.dropFirst(3)), g >= 32, g % 32 == 0 { return .w2(g) }
            if s.hasPrefix("w4g"), let g = Int(s.dropFirst(3)), g >= 32, g % 32 == 0 { return .w4g(g) }
            return nil
        }
    }

    /// GGUF type id and ggml dims of a [rows x cols] matrix stored in this format.
    func storage(rows: Int, cols: Int) -> (type: UInt32, dims: [Int], bytes: Int) {
        switch self {
        case .f32: return (0, [cols, rows], rows * cols * 4)
        case .f16: return (1, [cols, rows], rows * cols * 2)
        case .w8: return (UInt32(EAK_Q8_0), [cols, rows], rows * cols / 32 * 34)
        case .w4: return (UInt32(EAK_Q4_1), [cols, rows], rows * cols / 32 * 20)
        case .w2(let g):
            let rb = Int(eak_w2_row_bytes(Int32(cols), Int32(g)))
            return (UInt32(EAK_I8), [rb, rows], rb * rows)
        case .w4g(let g):
            let rb = Int(eak_w2_row_bytes(Int32(2 * cols), Int32(g)))
            return (UInt32(EAK_I8), [rb, rows], rb * rows)
        }
    }
}

/// Runs body(i) for i in 0..<n on all cores, in contiguous chunks.
func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    let workers = max(1, min(Int(eak_num_cores()), n))
    if workers == 1 { for i in 0..<n { body(i) }; return }
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = n * w / workers, hi = n * (w + 1) / workers
        for i in lo..<hi { body(i) }
    }
}

/// Upper-triangular U with U^T U = H^-1 (GPTQ's factor), H symmetric positive definite (n x n,
/// row-major, destroyed). Computed as the inverse of J chol(J H J) J (J = reversal), which needs one
/// Cholesky and one triangular inverse. Returns nil if H is not positive definite.
func gptqFactor(_ h: inout [Double], _ n: Int) -> [Double]? {
    // Lower Cholesky of the reversed matrix R = J H J, in place in `l`.
    var l = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0...i { l[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
    if !l.withUnsafeMutableBufferPointer({ choleskyInPlace($0.baseAddress!, n, parallel: true) }) { return nil }
    // A = J L J is upper triangular with H = A A^T; U = A^-1 (upper). Invert L (lower) then reverse.
    var lit = [Double](repeating: 0, count: n * n)  // (L^-1)^T: column c of L^-1 is row c here
    l.withUnsafeBufferPointer { lp in
        lit.withUnsafeMutableBufferPointer { ip in
            let L = lp.baseAddress!, T = ip.baseAddress!
            parallelFor(n) { c in  // column c of L^-1 by forward substitution
                let col = T + c * n
                col[c] = 1 / L[c * n + c]
                if c + 1 < n {
                    for i in (c + 1)..<n {
                        var s = 0.0
                        let li = L + i * n
                        for k in c..<i { s -= li[k] * col[k] }
                        col[i] = s / li[i]
                    }
                }
            }
        }
    }
    var u = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in i..<n { u[i * n + j] = lit[(n - 1 - j) * n + (n - 1 - i)] } }
    return u
}

/// Lower Cholesky factor of the symmetric positive definite n x n matrix at L (row-major; the lower
/// triangle is read and overwritten). Rows of a column on all cores when `parallel` (GPTQ's large
/// Hessians); false if the matrix is not positive definite.
func choleskyInPlace(_ L: UnsafeMutablePointer<Double>, _ n: Int, parallel: Bool) -> Bool {
    for j in 0..<n {
        var s = L[j * n + j]
        for k in 0..<j { s -= L[j * n + k] * L[j * n + k] }
        if !(s > 0) { return false }
        let d = s.squareRoot()
        L[j * n + j] = d
        let inv = 1 / d
        let column = { (t: Int) in
            let i = j + 1 + t
            var v = L[i * n + j]
            let ri = L + i * n, rj = L + j * n
            for k in 0..<j { v -= ri[k] * rj[k] }
            L[i * n + j] = v * inv
        }
        if parallel { parallelFor(n - j - 1, column) } else { for t in 0..<(n - j - 1) { column(t) } }
    }
    return true
}

/// Every group of every row of W (rows x cols, row-major) fitted on W itself: the non-GPTQ quantizers'
/// parameters, and act-order GPTQ's static groups.
func fitRowGroups(_ W: UnsafePointer<Float>, rows: Int, cols: Int, group: Int, weights ip: UnsafePointer<Float>?,
                  qmax: Int, search: Bool, into P: UnsafeMutablePointer<GroupParams>) {
    let ng = cols / group
    parallelFor(rows) { r in
        for g in 0..<ng {
            P[r * ng + g] = fitGroup(W + r * cols + g * group, n: group, weights: ip.map { $0 + g * group },
                                     qmax: qmax, search: search)
        }
    }
}

/// A quantized matrix before packing: codes and per-group parameters (row-major).
struct QuantizedMatrix {
    let rows: Int, cols: Int, group: Int, qmax: Int
    var codes: [UInt8]
    var params: [GroupParams]

    func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        let ng = cols / group
        for r in 0..<rows {
            for c in 0..<cols { out[r * cols + c] = params[r * ng + c / group].value(Int(codes[r * cols + c])) }
        }
        return out
    }
}

/// Quantizes W (rows x cols, row-major) to asymmetric `bits`-bit groups of `group` columns.
/// importance: per-column weights (imatrix) or nil; hessian: cols x cols (GPTQ) or nil.
/// actOrder (GPTQ only): columns in order of decreasing Hessian diagonal, so the columns with the
/// largest inputs are quantized first and their errors land on the quieter ones; the group parameters
/// are then fitted once on the unmodified weights ("static groups"), since a group's columns are no
/// longer quantized together.
func quantizeMatrix(_ w: [Float], rows: Int, cols: Int, bits: Int, group: Int, method: Quantizer,
                    importance: [Float]?, hessian: [Double]?, actOrder: Bool = false) -> QuantizedMatrix {
    let qmax = (1 << bits) - 1, ng = cols / group
    var qm = QuantizedMatrix(rows: rows, cols: cols, group: group, qmax: qmax,
                             codes: [UInt8](repeating: 0, count: rows * cols),
                             params: [GroupParams](repeating: GroupParams(d: 0, m: 0), count: rows * ng))
    let search = method != .rtn
    let imp: [Float]? = method == .imatrix || method == .gptq ? importance : nil

    var perm = Array(0..<cols)
    var hp = hessian
    if method == .gptq, actOrder, let h = hessian {
        perm.sort { h[$0 * cols + $0] != h[$1 * cols + $1] ? h[$0 * cols + $0] > h[$1 * cols + $1] : $0 < $1 }
        var p = [Double](repeating: 0, count: cols * cols)
        for i in 0..<cols { for j in 0..<cols { p[i * cols + j] = h[perm[i] * cols + perm[j]] } }
        hp = p
    }
    if method == .gptq, var h = hp, let u = gptqFactor(&h, cols) {
        // Work on W^T (columns in processing order) so each column is contiguous; the error of the
        // i-th processed column goes to the columns processed after it.
        var wt = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows { for i in 0..<cols { wt[i * rows + r] = w[r * cols + perm[i]] } }
        var err = [Float](repeating: 0, count: rows)
        wt.withUnsafeMutableBufferPointer { wtp in
            qm.codes.withUnsafeMutableBufferPointer { cp in
                qm.params.withUnsafeMutableBufferPointer { pp in
                    err.withUnsafeMutableBufferPointer { ep in
                        imp.withOptionalPointer { ip in
                            let W = wtp.baseAddress!, C = cp.baseAddress!, P = pp.baseAddress!, E = ep.baseAddress!
                            let step = { (i: Int) in
                                let col = W + i * rows, c = perm[i], g = c / group, uii = Float(u[i * cols + i])
                                for r in 0..<rows {
                                    let p = P[r * ng + g], q = p.code(col[r], qmax: qmax)
                                    C[r * cols + c] = UInt8(q)
                                    E[r] = (col[r] - p.value(q)) / uii
                                }
                                let rest = cols - i - 1
                                if rest == 0 { return }
                                parallelFor(rest) { t in
                                    let j = i + 1 + t
                                    let f = Float(u[i * cols + j])
                                    if f == 0 { return }
                                    let cj = W + j * rows
                                    for r in 0..<rows { cj[r] -= f * E[r] }
                                }
                            }
                            if actOrder {
                                w.withUnsafeBufferPointer { fitRowGroups($0.baseAddress!, rows: rows, cols: cols, group: group,
                                                                         weights: ip, qmax: qmax, search: true, into: P) }
                                for i in 0..<cols { step(i) }
                            } else {
                                for g in 0..<ng {
                                    let c0 = g * group
                                    parallelFor(rows) { r in
                                        P[r * ng + g] = fitGroup(W + c0 * rows + r, stride: rows, n: group,
                                                                 weights: ip.map { $0 + c0 }, qmax: qmax, search: true)
                                    }
                                    for i in c0..<(c0 + group) { step(i) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return qm
    }

    w.withUnsafeBufferPointer { wp in
        qm.codes.withUnsafeMutableBufferPointer { cp in
            qm.params.withUnsafeMutableBufferPointer { pp in
                imp.withOptionalPointer { ip in
                    let W = wp.baseAddress!, C = cp.baseAddress!, P = pp.baseAddress!
                    fitRowGroups(W, rows: rows, cols: cols, group: group, weights: ip, qmax: qmax, search: search, into: P)
                    parallelFor(rows) { r in
                        for c in 0..<cols { C[r * cols + c] = UInt8(P[r * ng + c / group].code(W[r * cols + c], qmax: qmax)) }
                    }
                }
            }
        }
    }
    return qm
}

extension Optional where Wrapped == [Float] {
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
    }
}

// ---- packing into the file formats ------------------------------------------------------------

@inline(__always) func putHalf(_ out: inout [UInt8], _ at: Int, _ v: Float) {
    let h = eak_f32_to_f16(v)
    out[at] = UInt8(h & 0xFF)
    out[at + 1] = UInt8(h >> 8)
}

/// W2 rows: per group fp16 d, fp16 m, then 8-byte chunks (element j at byte j % 8, bits 2*(j/8)).
func packW2(_ q: QuantizedMatrix) -> [UInt8] {
    let rb = Int(eak_w2_row_bytes(Int32(q.cols), Int32(q.group))), ng = q.cols / q.group, gb = 4 + q.group / 4
    var out = [UInt8](repeating: 0, count: rb * q.rows)
    for r in 0..<q.rows {
        for g in 0..<ng {
            let base = r * rb + g * gb, p = q.params[r * ng + g]
            putHalf(&out, base, p.d)
            putHalf(&out, base + 2, p.m)
            for e in 0..<q.group {
                let code = q.codes[r * q.cols + g * q.group + e]
                let c = e / 32, j = e % 32
                out[base + 4 + 8 * c + (j & 7)] |= code << UInt8(2 * (j >> 3))
            }
        }
    }
    return out
}

/// 4-bit codes q as two W2 planes: a row's groups of q >> 2 with scale 4d and offset m, then its
/// groups of q & 3 with scale d and offset 0; their sum is q * d + m. 4d is exact in fp16 (d is an
/// fp16 value, and the quantizer keeps 4d finite).
func packW2Planes(_ q: QuantizedMatrix) -> [UInt8] {
    precondition(q.qmax == 15)
    // one W2 matrix of 2 * cols columns: row r = [q >> 2 | q & 3], groups [(4d, m) | (d, 0)]
    let ng = q.cols / q.group
    var w2 = QuantizedMatrix(rows: q.rows, cols: 2 * q.cols, group: q.group, qmax: 3,
                             codes: [UInt8](repeating: 0, count: 2 * q.codes.count),
                             params: [GroupParams](repeating: GroupParams(d: 0, m: 0), count: 2 * q.params.count))
    for r in 0..<q.rows {
        for c in 0..<q.cols {
            let code = q.codes[r * q.cols + c]
            w2.codes[2 * r * q.cols + c] = code >> 2
            w2.codes[(2 * r + 1) * q.cols + c] = code & 3
        }
        for g in 0..<ng {
            let p = q.params[r * ng + g]
            w2.params[2 * r * ng + g] = GroupParams(d: 4 * p.d, m: p.m)
            w2.params[(2 * r + 1) * ng + g] = GroupParams(d: p.d, m: 0)
        }
    }
    return packW2(w2)
}

/// ggml Q4_1 blocks of 32: fp16 d, fp16 m, 16 bytes (element j low nibble of byte j, j+16 high).
func packQ4_1(_ q: QuantizedMatrix) -> [UInt8] {
    precondition(q.group == 32 && q.qmax == 15)
    let nb = q.rows * q.cols / 32
    var out = [UInt8](repeating: 0, count: nb * 20)
    for b in 0..<nb {
        let p = q.params[b], base = b * 20
        putHalf(&out, base, p.d)
        putHalf(&out, base + 2, p.m)
        for j in 0..<16 { out[base + 4 + j] = q.codes[b * 32 + j] | (q.codes[b * 32 + j + 16] << 4) }
    }
    return out
}

/// ggml Q8_0 by rounding (8 bits lose nothing a search would recover): d = max|x|/127.
func packQ8_0(_ w: [Float]) -> (bytes: [UInt8], dequantized: [Float]) {
    let nb = w.count / 32
    var out = [UInt8](repeating: 0, count: nb * 34), deq = [Float](repeating: 0, count: w.count)
    for b in 0..<nb {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(w[b * 32 + j])) }
        let d = roundHalf(amax / 127), id: Float = d > 0 ? 1 / d : 0
        putHalf(&out, b * 34, d)
        for j in 0..<32 {
            let q = max(-127, min(127, Int((w[b * 32 + j] * id).rounded(.toNearestOrEven))))
            out[b * 34 + 2 + j] = UInt8(bitPattern: Int8(q))
            deq[b * 32 + j] = Float(q) * d
        }
    }
    return (out, deq)
}

func toF16Bytes(_ w: [Float]) -> (bytes: [UInt8], dequantized: [Float]) {
    var out = [UInt8](repeating: 0, count: w.count * 2), deq = w
    for i in 0..<w.count {
        putHalf(&out, 2 * i, w[i])
        deq[i] = roundHalf(w[i])
    }
    return (out, deq)
}

func toF32Bytes(_ w: [Float]) -> [UInt8] {
    w.withUnsafeBytes { Array($0) }
}
