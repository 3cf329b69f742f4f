import EAKernels
import Foundation
import XCTest

/// docs/algorithms.md sections 4-5 invariants of the recurrent kernels, against references written here
/// in Double from the formulas (direct softmax over each prefix; the masked parallel form of decayed
/// linear attention).
final class RecurrentKernelTests: XCTestCase {
    func randoms(_ n: Int, _ rng: inout TestRNG, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in rng.float(lo, hi) }
    }

    func emptyAaren(_ nHead: Int, _ d: Int) -> [Float] {
        var s = [Float](repeating: 0, count: nHead * (d + 2))
        for h in 0..<nHead { s[h * (d + 2)] = -.infinity }
        return s
    }

    /// Aaren over n tokens in one call (scan when n > 64), with the carried state.
    func aaren(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, nHead: Int, d: Int, scale: Float,
               state: inout [Float], threads: Int32 = 2) -> [Float] {
        var out = [Float](repeating: 0, count: n * nHead * d)
        var scratch = [Float](repeating: .nan, count: max(1, Int(eak_aaren_scratch_floats(Int32(n), Int32(nHead), Int32(d)))))
        eak_aaren(q, k, v, Int32(n), Int32(nHead), Int32(d), scale, &state, &out, &scratch, threads)
        return out
    }

    /// softmax(scale q K[0...t]^T) V[0...t] for every t, in Double.
    func directSoftmax(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, nHead: Int, d: Int, scale: Float) -> [Double] {
        var out = [Double](repeating: 0, count: n * nHead * d)
        for h in 0..<nHead {
            var s = [Double](repeating: 0, count: n)
            for t in 0..<n {
                var dot = 0.0
                for i in 0..<d { dot += Double(q[h * d + i]) * Double(k[(t * nHead + h) * d + i]) }
                s[t] = Double(scale) * dot
                let m = s[0...t].max()!
                var z = 0.0
                var acc = [Double](repeating: 0, count: d)
                for j in 0...t {
                    let e = exp(s[j] - m)
                    z += e
                    for i in 0..<d { acc[i] += e * Double(v[(j * nHead + h) * d + i]) }
                }
                for i in 0..<d { out[(t * nHead + h) * d + i] = acc[i] / z }
            }
        }
        return out
    }

    func maxRelErr(_ a: [Float], _ b: [Double]) -> Double {
        var worst = 0.0
        let scaleB = max(b.map { abs($0) }.max() ?? 1, 1e-30)
        for i in 0..<a.count { worst = max(worst, abs(Double(a[i]) - b[i]) / scaleB) }
        return worst
    }

    func testAarenScanEqualsRecurrenceEqualsDirectSoftmax() {
        var rng = TestRNG(state: 11)
        let n = 300, nHead = 3, d = 16, scale: Float = 0.25
        let q = randoms(nHead * d, &rng, -2, 2), k = randoms(n * nHead * d, &rng, -2, 2), v = randoms(n * nHead * d, &rng)
        var st1 = emptyAaren(nHead, d)
        let scan = aaren(q, k, v, n: n, nHead: nHead, d: d, scale: scale, state: &st1)
        // the recurrence: one token per call
        var st2 = emptyAaren(nHead, d)
        var seq = [Float]()
        for t in 0..<n {
            let r = (t * nHead * d)..<((t + 1) * nHead * d)
            seq += aaren(q, Array(k[r]), Array(v[r]), n: 1, nHead: nHead, d: d, scale: scale, state: &st2)
        }
        let ref = directSoftmax(q, k, v, n: n, nHead: nHead, d: d, scale: scale)
        XCTAssertLessThan(maxRelErr(scan, ref), 1e-5, "scan vs direct softmax, every prefix")
        XCTAssertLessThan(maxRelErr(seq, ref), 1e-5, "recurrence vs direct softmax, every prefix")
        // same final state either way (up to rounding)
        for i in 0..<st1.count { XCTAssertEqual(st1[i], st2[i], accuracy: 1e-4 * max(1, abs(st2[i]))) }
        // the scan is blocked by a fixed length: the thread count does not change a bit
        var st3 = emptyAaren(nHead, d)
        XCTAssertEqual(aaren(q, k, v, n: n, nHead: nHead, d: d, scale: scale, state: &st3, threads: 1), scan)
    }

    func testAarenCombineIsAssociative() {
        var rng = TestRNG(state: 12)
        let d = 8
        for _ in 0..<100 {
            func tuple() -> [Float] { [rng.float(-20, 20), rng.float(0.5, 4)] + randoms(d, &rng, -3, 3) }
            let a = tuple(), b = tuple(), c = tuple()
            var left = a
            eak_aaren_combine(&left, b, Int32(d))
            eak_aaren_combine(&left, c, Int32(d))
            var bc = b
            eak_aaren_combine(&bc, c, Int32(d))
            var right = a
            eak_aaren_combine(&right, bc, Int32(d))
            XCTAssertEqual(left[0], right[0])
            // compare the outputs w/u (the representation scales with m)
            for i in 0..<d { XCTAssertEqual(left[2 + i] / left[1], right[2 + i] / right[1], accuracy: 1e-5) }
            XCTAssertEqual(left[1], right[1], accuracy: 1e-5 * right[1])
        }
    }

    func testAarenShiftInvarianceAndHugeScores() {
        var rng = TestRNG(state: 13)
        let n = 200, d = 8
        // scores shifted by c through an extra key channel: query 1 there, key c/scale on every token
        let q = randoms(d, &rng, -1, 1), k = randoms(n * d, &rng, -1, 1), v = randoms(n * d, &rng)
        var base = emptyAaren(1, d)
        let o1 = aaren(q, k, v, n: n, nHead: 1, d: d, scale: 1, state: &base)
        for c: Float in [-500, 37.5, 900] {
            let q2: [Float] = q + [1]
            var k2 = [Float](), v2 = [Float]()
            for t in 0..<n {
                k2 += Array(k[(t * d)..<((t + 1) * d)]) + [c]
                v2 += Array(v[(t * d)..<((t + 1) * d)]) + [0]
            }
            var st = emptyAaren(1, d + 1)
            let o2 = aaren(q2, k2, v2, n: n, nHead: 1, d: d + 1, scale: 1, state: &st)
            // the shifted scores are rounded to float at |c|: allow that rounding (ulp(c)) on top
            let tol = 2e-6 + c.magnitude.ulp
            for t in 0..<n { for i in 0..<d { XCTAssertEqual(o2[t * (d + 1) + i], o1[t * d + i], accuracy: tol) } }
        }
        // |score| = 1e4: finite, and the output is the value of the best-scoring key so far
        var qs = [Float](repeating: 0, count: d)
        qs[0] = 1
        var ks = [Float](repeating: 0, count: n * d)
        var best = [Int](repeating: 0, count: n)
        for t in 0..<n {
            ks[t * d] = (t % 2 == 0 ? 1e4 : -1e4) * rng.float(0.5, 1)
            best[t] = t == 0 || ks[t * d] > ks[best[t - 1] * d] ? t : best[t - 1]
        }
        var st = emptyAaren(1, d)
        let o = aaren(qs, ks, v, n: n, nHead: 1, d: d, scale: 1, state: &st)
        XCTAssertTrue(o.allSatisfy { $0.isFinite } && st.allSatisfy { $0.isFinite })
        for t in 0..<n { XCTAssertEqual(o[t * d + 1], v[best[t] * d + 1], accuracy: 1e-6) }
    }

    func testAarenChunkedStreamingEqualsOneScan() {
        var rng = TestRNG(state: 14)
        let n = 500, nHead = 2, d = 12
        let q = randoms(nHead * d, &rng), k = randoms(n * nHead * d, &rng, -3, 3), v = randoms(n * nHead * d, &rng)
        var full = emptyAaren(nHead, d)
        let one = aaren(q, k, v, n: n, nHead: nHead, d: d, scale: 0.3, state: &full)
        for chunk in [1, 7, 64, 65, 200] {
            var st = emptyAaren(nHead, d)
            var out = [Float]()
            var t = 0
            while t < n {
                let m = min(chunk, n - t), r = (t * nHead * d)..<((t + m) * nHead * d)
                out += aaren(q, Array(k[r]), Array(v[r]), n: m, nHead: nHead, d: d, scale: 0.3, state: &st)
                t += m
            }
            for i in 0..<out.count { XCTAssertEqual(out[i], one[i], accuracy: 1e-5, "chunk \(chunk)") }
        }
    }

    func testAarenStateBoundedOverAMillionSteps() {
        var rng = TestRNG(state: 15)
        let n = 1_000_000, d = 4
        let q = randoms(d, &rng, -3, 3), k = randoms(n * d, &rng, -3, 3), v = randoms(n * d, &rng)
        var st = emptyAaren(1, d)
        let o = aaren(q, k, v, n: n, nHead: 1, d: d, scale: 1, state: &st)
        XCTAssertTrue(st.allSatisfy { $0.isFinite }, "state finite after 1e6 steps: \(st)")
        XCTAssertTrue(o.allSatisfy { abs($0) <= 1 + 1e-5 }, "outputs stay convex combinations of values in [-1, 1]")
    }

    // MARK: linear attention

    func linear(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, nHead: Int, d: Int, decay: [Float],
                state: inout [Float], chunk: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n * nHead * d)
        eak_linear_attention(q, k, v, Int32(n), Int32(nHead), Int32(d), decay, &state, &out, Int32(chunk), 2)
        return out
    }

    /// o_t = sum_{s<=t} decay^(t-s) (q_t . k_s) v_s, in Double (the masked parallel form).
    func parallelForm(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, nHead: Int, d: Int, decay: [Float]) -> [Double] {
        var out = [Double](repeating: 0, count: n * nHead * d)
        for h in 0..<nHead {
            for t in 0..<n {
                for s in 0...t {
                    var dot = 0.0
                    for i in 0..<d { dot += Double(q[(t * nHead + h) * d + i]) * Double(k[(s * nHead + h) * d + i]) }
                    let c = pow(Double(decay[h]), Double(t - s)) * dot
                    for i in 0..<d { out[(t * nHead + h) * d + i] += c * Double(v[(s * nHead + h) * d + i]) }
                }
            }
        }
        return out
    }

    func testLinearRecurrentEqualsChunkedEqualsParallel() {
        var rng = TestRNG(state: 21)
        let n = 150, nHead = 3, d = 8
        let decay: [Float] = [0.5, 0.9, 1.0]  // 1.0: plain causal linear attention
        let q = randoms(n * nHead * d, &rng), k = randoms(n * nHead * d, &rng), v = randoms(n * nHead * d, &rng)
        let ref = parallelForm(q, k, v, n: n, nHead: nHead, d: d, decay: decay)
        for chunk in [1, 5, 64, 150, 256] {
            var st = [Float](repeating: 0, count: nHead * d * d)
            let o = linear(q, k, v, n: n, nHead: nHead, d: d, decay: decay, state: &st, chunk: chunk)
            XCTAssertLessThan(maxRelErr(o, ref), 1e-5, "chunk \(chunk) vs the masked parallel form")
        }
    }

    func testLinearChunkedPrefillThenDecodeEqualsRecurrence() {
        var rng = TestRNG(state: 22)
        let n = 200, nHead = 2, d = 6, pre = 137
        let decay: [Float] = [0.8, 0.97]
        let q = randoms(n * nHead * d, &rng), k = randoms(n * nHead * d, &rng), v = randoms(n * nHead * d, &rng)
        var sRec = [Float](repeating: 0, count: nHead * d * d)
        let rec = linear(q, k, v, n: n, nHead: nHead, d: d, decay: decay, state: &sRec, chunk: 1)
        var s = [Float](repeating: 0, count: nHead * d * d)
        let r0 = 0..<(pre * nHead * d)
        var out = linear(Array(q[r0]), Array(k[r0]), Array(v[r0]), n: pre, nHead: nHead, d: d, decay: decay, state: &s, chunk: 64)
        for t in pre..<n {
            let r = (t * nHead * d)..<((t + 1) * nHead * d)
            out += linear(Array(q[r]), Array(k[r]), Array(v[r]), n: 1, nHead: nHead, d: d, decay: decay, state: &s, chunk: 64)
        }
        for i in 0..<out.count { XCTAssertEqual(out[i], rec[i], accuracy: 1e-5 * max(1, abs(rec[i]))) }
        for i in 0..<s.count { XCTAssertEqual(s[i], sRec[i], accuracy: 1e-5 * max(1, abs(sRec[i]))) }
    }

    func testLinearStateBoundedOverAMillionSteps() {
        var rng = TestRNG(state: 23)
        let n = 1_000_000, d = 4
        let decay: Float = 0.99
        let q = randoms(n * d, &rng), k = randoms(n * d, &rng), v = randoms(n * d, &rng)
        var st = [Float](repeating: 0, count: d * d)
        let o = linear(q, k, v, n: n, nHead: 1, d: d, decay: [decay], state: &st, chunk: 64)
        // |S| <= max|k||v| / (1 - decay) = 100, |o| <= d * 100
        XCTAssertTrue(st.allSatisfy { $0.isFinite && abs($0) <= 1 / (1 - decay) }, "state bounded: \(st)")
        XCTAssertTrue(o.allSatisfy { $0.isFinite && abs($0) <= Float(d) / (1 - decay) })
    }
}
