import EAKernels

/// How the scale and offset of a weight group are chosen.
public enum Quantizer: String, CaseIterable {
    /// min/max of the group: the baseline that shows why the others exist.
    case rtn
    /// Search over clipped ranges, each refined by least squares, minimising the group's squared error.
    case search
    /// The same search, each input channel's error weighted by its mean squared calibration activation.
    case imatrix
    /// GPTQ: columns quantized one by one, the error of each pushed onto the remaining columns
    /// through the inverse calibration Hessian; group parameters from the imatrix search.
    case gptq
}

/// Asymmetric uniform quantization of one group: value = q * d + m with q in 0...qmax, d and m as
/// stored in the file (fp16-rounded).
struct GroupParams {
    var d: Float
    var m: Float

    @inline(__always) func code(_ x: Float, qmax: Int) -> Int {
        if d == 0 { return 0 }
        let q = ((x - m) / d).rounded(.toNearestOrEven)
        return q <= 0 ? 0 : (q >= Float(qmax) ? qmax : Int(q))
    }

    @inline(__always) func value(_ q: Int) -> Float { Float(q) * d + m }
}

@inline(__always) func roundHalf(_ x: Float) -> Float { eak_f16_to_f32(eak_f32_to_f16(x)) }

/// Fits (d, m) to n values x[i * stride] with importance weights w (nil = all 1).
func fitGroup(_ x: UnsafePointer<Float>, stride: Int = 1, n: Int, weights w: UnsafePointer<Float>?, qmax: Int,
              search: Bool) -> GroupParams {
    var lo = Float.infinity, hi = -Float.infinity
    for i in 0..<n {
        let v = x[i * stride]
        lo = min(lo, v)
        hi = max(hi, v)
    }
    if !(hi > lo) { return GroupParams(d: 0, m: roundHalf(lo.isFinite ? lo : 0)) }  // constant group: exact
    let rtn = GroupParams(d: roundHalf((hi - lo) / Float(qmax)), m: roundHalf(lo))
    if !search { return rtn }

    // error of params p over the group (weighted)
    func error(_ p: GroupParams) -> Float {
        var e: Float = 0
        for i in 0..<n {
            let v = x[i * stride]
            let r = p.value(p.code(v, qmax: qmax)) - v
            e += (w?[i] ?? 1) * r * r
        }
        return e
    }
    // least-squares (d, m) for the codes p assigns
    func refit(_ p: GroupParams) -> GroupParams? {
        var sw: Float = 0, sq: Float = 0, sqq: Float = 0, sx: Float = 0, sqx: Float = 0
        for i in 0..<n {
            let v = x[i * stride], wi = w?[i] ?? 1, q = Float(p.code(v, qmax: qmax))
            sw += wi; sq += wi * q; sqq += wi * q * q; sx += wi * v; sqx += wi * q * v
        }
        let det = sw * sqq - sq * sq
        if !(det > 1e-12 * sw * sqq) { return nil }
        let d = (sw * sqx - sq * sx) / det, m = (sqq * sx - sq * sqx) / det
        if !(d > 0) || !d.isFinite || !m.isFinite { return nil }
        return GroupParams(d: roundHalf(d), m: roundHalf(m))
    }
    var best = rtn, bestErr = error(rtn)
    let range = hi - lo
    // clip each end by 0..24% of the range; each candidate refined twice by least squares
    let steps: [Float] = [0, 0.05, 0.1, 0.16, 0.24]
    for a in steps {
        for b in steps {
            let l = lo + a * range, h = hi - b * range
            var p = GroupParams(d: roundHalf((h - l) / Float(qmax)), m: roundHalf(l))
            if p.d == 0 { continue }
            for _ in 0..<2 {
                let e = error(p)
                if e < bestErr { bestErr = e; best = p }
                guard let r = refit(p) else { break }
                p = r
            }
            let e = error(p)
            if e < bestErr { bestErr = e; best = p }
        }
    }
    return best
}
