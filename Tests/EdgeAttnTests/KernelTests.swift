import EAKernels
import Foundation
import XCTest
@testable import EdgeAttn

/// Deterministic pseudo-random numbers for tests.
struct TestRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

/// IEEE half bits for a float (round to nearest): test-side encoder, written independently.
func halfBits(_ f: Float) -> UInt16 { Float16(f).bitPattern }

final class KernelTests: XCTestCase {
    /// Builds random weight rows of a 32-block type with valid fp16 scales.
    func randomRows(type: Int32, rows: Int, cols: Int, rng: inout TestRNG) -> [UInt8] {
        let bb = Int(eak_type_block_bytes(type))
        var w = [UInt8](repeating: 0, count: rows * cols / 32 * bb)
        for i in 0..<w.count { w[i] = rng.byte() }
        for b in 0..<(rows * cols / 32) {
            let d = halfBits(rng.float(0.001, 0.05))
            w[b * bb] = UInt8(d & 0xFF)
            w[b * bb + 1] = UInt8(d >> 8)
            if type == 3 || type == 7 {  // Q4_1 / Q5_1 carry an offset
                let m = halfBits(rng.float(-0.1, 0.1))
                w[b * bb + 2] = UInt8(m & 0xFF)
                w[b * bb + 3] = UInt8(m >> 8)
            }
        }
        return w
    }

    /// The integer kernel equals the float dot of the dequantized operands (to float rounding), and
    /// the SIMD kernel equals the generic kernel exactly, on ragged token counts.
    func testInt8MatmulMatchesDequantizedFloatAndGenericExactly() {
        var rng = TestRNG(state: 42)
        for type: Int32 in [2, 3, 6, 7, 8] {
            for (rows, cols, nTok) in [(7, 64, 1), (5, 576, 1), (37, 576, 1), (13, 96, 5), (33, 576, 9), (4, 1536, 17)] {
                let w = randomRows(type: type, rows: rows, cols: cols, rng: &rng)
                var x = [Float](repeating: 0, count: nTok * cols)
                for i in 0..<x.count { x[i] = rng.float(-3, 3) }
                var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols / 32)
                eak_quantize_act(x, Int32(nTok), Int32(cols), &act, 1)
                var ySimd = [Float](repeating: 0, count: nTok * rows)
                var yGen = ySimd
                eak_force_generic(0)
                eak_matmul_q8(type, w, w.count / rows, Int32(rows), Int32(cols), act, Int32(nTok), &ySimd, 2)
                eak_force_generic(1)
                eak_matmul_q8(type, w, w.count / rows, Int32(rows), Int32(cols), act, Int32(nTok), &yGen, 1)
                eak_force_generic(0)
                XCTAssertEqual(ySimd, yGen, "type \(type) \(rows)x\(cols) n=\(nTok): SIMD != generic")

                // reference: dequantize both operands, dot in double
                var wf = [Float](repeating: 0, count: rows * cols)
                XCTAssertEqual(eak_dequantize(type, w, &wf, Int64(rows * cols)), 0)
                for t in 0..<nTok {
                    var xq = [Double](repeating: 0, count: cols)
                    for b in 0..<(cols / 32) {
                        let blk = act[t * cols / 32 + b]
                        withUnsafeBytes(of: blk.qs) { q in
                            for j in 0..<32 { xq[b * 32 + j] = Double(blk.d) * Double(Int8(bitPattern: q[j])) }
                        }
                    }
                    for r in 0..<rows {
                        var ref = 0.0
                        var mag = 0.0
                        for c in 0..<cols {
                            ref += Double(wf[r * cols + c]) * xq[c]
                            mag += abs(Double(wf[r * cols + c]) * xq[c])
                        }
                        let got = Double(ySimd[t * rows + r])
                        // Q4_1/Q5_1 use the fp16-rounded block sum s: allow its rounding (2^-11 relative)
                        let tol = 1e-5 * mag + ((type == 3 || type == 7) ? 2e-3 * mag / Double(cols) * 32 : 0) + 1e-6
                        XCTAssertEqual(got, ref, accuracy: tol, "type \(type) row \(r) token \(t)")
                    }
                }
            }
        }
    }

    /// Q4_1 panels: packing moves every byte back when rows are rebuilt, and the panel kernels
    /// (dispatched: AVX-512 VNNI or AVX2 here, NEON forms in the self test under qemu; and with the
    /// AVX-512 forms off; and generic) equal the row layout's generic kernel bit for bit, for one token
    /// (the panel kernels) and many (rebuilt rows, the prefill tile), on 1 and 2 threads.
    func testQ4PanelsEqualRowsExactly() {
        var rng = TestRNG(state: 43)
        for (rows, cols, nTok) in [(16, 32, 1), (16, 576, 1), (48, 576, 1), (32, 1536, 1), (64, 96, 1), (16, 576, 5),
                                   (32, 288, 9), (16, 64, 33)] {
            let w = randomRows(type: 3, rows: rows, cols: cols, rng: &rng)
            let rb = w.count / rows
            var packed = w
            var scratch = [UInt8](repeating: 0, count: 16 * rb)
            XCTAssertEqual(eak_q4p_pack_panels(&packed, rb, Int32(rows), Int32(cols), &scratch), 0)
            XCTAssertNotEqual(packed, w, "\(rows)x\(cols): packing changed nothing")
            var back = [UInt8](repeating: 0, count: w.count)
            for r in 0..<rows { back.withUnsafeMutableBytes { eak_q4p_row(packed, rb, Int32(r), $0.baseAddress! + r * rb) } }
            XCTAssertEqual(back, w, "\(rows)x\(cols): rebuilt rows differ")

            let x = (0..<(nTok * cols)).map { _ in rng.float(-3, 3) }
            var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols / 32)
            eak_quantize_act(x, Int32(nTok), Int32(cols), &act, 1)
            var want = [Float](repeating: 0, count: nTok * rows)
            eak_force_generic(1)
            eak_matmul_q8(3, w, rb, Int32(rows), Int32(cols), act, Int32(nTok), &want, 1)
            for mode: Int32 in [0, 2, 1] {  // dispatched, AVX-512 off, generic
                eak_force_generic(mode)
                for th: Int32 in [1, 2] {
                    var got = [Float](repeating: 0, count: nTok * rows)
                    eak_matmul_q4p(packed, rb, Int32(rows), Int32(cols), act, Int32(nTok), &got, th)
                    XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern),
                                   "\(rows)x\(cols) n=\(nTok) mode \(mode) threads \(th) (\(String(cString: eak_q4p_kernel_name())))")
                }
            }
            eak_force_generic(0)
        }
        XCTAssertEqual(eak_q4p_pack_panels(nil, 20, 16, 32, nil), -1)
        var odd = [UInt8](repeating: 0, count: 15 * 20), s2 = [UInt8](repeating: 0, count: 16 * 20)
        XCTAssertEqual(eak_q4p_pack_panels(&odd, 20, 15, 32, &s2), -1, "15 rows are no panel")
    }

    /// Activation quantization: per-element error <= d/2 (plus fp16 rounding of d), zero block exact.
    func testActivationQuantizationError() {
        var rng = TestRNG(state: 7)
        let cols = 256
        var x = [Float](repeating: 0, count: cols)
        for i in 0..<cols { x[i] = rng.float(-10, 10) }
        for i in 32..<64 { x[i] = 0 }
        var act = [eak_act_block](repeating: eak_act_block(), count: cols / 32)
        eak_quantize_act(x, 1, Int32(cols), &act, 1)
        for b in 0..<(cols / 32) {
            let blk = act[b]
            var amax: Float = 0
            for j in 0..<32 { amax = max(amax, abs(x[b * 32 + j])) }
            withUnsafeBytes(of: blk.qs) { q in
                var sum = 0
                for j in 0..<32 {
                    let v = Int8(bitPattern: q[j])
                    sum += Int(v)
                    let err = abs(Double(blk.d) * Double(v) - Double(x[b * 32 + j]))
                    // q = round(x * 127/amax) with the exact scale, then d is stored rounded to fp16:
                    // |d q - x| <= (amax/127)/2 + |q| * |d_fp16 - amax/127|
                    let dTrue = Double(amax) / 127
                    XCTAssertLessThanOrEqual(err, dTrue / 2 + 127 * abs(Double(blk.d) - dTrue) + 1e-6)
                }
                XCTAssertEqual(Double(blk.s), Double(blk.d) * Double(sum), accuracy: abs(Double(blk.d) * Double(sum)) * 1e-3 + 1e-6)
            }
            if b == 1 { XCTAssertEqual(blk.d, 0) }
        }
    }

    /// Our portable exp against Foundation's (double) exp: within 1 float ulp.
    func testExpAccuracy() {
        var x: Float = -100
        while x < 88 {
            let got = eak_exp(x)
            let ref = Float(Foundation.exp(Double(x)))
            XCTAssertLessThanOrEqual(abs(got - ref), ref.ulp, "exp(\(x))")
            x += 0.37
        }
        XCTAssertEqual(eak_exp(-200), 0)
        // found by the GGUF fuzzer: NaN logits reached exp, and converting floor(NaN) to int is undefined
        XCTAssertTrue(eak_exp(.nan).isNaN)
        XCTAssertEqual(eak_exp(100), .infinity)
    }

    /// top-k equals the first k of a full stable sort by descending value.
    func testTopKMatchesSort() {
        var rng = TestRNG(state: 3)
        for n in [1, 5, 100, 1000] {
            var x = [Float](repeating: 0, count: n)
            for i in 0..<n { x[i] = Float(Int(rng.next() % 50)) }  // many ties
            let order = (0..<n).sorted { x[$0] > x[$1] || (x[$0] == x[$1] && $0 < $1) }
            for k in [1, 3, n] where k <= n {
                var idx = [Int32](repeating: -1, count: k)
                eak_top_k(x, Int32(n), Int32(k), &idx)
                XCTAssertEqual(idx.map { Int($0) }, Array(order.prefix(k)), "n=\(n) k=\(k)")
            }
        }
    }

    /// Block Hadamard rotation: equals the Sylvester matrix product H x / sqrt(block) (in double, to
    /// float rounding), and bit for bit the plain butterfly loop in stage order (the kernel unrolls
    /// the first three stages; the operations per element must stay the same).
    func testHadamardMatchesSylvesterMatrixAndButterflyOrder() {
        var rng = TestRNG(state: 21)
        for block in [2, 4, 8, 16, 64, 128] {
            let cols = block * 3, rows = 2
            let x = (0..<(rows * cols)).map { _ in rng.float(-2, 2) }
            var y = x
            eak_hadamard(&y, Int32(rows), Int32(cols), Int32(block), 1)
            var loop = x
            let s = 1 / Float(block).squareRoot()
            for r in 0..<rows {
                for b0 in stride(from: 0, to: cols, by: block) {
                    let o = r * cols + b0
                    var h = 1
                    while h < block {
                        for i in stride(from: 0, to: block, by: 2 * h) {
                            for j in i..<(i + h) {
                                let a = loop[o + j], c = loop[o + j + h]
                                loop[o + j] = a + c
                                loop[o + j + h] = a - c
                            }
                        }
                        h <<= 1
                    }
                    for j in 0..<block { loop[o + j] *= s }
                    for i in 0..<block {
                        var ref = 0.0
                        for j in 0..<block { ref += Double((i & j).nonzeroBitCount % 2 == 0 ? 1 : -1) * Double(x[o + j]) }
                        XCTAssertEqual(Double(y[o + i]), ref / Double(block).squareRoot(), accuracy: 1e-5, "block \(block)")
                    }
                }
            }
            XCTAssertEqual(y.map(\.bitPattern), loop.map(\.bitPattern), "block \(block): not the butterfly order")
        }
    }

    /// The vectorised softmax exponential equals eak_exp element by element, bit for bit, on wide
    /// ranges, arbitrary bit patterns (NaN, infinities, subnormals) and ragged lengths.
    func testVectorExpEqualsScalarExactly() {
        var rng = TestRNG(state: 5)
        for n in [1, 3, 4, 7, 64, 1001] {
            for mode in 0..<3 {
                let mx: Float = mode == 0 ? 0 : rng.float(-50, 50)
                var x = (0..<n).map { _ in mode == 2 ? Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) : rng.float(-200, 200) }
                if n > 3 { x[0] = .infinity; x[1] = -.infinity; x[2] = .nan }
                let want = x.map { eak_exp($0 - mx) }
                var got = x
                eak_exp_sub(&got, Int32(n), mx)
                for i in 0..<n where !(got[i].isNaN && want[i].isNaN) {
                    XCTAssertEqual(got[i].bitPattern, want[i].bitPattern, "x \(x[i]) - \(mx)")
                }
            }
        }
    }

    /// The float exponential of the quantized-cache softmax: within 3 float ulp of exp in double on
    /// [-87, 88] (0 below, infinity above, NaN stays NaN); eak_exp32_sub_sum's AVX2 form equals the
    /// generic one bit for bit (values and sum) on ragged lengths, and its sum is the documented
    /// order (eight running sums over the whole eights, combined pairwise, then the rest).
    func testFloatExpAndItsSum() {
        var x: Float = -87
        while x <= 88 {
            let got = eak_exp32(x), ref = Float(Foundation.exp(Double(x)))
            XCTAssertLessThanOrEqual(abs(got - ref), 3 * ref.ulp, "exp32(\(x))")
            x += 0.0137
        }
        XCTAssertEqual(eak_exp32(-87.5), 0)
        XCTAssertEqual(eak_exp32(-.infinity), 0)
        XCTAssertEqual(eak_exp32(88.5), .infinity)
        XCTAssertTrue(eak_exp32(.nan).isNaN)
        var rng = TestRNG(state: 6)
        for n in [0, 1, 7, 8, 9, 31, 64, 1001] {
            let mx = rng.float(-5, 5)
            var v = (0..<n).map { _ in rng.float(-100, 10) }
            if n > 3 { v[0] = -.infinity; v[1] = mx; v[2] = mx - 86.9 }
            var simd = v, generic = v
            let sSimd = eak_exp32_sub_sum(&simd, Int32(n), mx)
            eak_force_generic(1)
            let sGeneric = eak_exp32_sub_sum(&generic, Int32(n), mx)
            eak_force_generic(0)
            XCTAssertEqual(simd.map(\.bitPattern), generic.map(\.bitPattern), "n \(n): AVX2 != generic")
            XCTAssertEqual(sSimd.bitPattern, sGeneric.bitPattern, "n \(n): sums differ")
            let want = v.map { eak_exp32($0 - mx) }
            XCTAssertEqual(generic.map(\.bitPattern), want.map(\.bitPattern), "n \(n): not eak_exp32 element by element")
            var lanes = [Float](repeating: 0, count: 8), i = 0
            while i + 8 <= n { for l in 0..<8 { lanes[l] = lanes[l] + want[i + l] }; i += 8 }
            var sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
            while i < n { sum = sum + want[i]; i += 1 }
            XCTAssertEqual(sGeneric.bitPattern, sum.bitPattern, "n \(n): sum order")
        }
    }

    /// KV4 attention with groups of 32: the AVX2 loops and their AVX-512 forms (forced apart with
    /// eak_force_generic(2) on AVX-512 hosts; unpacked codes, block scores in registers)
    /// give the generic loops' results bit for bit, for decode and batch queries, dense and Λ spans.
    /// Also: query heads scored together (up to eak_kvq_heads_per_pass of a kv head, fewer when a
    /// thread would otherwise idle) give the same bits for any thread count; 3 kv heads x 3 query
    /// heads (SmolLM2) and 1 x 5 (a pass of four and a pass of one). DHSA key lists: a list of every
    /// key equals dense attention bit for bit; a sparse list (runs and lone keys) is SIMD == generic.
    /// Up to 600 keys, so queries have one, two and three key segments (split over the threads for
    /// decode): every thread count gives the same bits, and the merged segments equal softmax
    /// attention over the records' values computed in double (`kvqReference`).
    func testKV4AttentionSIMDEqualsGenericExactly() {
        checkKV4Attention(nKV: 3, nHead: 9)
        checkKV4Attention(nKV: 1, nHead: 5)
    }

    func checkKV4Attention(nKV: Int, nHead: Int) {
        var rng = TestRNG(state: 33)
        let d = 64, G = 32, S = 4, ring = 64, nPos = 600, nBlocks = (nPos - S) / G + 1
        let rb = Int(eak_kvq_record_bytes(4, Int32(G))), kvDim = nKV * d
        var kq = [UInt8](repeating: 0, count: nBlocks * nKV * d * rb)
        var vq = [UInt8](repeating: 0, count: nBlocks * G * nKV * (d / G) * rb)
        var sinkK = [Float](repeating: 0, count: S * kvDim), sinkV = sinkK
        var ringK = [Float](repeating: 0, count: ring * kvDim), ringV = ringK
        let k = (0..<(nPos * kvDim)).map { _ in rng.float(-2, 2) }, v = (0..<(nPos * kvDim)).map { _ in rng.float(-2, 2) }
        let q = (0..<(10 * nHead * d)).map { _ in rng.float(-1, 1) }
        kq.withUnsafeMutableBufferPointer { kqp in vq.withUnsafeMutableBufferPointer { vqp in
        sinkK.withUnsafeMutableBufferPointer { skp in sinkV.withUnsafeMutableBufferPointer { svp in
        ringK.withUnsafeMutableBufferPointer { rkp in ringV.withUnsafeMutableBufferPointer { rvp in
            var c = eak_kvq(head_dim: Int32(d), n_kv_head: Int32(nKV), bits: 4, group: Int32(G), n_sink: Int32(S),
                            ring: Int32(ring), block_slots: 0, kq: kqp.baseAddress, vq: vqp.baseAddress,
                            sink_k: skp.baseAddress, sink_v: svp.baseAddress, ring_k: rkp.baseAddress, ring_v: rvp.baseAddress)
            func attend(_ nTok: Int, _ pos0: Int, _ span: eak_span?, threads: Int = 2) -> [UInt32] {
                var out = [Float](repeating: 0, count: nTok * nHead * d)
                var sp = span ?? eak_span()
                let stride = span == nil ? Int(eak_span_max_keys(nil, Int32(pos0), Int32(nTok)))
                                         : Int(eak_span_max_keys(&sp, Int32(pos0), Int32(nTok)))
                var scratch = [Float](repeating: 0, count: Int(eak_kvq_scratch_floats(Int32(nHead), Int32(nKV), Int32(d), Int32(S),
                                                                                      Int32(stride), Int32(threads))))
                if span == nil {
                    eak_kvq_attention(&c, q, &out, Int32(nTok), Int32(pos0), Int32(nHead), 0.125, nil, &scratch, Int32(threads))
                } else {
                    eak_kvq_attention(&c, q, &out, Int32(nTok), Int32(pos0), Int32(nHead), 0.125, &sp, &scratch, Int32(threads))
                }
                return out.map(\.bitPattern)
            }
            var p = 0
            while p < nPos {
                let n = min(10, nPos - p)
                k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                    eak_kvq_append(&c, kp.baseAddress! + p * kvDim, vp.baseAddress! + p * kvDim, Int32(p), Int32(n), 1)
                } }
                // several complete blocks by now; then around the segment boundaries (nk = 260, 516)
                let end = p + n
                if (end >= 100 && end <= 160) || [250, 270, 300, 520, 600].contains(end) {
                    var lam = eak_span()
                    lam.n_sink = Int32(S)
                    lam.window = end % 20 == 0 ? 300 : 40  // a window of 300 spans two segments
                    // DHSA lists per kv head: every key (must equal dense), and a sparse mix of runs
                    // (scored by block passes) and lone keys in a block (scored one by one)
                    let full = (0..<nKV).flatMap { _ in (0..<end).map { Int32($0) } }
                    let perHead: [[Int32]] = (0..<nKV).map { h in
                        (0..<end).filter { j in j < 3 || (j - S) / G % 2 == h % 2 || j % 11 == h || j >= end - 12 }.map { Int32($0) }
                    }
                    let nSparse = perHead.map(\.count).min()!  // one length for every kv head
                    let sparse = perHead.flatMap { $0.prefix(nSparse) }
                    func listed(_ keys: [Int32], _ nk: Int, _ nTok: Int, _ pos0: Int, threads: Int = 2) -> [UInt32] {
                        keys.withUnsafeBufferPointer { kp in
                            var sp = eak_span()
                            sp.keys = kp.baseAddress
                            sp.n_keys = Int32(nk)
                            sp.keys_stride = Int32(nk)
                            return attend(nTok, pos0, sp, threads: threads)
                        }
                    }
                    for nTok in [1, n] {
                        let pos0 = end - nTok
                        func same(_ a: [UInt32], _ b: [UInt32], _ what: String) {
                            let bad = a.indices.first { a[$0] != b[$0] }
                            XCTAssertNil(bad, "\(nKV)x\(nHead) n_tok \(nTok) at \(pos0): \(what), first difference at \(bad ?? -1)")
                        }
                        same(listed(full, end, nTok, pos0), attend(nTok, pos0, nil), "a list of every key != dense")
                        let simd = listed(sparse, nSparse, nTok, pos0)
                        same(simd, listed(sparse, nSparse, nTok, pos0, threads: 1), "sparse list: 2 threads != 1")
                        same(simd, listed(sparse, nSparse, nTok, pos0, threads: 3), "sparse list: 2 threads != 3")
                        eak_force_generic(1)
                        let generic = listed(sparse, nSparse, nTok, pos0)
                        eak_force_generic(2)
                        let avx2 = listed(sparse, nSparse, nTok, pos0)
                        eak_force_generic(0)
                        same(simd, generic, "sparse list, SIMD != generic")
                        same(avx2, generic, "sparse list, AVX2 form != generic")
                    }
                    for (nTok, span) in [(1, nil), (n, nil), (1, lam), (n, lam)] as [(Int, eak_span?)] {
                        let pos0 = p + n - nTok
                        let simd = attend(nTok, pos0, span)
                        let one = attend(nTok, pos0, span, threads: 1), three = attend(nTok, pos0, span, threads: 3)
                        XCTAssertEqual(simd, one, "\(nKV)x\(nHead) n_tok \(nTok) at \(pos0): 2 threads != 1")
                        XCTAssertEqual(simd, three, "\(nKV)x\(nHead) n_tok \(nTok) at \(pos0): 2 threads != 3")
                        eak_force_generic(1)
                        let generic = attend(nTok, pos0, span)
                        eak_force_generic(2) // the AVX2 forms where the AVX-512 ones would run
                        let avx2 = attend(nTok, pos0, span)
                        eak_force_generic(0)
                        let bad = simd.indices.first { simd[$0] != generic[$0] }
                        XCTAssertNil(bad, "n_tok \(nTok) at \(pos0), span \(span == nil ? "dense" : "Λ"): first difference at \(bad ?? -1)")
                        let bad2 = avx2.indices.first { avx2[$0] != generic[$0] }
                        XCTAssertNil(bad2, "n_tok \(nTok) at \(pos0), span \(span == nil ? "dense" : "Λ"): AVX2 form, first difference at \(bad2 ?? -1)")
                        if nTok == 1 {
                            let want = kvqReference(c, q: q, nHead: nHead, pos: pos0, sinks: span == nil ? S : Int(lam.n_sink),
                                                    window: span == nil ? 0 : Int(lam.window))
                            let worst = zip(simd, want).map { abs(Double(Float(bitPattern: $0.0)) - $0.1) }.max()!
                            XCTAssertLessThan(worst, 2e-5, "\(nKV)x\(nHead) decode at \(pos0), span \(span == nil ? "dense" : "Λ \(lam.window)"): vs double reference")
                        }
                    }
                }
                p += n
            }
        } } } } } }
    }

    /// Attention of one query (position pos, every head) over the cache's own contents in double:
    /// exact sinks and ring rows as stored, quantized keys and values decoded from their records
    /// (fp16 scale and offset, 4-bit codes low nibble first), keys = the first `sinks` positions
    /// and the last `window` (0 = all).
    func kvqReference(_ c: eak_kvq, q: [Float], nHead: Int, pos: Int, sinks: Int, window: Int) -> [Double] {
        let d = Int(c.head_dim), G = Int(c.group), S = Int(c.n_sink), nKV = Int(c.n_kv_head), kvDim = nKV * d
        let rb = Int(eak_kvq_record_bytes(c.bits, c.group)), grp = nHead / nKV
        let qend = S + (pos + 1 > S ? (pos + 1 - S) / G : 0) * G
        func rec(_ base: UnsafeMutablePointer<UInt8>, _ at: Int, _ e: Int) -> Double {
            let r = base + at
            let dd = Double(Float16(bitPattern: UInt16(r[0]) | UInt16(r[1]) << 8))
            let m = Double(Float16(bitPattern: UInt16(r[2]) | UInt16(r[3]) << 8))
            return Double((r[4 + e / 2] >> (4 * UInt8(e % 2))) & 15) * dd + m
        }
        func key(_ j: Int, _ kvh: Int, _ ch: Int) -> Double {
            if j < S { return Double(c.sink_k[j * kvDim + kvh * d + ch]) }
            if j >= qend { return Double(c.ring_k[((j - S) % Int(c.ring)) * kvDim + kvh * d + ch]) }
            return rec(c.kq, (((j - S) / G * nKV + kvh) * d + ch) * rb, (j - S) % G)
        }
        func value(_ j: Int, _ kvh: Int, _ ch: Int) -> Double {
            if j < S { return Double(c.sink_v[j * kvDim + kvh * d + ch]) }
            if j >= qend { return Double(c.ring_v[((j - S) % Int(c.ring)) * kvDim + kvh * d + ch]) }
            return rec(c.vq, (((j - S) * nKV + kvh) * (d / G) + ch / G) * rb, ch % G)
        }
        let w0 = window > 0 ? max(pos - window + 1, sinks) : 0
        let keys = Array(0..<min(sinks, pos + 1)) + Array(max(w0, min(sinks, pos + 1))...pos)
        var out = [Double](repeating: 0, count: nHead * d)
        for h in 0..<nHead {
            let kvh = h / grp
            let sc = keys.map { j in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * key(j, kvh, $1) } * 0.125 }
            let mx = sc.max()!, e = sc.map { Foundation.exp($0 - mx) }, sum = e.reduce(0, +)
            for ch in 0..<d {
                out[h * d + ch] = zip(keys, e).reduce(0.0) { $0 + $1.1 * value($1.0, kvh, ch) } / sum
            }
        }
        return out
    }

    /// RoPE: rotating pairs equals multiplying complex numbers by e^{i pos theta_i}.
    func testRopeMatchesComplexRotation() {
        var rng = TestRNG(state: 9)
        let hd = 64, heads = 3, pos = 37
        var x = [Float](repeating: 0, count: hd * heads)
        for i in 0..<x.count { x[i] = rng.float(-1, 1) }
        for neox in [Int32(0), 1] {
            var y = x
            eak_rope(&y, Int32(heads), Int32(hd), Int32(pos), 10000, 1, neox)
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let a = h * hd + (neox == 1 ? i : 2 * i), b = h * hd + (neox == 1 ? i + hd / 2 : 2 * i + 1)
                    let th = Double(pos) * Foundation.pow(10000.0, -2.0 * Double(i) / Double(hd))
                    let re = Double(x[a]) * cos(th) - Double(x[b]) * sin(th)
                    let im = Double(x[a]) * sin(th) + Double(x[b]) * cos(th)
                    XCTAssertEqual(Double(y[a]), re, accuracy: 1e-5)
                    XCTAssertEqual(Double(y[b]), im, accuracy: 1e-5)
                }
            }
        }
    }

    /// The batched RoPE (angles once per row, rows over threads) gives eak_rope's bits for every row
    /// of queries and keys, at 1 and 2 threads, both pair layouts.
    func testRopeRowsEqualsRopePerRow() {
        var rng = TestRNG(state: 41)
        let hd = 64, qh = 9, kh = 3, n = 21, pos0 = 1000
        let q = (0..<(n * qh * hd)).map { _ in rng.float(-2, 2) }
        let k = (0..<(n * kh * hd)).map { _ in rng.float(-2, 2) }
        for neox in [Int32(0), 1] {
            var wq = q, wk = k
            for i in 0..<n {
                wq.withUnsafeMutableBufferPointer {
                    eak_rope($0.baseAddress! + i * qh * hd, Int32(qh), Int32(hd), Int32(pos0 + i), 100000, 0.5, neox)
                }
                wk.withUnsafeMutableBufferPointer {
                    eak_rope($0.baseAddress! + i * kh * hd, Int32(kh), Int32(hd), Int32(pos0 + i), 100000, 0.5, neox)
                }
            }
            for th in [Int32(1), 2] {
                var gq = q, gk = k
                eak_rope_rows(&gq, Int32(qh), &gk, Int32(kh), Int32(hd), Int32(n), Int32(pos0), 100000, 0.5, neox, th)
                XCTAssertEqual(gq.map(\.bitPattern), wq.map(\.bitPattern), "queries, neox \(neox), \(th) threads")
                XCTAssertEqual(gk.map(\.bitPattern), wk.map(\.bitPattern), "keys, neox \(neox), \(th) threads")
            }
        }
    }

    /// SwiGLU and GeGLU gates against the formulas in double (silu uses a float exp, relative error
    /// a few 1e-7; both within 1e-6 of the value plus a small part of |x u| for the tails), and the same bits on 1 and 2 threads (n above the parallel threshold, ragged).
    func testGluMatchesFormulaAndThreads() {
        var rng = TestRNG(state: 43)
        let n = 3 * 16384 + 37
        let g = (0..<n).map { i in i % 97 == 0 ? rng.float(-120, 120) : rng.float(-12, 12) }
        let u = (0..<n).map { _ in rng.float(-3, 3) }
        for gelu in [Int32(0), 1] {
            var one = [Float](repeating: 0, count: n), two = one
            eak_glu(&one, g, u, Int64(n), gelu, 1)
            eak_glu(&two, g, u, Int64(n), gelu, 2)
            XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern), "gelu \(gelu): threads change bits")
            var worst = 0.0
            for i in 0..<n {
                let x = Double(g[i])
                let act = gelu == 1 ? 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                                    : x / (1 + Foundation.exp(-x))
                let want = act * Double(u[i])
                // relative to the value, plus an absolute part for the tails: silu's exp saturates
                // below -87 (1e-7 of |x u| is plenty); the gelu's 1 - 2/(e^2y + 1) is -1 in float
                // once e^2y < 2^-24, an absolute error up to 3e-8 |x u| (1e-6 of |x u| allowed)
                let absPart = (gelu == 1 ? 1e-6 : 1e-7) * abs(x * Double(u[i]))
                let err = abs(Double(one[i]) - want) / (1e-6 * abs(want) + absPart + 1e-37)
                worst = max(worst, err)
            }
            XCTAssertLessThan(worst, 1, "gelu \(gelu): worst error \(worst) of the allowed one")
        }
    }

    /// RMSNorm, the Hadamard rotation and activation quantization split rows over threads: the
    /// same bits as one thread.
    func testRowKernelsSameBitsOnTwoThreads() {
        var rng = TestRNG(state: 47)
        let rows = 37, cols = 576
        let x = (0..<(rows * cols)).map { _ in rng.float(-4, 4) }
        let w = (0..<cols).map { _ in rng.float(0.5, 1.5) }
        var n1 = [Float](repeating: 0, count: rows * cols), n2 = n1
        eak_rmsnorm(&n1, x, w, Int32(cols), Int32(rows), 1e-5, 0, 1)
        eak_rmsnorm(&n2, x, w, Int32(cols), Int32(rows), 1e-5, 0, 2)
        XCTAssertEqual(n1.map(\.bitPattern), n2.map(\.bitPattern), "rmsnorm")
        var h1 = x, h2 = x
        eak_hadamard(&h1, Int32(rows), Int32(cols), 64, 1)
        eak_hadamard(&h2, Int32(rows), Int32(cols), 64, 2)
        XCTAssertEqual(h1.map(\.bitPattern), h2.map(\.bitPattern), "hadamard")
        var a1 = [eak_act_block](repeating: eak_act_block(), count: rows * cols / 32), a2 = a1
        eak_quantize_act(x, Int32(rows), Int32(cols), &a1, 1)
        eak_quantize_act(x, Int32(rows), Int32(cols), &a2, 2)
        for i in 0..<a1.count {
            XCTAssertEqual(a1[i].d, a2[i].d); XCTAssertEqual(a1[i].s, a2[i].s)
            XCTAssertTrue(withUnsafeBytes(of: a1[i].qs) { b1 in withUnsafeBytes(of: a2[i].qs) { b1.elementsEqual($0) } },
                          "activation block \(i)")
        }
    }

    /// Half-cache attention: the SIMD row kernels (scores, probabilities rounded to half, values four
    /// keys at a time) equal the generic ones bit for bit on long key ranges and a head size with a
    /// tail (68 = 8 * 8 + 4), with and without a window.
    func testHalfAttentionSIMDEqualsGenericOnLongRanges() {
        var rng = TestRNG(state: 23)
        let nHead = 4, nKV = 2, hd = 68, pos0 = 45, n = 6, total = pos0 + n
        let q = (0..<(n * nHead * hd)).map { _ in rng.float(-2, 2) }
        let k16 = (0..<(total * nKV * hd)).map { _ in eak_f32_to_f16(rng.float(-2, 2)) }
        let v16 = (0..<(total * nKV * hd)).map { _ in eak_f32_to_f16(rng.float(-2, 2)) }
        let scale = 1 / Float(hd).squareRoot()
        for window in [0, 13, 30] {
            var span = eak_span()
            span.window = Int32(window)
            var simd = [Float](repeating: 0, count: q.count), generic = simd
            var scratch = [Float](repeating: 0, count: 2 * total)
            eak_attention_f16(q, k16, v16, &simd, Int32(n), Int32(pos0), Int32(nHead), Int32(nKV), Int32(hd),
                              scale, &span, &scratch, 2)
            eak_force_generic(1)
            eak_attention_f16(q, k16, v16, &generic, Int32(n), Int32(pos0), Int32(nHead), Int32(nKV), Int32(hd),
                              scale, &span, &scratch, 1)
            eak_force_generic(0)
            XCTAssertEqual(simd.map(\.bitPattern), generic.map(\.bitPattern), "window \(window)")
            XCTAssertFalse(simd.contains { !$0.isFinite })
        }
    }

    /// Attention kernels (float and half cache) against a direct softmax(qK^T/sqrt(d))V in double,
    /// GQA with 2 groups, with and without a sliding window (last W keys only).
    func testAttentionMatchesDirectFormula() {
        var rng = TestRNG(state: 11)
        let nHead = 4, nKV = 2, hd = 16, pos0 = 5, n = 3, total = pos0 + n
        var q = [Float](repeating: 0, count: n * nHead * hd)
        var k = [Float](repeating: 0, count: total * nKV * hd)
        var v = k
        for i in 0..<q.count { q[i] = rng.float(-1, 1) }
        for i in 0..<k.count { k[i] = rng.float(-1, 1); v[i] = rng.float(-1, 1) }
        var k16 = [UInt16](repeating: 0, count: k.count), v16 = k16
        for i in 0..<k.count { k16[i] = eak_f32_to_f16(k[i]); v16[i] = eak_f32_to_f16(v[i]) }
        let scale = 1 / Float(hd).squareRoot()
        for window in [0, 3] {
            var span = eak_span()
            span.window = Int32(window)
            var out = [Float](repeating: 0, count: q.count), out16 = out
            var scratch = [Float](repeating: 0, count: 2 * total)
            eak_attention(q, k, v, &out, Int32(n), Int32(pos0), Int32(nHead), Int32(nKV), Int32(hd), scale,
                          &span, &scratch, 2)
            eak_attention_f16(q, k16, v16, &out16, Int32(n), Int32(pos0), Int32(nHead), Int32(nKV), Int32(hd),
                              scale, &span, &scratch, 2)
            var out16Generic = out16
            eak_force_generic(1)
            eak_attention_f16(q, k16, v16, &out16Generic, Int32(n), Int32(pos0), Int32(nHead), Int32(nKV),
                              Int32(hd), scale, &span, &scratch, 1)
            eak_force_generic(0)
            XCTAssertEqual(out16, out16Generic, "half attention: SIMD != generic")
            for t in 0..<n {
                for h in 0..<nHead {
                    let kvh = h / (nHead / nKV)
                    let first = window > 0 ? max(0, pos0 + t + 1 - window) : 0
                    var s = [Double]()
                    for j in first...(pos0 + t) {
                        var d = 0.0
                        for c in 0..<hd { d += Double(q[(t * nHead + h) * hd + c]) * Double(k[(j * nKV + kvh) * hd + c]) }
                        s.append(d * Double(scale))
                    }
                    let m = s.max()!
                    let e = s.map { Foundation.exp($0 - m) }
                    let z = e.reduce(0, +)
                    for c in 0..<hd {
                        var o = 0.0
                        for j in 0..<e.count { o += e[j] / z * Double(v[((first + j) * nKV + kvh) * hd + c]) }
                        XCTAssertEqual(Double(out[(t * nHead + h) * hd + c]), o, accuracy: 1e-5, "window \(window)")
                        // half cache: inputs rounded to 2^-11 relative; outputs within a few steps
                        XCTAssertEqual(Double(out16[(t * nHead + h) * hd + c]), o, accuracy: 4e-3, "half, window \(window)")
                    }
                }
            }
        }
    }

    /// Float matmul (any type, decoded rows) equals a double reference, and batching does not change it.
    func testFloatMatmulF16() {
        var rng = TestRNG(state: 5)
        let rows = 9, cols = 40, n = 6
        var w16 = [UInt16](repeating: 0, count: rows * cols)
        var wf = [Float](repeating: 0, count: rows * cols)
        for i in 0..<w16.count {
            let f = rng.float(-1, 1)
            w16[i] = halfBits(f)
            wf[i] = Float(Float16(bitPattern: w16[i]))
        }
        var x = [Float](repeating: 0, count: n * cols)
        for i in 0..<x.count { x[i] = rng.float(-1, 1) }
        var y = [Float](repeating: 0, count: n * rows)
        eak_matmul(1, w16, cols * 2, Int32(rows), Int32(cols), x, Int32(n), &y, 2)
        // the SIMD float kernel and the generic one share one summation order: bit-identical
        var yGen = y
        eak_force_generic(1)
        eak_matmul(1, w16, cols * 2, Int32(rows), Int32(cols), x, Int32(n), &yGen, 1)
        eak_force_generic(0)
        XCTAssertEqual(y, yGen)
        for t in 0..<n {
            var y1 = [Float](repeating: 0, count: rows)
            Array(x[(t * cols)..<((t + 1) * cols)]).withUnsafeBufferPointer {
                eak_matmul(1, w16, cols * 2, Int32(rows), Int32(cols), $0.baseAddress, 1, &y1, 1)
            }
            for r in 0..<rows {
                var ref = 0.0
                for c in 0..<cols { ref += Double(wf[r * cols + c]) * Double(x[t * cols + c]) }
                XCTAssertEqual(Double(y[t * rows + r]), ref, accuracy: 1e-5)
                XCTAssertEqual(Double(y1[r]), ref, accuracy: 1e-5)
            }
        }
    }
}
