import Dispatch
import EAKernels

/// Refinement of a quantized matrix against the layer-output objective of each row,
///     J(row) = (ŵ - w)^T H (ŵ - w),   ŵ_c = q_c * d_g(c) + m_g(c),
/// with w the row before quantization and H the calibration Hessian (X^T X / n, damped).
///
/// GPTQ fixes every code once, against a row its earlier errors have already changed, and fits each
/// group's (d, m) alone on a diagonal weight before the group's codes exist. Both leave J on the
/// table at 2 bits. Each round here does two exact descent steps:
///  1. a coordinate-descent sweep over the codes: element c takes the code that lowers J most with
///     all other codes fixed (ΔJ = 2δ·g_c + δ²·H_cc, g = H(ŵ - w) kept up to date);
///  2. least squares over all (d, m) of the row at once: for fixed codes J is a quadratic in them,
///     coupled across groups by H. The solution is rounded through fp16 as stored; a round whose
///     rounded parameters do not lower J keeps the old ones.
/// So J never increases. The products H·w and H·(codes of a group) are float GEMMs, computed once;
/// code changes update them incrementally (in double).
struct RefineReport {
    /// Sum over rows of J before and after (including the constant w^T H w).
    var before = 0.0, after = 0.0
    /// Codes changed by the coordinate-descent sweeps, and parameter refits kept.
    var codesChanged = 0, refitsKept = 0
}

func refineMatrix(_ qm: inout QuantizedMatrix, original w: [Float], hessian h: [Double], rounds: Int) -> RefineReport {
    let rows = qm.rows, n = qm.cols, G = qm.group, ng = n / G, qmax = qm.qmax, K = 2 * ng
    precondition(h.count == n * n && w.count == rows * n && n % G == 0)
    var report = RefineReport()
    if rounds <= 0 || rows == 0 { return report }

    // Float GEMMs: HW[r][c] = (H w_r)_c; U[(r*ng + g)*n + c] = (H[:, group g] · codes_r[group g])_c.
    let hf = h.map { Float($0) }
    var hw = [Float](repeating: 0, count: rows * n)
    var u = [Float](repeating: 0, count: rows * ng * n)
    hf.withUnsafeBufferPointer { hp in
        w.withUnsafeBufferPointer { wp in
            hw.withUnsafeMutableBufferPointer {
                eak_matmul(Int32(EAK_F32), hp.baseAddress!, n * 4, Int32(n), Int32(n), wp.baseAddress!, Int32(rows),
                           $0.baseAddress!, eak_num_cores())
            }
        }
        var codes = [Float](repeating: 0, count: rows * G), ug = [Float](repeating: 0, count: rows * n)
        for g in 0..<ng {
            for r in 0..<rows { for k in 0..<G { codes[r * G + k] = Float(qm.codes[r * n + g * G + k]) } }
            codes.withUnsafeBufferPointer { cp in
                ug.withUnsafeMutableBufferPointer {
                    eak_matmul(Int32(EAK_F32), hp.baseAddress! + g * G, n * 4, Int32(n), Int32(G), cp.baseAddress!,
                               Int32(rows), $0.baseAddress!, eak_num_cores())
                }
            }
            for r in 0..<rows { for c in 0..<n { u[(r * ng + g) * n + c] = ug[r * n + c] } }
        }
    }
    // V[g][c] = sum of H[c][k] over k in group g (the offsets' column of H·A), shared by all rows;
    // VV[g][g'] = sum over c in g of V[g'][c].
    var v = [Double](repeating: 0, count: ng * n)
    for c in 0..<n { for k in 0..<n { v[(k / G) * n + c] += h[c * n + k] } }
    var vv = [Double](repeating: 0, count: ng * ng)
    for g in 0..<ng { for g2 in 0..<ng { var s = 0.0; for c in (g * G)..<((g + 1) * G) { s += v[g2 * n + c] }; vv[g * ng + g2] = s } }

    let totals = RefineTotals()
    qm.codes.withUnsafeMutableBufferPointer { cp in
        qm.params.withUnsafeMutableBufferPointer { pp in
            h.withUnsafeBufferPointer { hp in
                let C = cp.baseAddress!, P = pp.baseAddress!, H = hp.baseAddress!
                parallelFor(rows) { r in
                    var ur = [Double](repeating: 0, count: ng * n)
                    for i in 0..<(ng * n) { ur[i] = Double(u[r * ng * n + i]) }
                    var hwr = [Double](repeating: 0, count: n), wr = [Double](repeating: 0, count: n)
                    for c in 0..<n { hwr[c] = Double(hw[r * n + c]); wr[c] = Double(w[r * n + c]) }
                    var wHw = 0.0
                    for c in 0..<n { wHw += wr[c] * hwr[c] }
                    let q = C + r * n, prm = P + r * ng
                    var d = (0..<ng).map { Double(prm[$0].d) }, m = (0..<ng).map { Double(prm[$0].m) }
                    var what = [Double](repeating: 0, count: n), grad = [Double](repeating: 0, count: n)
                    // grad = H ŵ - H w from the GEMM products; J = ŵ^T (grad - Hw) + w^T H w
                    func evaluate(_ d: [Double], _ m: [Double], _ what: inout [Double], _ grad: inout [Double]) -> Double {
                        for c in 0..<n { what[c] = Double(q[c]) * d[c / G] + m[c / G]; grad[c] = -hwr[c] }
                        for g in 0..<ng {
                            let dg = d[g], mg = m[g]
                            for c in 0..<n { grad[c] += dg * ur[g * n + c] + mg * v[g * n + c] }
                        }
                        var j = wHw
                        for c in 0..<n { j += what[c] * (grad[c] - hwr[c]) }
                        return j
                    }
                    var j = evaluate(d, m, &what, &grad)
                    let j0 = j
                    var changed = 0, kept = 0
                    var mat = [Double](repeating: 0, count: K * K), rhs = [Double](repeating: 0, count: K)
                    for _ in 0..<rounds {
                        var refitKept = false
                        // 1. coordinate descent over the codes
                        var sweepChanged = 0
                        for c in 0..<n {
                            let g = c / G, dg = d[g]
                            if dg == 0 { continue }
                            let cur = Int(q[c]), hcc = H[c * n + c]
                            var best = 0.0, bestK = cur
                            for k in 0...qmax where k != cur {
                                let delta = Double(k - cur) * dg
                                let dj = delta * (2 * grad[c] + delta * hcc)
                                if dj < best { best = dj; bestK = k }
                            }
                            if bestK == cur || !(best < -1e-13 * abs(j)) { continue }
                            let dq = Double(bestK - cur), delta = dq * dg
                            q[c] = UInt8(bestK)
                            what[c] += delta
                            let hc = H + c * n
                            for i in 0..<n {
                                ur[g * n + i] += dq * hc[i]
                                grad[i] += delta * hc[i]
                            }
                            j += best
                            sweepChanged += 1
                        }
                        changed += sweepChanged
                        // 2. least squares over every (d, m) of the row, ridge-regularised towards the
                        //    current values (a group whose codes are all equal has no unique d)
                        for a in 0..<ng {
                            let lo = a * G, hi = lo + G
                            var sq = 0.0, s1 = 0.0
                            for c in lo..<hi { sq += Double(q[c]) * hwr[c]; s1 += hwr[c] }
                            rhs[2 * a] = sq
                            rhs[2 * a + 1] = s1
                            for b in 0..<ng {
                                var qu = 0.0, qv = 0.0, su = 0.0
                                for c in lo..<hi {
                                    let qc = Double(q[c])
                                    qu += qc * ur[b * n + c]; qv += qc * v[b * n + c]; su += ur[b * n + c]
                                }
                                mat[(2 * a) * K + 2 * b] = qu
                                mat[(2 * a) * K + 2 * b + 1] = qv
                                mat[(2 * a + 1) * K + 2 * b] = su
                                mat[(2 * a + 1) * K + 2 * b + 1] = vv[a * ng + b]
                            }
                        }
                        var tr = 0.0
                        for i in 0..<K { tr += mat[i * K + i] }
                        let lambda = 1e-7 * tr / Double(K) + 1e-30
                        for a in 0..<ng {
                            mat[(2 * a) * K + 2 * a] += lambda; rhs[2 * a] += lambda * d[a]
                            mat[(2 * a + 1) * K + 2 * a + 1] += lambda; rhs[2 * a + 1] += lambda * m[a]
                        }
                        // the matrix is symmetric in exact arithmetic; symmetrise the float-GEMM noise
                        for i in 0..<K { for k in 0..<i { let s = 0.5 * (mat[i * K + k] + mat[k * K + i]); mat[i * K + k] = s; mat[k * K + i] = s } }
                        if let theta = choleskySolve(&mat, rhs, K) {
                            var nd = d, nm = m
                            var finite = true
                            for a in 0..<ng {
                                nd[a] = Double(roundHalf(Float(theta[2 * a])))
                                nm[a] = Double(roundHalf(Float(theta[2 * a + 1])))
                                if !nd[a].isFinite || !nm[a].isFinite { finite = false }
                            }
                            if finite {
                                var nwhat = what, ngrad = grad
                                let nj = evaluate(nd, nm, &nwhat, &ngrad)
                                if nj < j {
                                    j = nj; d = nd; m = nm; what = nwhat; grad = ngrad
                                    kept += 1
                                    refitKept = true
                                }
                            }
                        }
                        if sweepChanged == 0 && !refitKept { break }
                    }
                    for a in 0..<ng { prm[a] = GroupParams(d: Float(d[a]), m: Float(m[a])) }
                    totals.add(j0, j, changed, kept)
                }
            }
        }
    }
    report.before = totals.before
    report.after = totals.after
    report.codesChanged = totals.changed
    report.refitsKept = totals.kept
    return report
}

/// Solves A x = b for symmetric positive definite A (k x k, row-major, destroyed); nil if not SPD.
func choleskySolve(_ a: inout [Double], _ b: [Double], _ k: Int) -> [Double]? {
    if !a.withUnsafeMutableBufferPointer({ choleskyInPlace($0.baseAddress!, k, parallel: false) }) { return nil }
    var y = b
    for i in 0..<k {  // L y = b
        var s = y[i]
        for t in 0..<i { s -= a[i * k + t] * y[t] }
        y[i] = s / a[i * k + i]
    }
    for i in stride(from: k - 1, through: 0, by: -1) {  // L^T x = y
        var s = y[i]
        for t in (i + 1)..<max(i + 1, k) { s -= a[t * k + i] * y[t] }
        y[i] = s / a[i * k + i]
    }
    return y
}

/// Totals over rows refined in parallel (reported only, so their summation order does not matter).
final class RefineTotals: @unchecked Sendable {
    private let m = DispatchSemaphore(value: 1)
    var before = 0.0, after = 0.0, changed = 0, kept = 0
    func add(_ b: Double, _ a: Double, _ c: Int, _ k: Int) {
        m.wait()
        before += b; after += a; changed += c; kept += k
        m.signal()
    }
}
