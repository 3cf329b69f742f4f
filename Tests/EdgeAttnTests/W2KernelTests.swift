import EAKernels
import Foundation
import XCTest
@testable import EdgeAttn

/// The W2 format and its integer kernel: decoding follows the documented bit layout, the integer
/// product equals the dot of the decoded operands, and SIMD equals generic exactly.
final class W2KernelTests: XCTestCase {
    /// Random W2 rows with valid scales; also returns the codes and (d, m) per group, as the test
    /// placed them (an encoder written from the layout description, independent of the kernels).
    func randomW2(rows: Int, cols: Int, group: Int, rng: inout TestRNG) -> (bytes: [UInt8], values: [Float]) {
        let gb = 4 + group / 4, ng = cols / group
        var bytes = [UInt8](repeating: 0, count: rows * ng * gb)
        var values = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for g in 0..<ng {
                let base = (r * ng + g) * gb
                let d = Float16(rng.float(0.001, 0.05)), m = Float16(rng.float(-0.1, 0.02))
                bytes[base] = UInt8(d.bitPattern & 0xFF); bytes[base + 1] = UInt8(d.bitPattern >> 8)
                bytes[base + 2] = UInt8(m.bitPattern & 0xFF); bytes[base + 3] = UInt8(m.bitPattern >> 8)
                for e in 0..<group {
                    let q = UInt8(rng.next() % 4)
                    let chunk = e / 32, j = e % 32
                    bytes[base + 4 + chunk * 8 + j % 8] |= q << UInt8(2 * (j / 8))
                    values[r * cols + g * group + e] = Float(q) * Float(d) + Float(m)
                }
            }
        }
        return (bytes, values)
    }

    func testRowBytesAndRejectedShapes() {
        XCTAssertEqual(eak_w2_row_bytes(576, 64), 9 * 20)
        XCTAssertEqual(eak_w2_row_bytes(1536, 128), 12 * 36)
        XCTAssertEqual(eak_w2_row_bytes(576, 128), 0)  // 128 does not divide 576
        XCTAssertEqual(eak_w2_row_bytes(64, 48), 0)    // not a multiple of 32
        var out = [Float](repeating: 0, count: 64)
        XCTAssertEqual(eak_w2_dequantize_row([UInt8](repeating: 0, count: 64), &out, 64, 48), -1)
    }

    func testDequantizeMatchesLayout() {
        var rng = TestRNG(state: 11)
        for group in [32, 64, 128, 96, 192, 576] {
            let rows = 3, cols = group * 4
            let (bytes, values) = randomW2(rows: rows, cols: cols, group: group, rng: &rng)
            let rb = Int(eak_w2_row_bytes(Int32(cols), Int32(group)))
            var out = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                bytes.withUnsafeBytes { XCTAssertEqual(eak_w2_dequantize_row($0.baseAddress! + r * rb, &out, Int32(cols), Int32(group)), 0) }
                XCTAssertEqual(out, Array(values[(r * cols)..<((r + 1) * cols)]), "group \(group) row \(r)")
            }
        }
    }

    /// y = sum_b dw*dx*int_dot + m*s equals the double-precision dot of the decoded weights with the
    /// decoded activations (dx * q, and the offset against s = fp16(dx * sum q)) to float rounding.
    func testIntegerProductEqualsDecodedDot() {
        var rng = TestRNG(state: 12)
        for (group, cols, nTok) in [(64, 576, 1), (128, 1536, 3), (32, 96, 5), (96, 576, 2),
                                    (192, 576, 2), (576, 576, 3), (512, 1536, 1), (1536, 1536, 2)] {
            let rows = 13
            let (bytes, values) = randomW2(rows: rows, cols: cols, group: group, rng: &rng)
            let x = (0..<(nTok * cols)).map { _ in rng.float(-2, 2) }
            var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols / 32)
            eak_quantize_act(x, Int32(nTok), Int32(cols), &act, 1)
            var y = [Float](repeating: 0, count: nTok * rows)
            eak_matmul_w2(bytes, Int(eak_w2_row_bytes(Int32(cols), Int32(group))), Int32(rows), Int32(cols),
                          Int32(group), act, Int32(nTok), &y, 2)
            for t in 0..<nTok {
                for r in 0..<rows {
                    var ref = 0.0, mag = 0.0
                    for b in 0..<(cols / 32) {
                        let a = act[t * cols / 32 + b]
                        let qs = withUnsafeBytes(of: a.qs) { Array($0.bindMemory(to: Int8.self)) }
                        // split each decoded weight into q*d (against dx*q) and m (against s)
                        let g = (b * 32) / group
                        let gbase = (r * (cols / group) + g) * (4 + group / 4)
                        let m = Double(Float(Float16(bitPattern: UInt16(bytes[gbase + 2]) | UInt16(bytes[gbase + 3]) << 8)))
                        for j in 0..<32 {
                            let wv = Double(values[r * cols + b * 32 + j]) - m
                            ref += wv * Double(a.d) * Double(qs[j])
                            mag += abs(wv * Double(a.d) * Double(qs[j]))
                        }
                        ref += m * Double(a.s)
                        mag += abs(m * Double(a.s))
                    }
                    XCTAssertEqual(Double(y[t * rows + r]), ref, accuracy: 1e-5 * mag + 1e-6, "g\(group) t\(t) r\(r)")
                }
            }
        }
    }

    /// The dispatched kernel (AVX2 here; NEON/dotprod are covered by ea_self_test under qemu) equals
    /// the generic one bit for bit, for one token (fused path) and many (unpack path).
    func testSIMDEqualsGenericExactly() {
        var rng = TestRNG(state: 13)
        for (group, cols, rows, nTok) in [(64, 576, 7, 1), (64, 576, 9, 4), (64, 576, 6, 7), (128, 1536, 5, 1), (32, 32, 3, 33), (96, 288, 4, 2),
                                          (192, 576, 5, 1), (576, 576, 9, 4), (512, 1536, 6, 7), (1536, 1536, 5, 1)] {
            let (bytes, _) = randomW2(rows: rows, cols: cols, group: group, rng: &rng)
            let x = (0..<(nTok * cols)).map { _ in rng.float(-3, 3) }
            var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols / 32)
            eak_quantize_act(x, Int32(nTok), Int32(cols), &act, 1)
            let rb = Int(eak_w2_row_bytes(Int32(cols), Int32(group)))
            var simd = [Float](repeating: 0, count: nTok * rows), generic = simd
            eak_matmul_w2(bytes, rb, Int32(rows), Int32(cols), Int32(group), act, Int32(nTok), &simd, 2)
            eak_force_generic(1)
            eak_matmul_w2(bytes, rb, Int32(rows), Int32(cols), Int32(group), act, Int32(nTok), &generic, 2)
            eak_force_generic(0)
            XCTAssertEqual(simd.map(\.bitPattern), generic.map(\.bitPattern), "g\(group) cols \(cols) tokens \(nTok)")
        }
        var report = [CChar](repeating: 0, count: 200)
        XCTAssertEqual(eak_self_test(7, &report, 200), 0, String(cString: report))
    }

    /// Panels: packing keeps every weight (decoded values equal the layout's), and the panel kernel
    /// (dispatched and generic) equals the row kernel bit for bit, for token counts that leave
    /// partial passes and tiles, on 1 and 2 threads.
    func testPanelsEqualRowsExactly() {
        var rng = TestRNG(state: 14)
        for (group, cols, rows, nTok) in [(64, 576, 16, 1), (64, 576, 48, 5), (128, 1536, 32, 3), (32, 96, 16, 37),
                                          (96, 288, 64, 2), (64, 192, 16, 70), (192, 576, 16, 1), (576, 576, 32, 5),
                                          (256, 1536, 16, 3), (1536, 1536, 16, 1)] {
            let (bytes, values) = randomW2(rows: rows, cols: cols, group: group, rng: &rng)
            let rb = Int(eak_w2_row_bytes(Int32(cols), Int32(group)))
            var packed = bytes
            var scratch = [UInt8](repeating: 0, count: 16 * rb)
            XCTAssertEqual(eak_w2_pack_panels(&packed, rb, Int32(rows), Int32(cols), Int32(group), &scratch), 0)
            XCTAssertNotEqual(packed, bytes, "packing reorders the bytes")
            var out = [Float](repeating: 0, count: cols)
            for r in [0, 5, rows - 1] {
                XCTAssertEqual(eak_w2p_dequantize_row(packed, rb, Int32(r), &out, Int32(cols), Int32(group)), 0)
                XCTAssertEqual(out, Array(values[(r * cols)..<((r + 1) * cols)]), "group \(group) row \(r)")
            }
            let x = (0..<(nTok * cols)).map { _ in rng.float(-3, 3) }
            var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols / 32)
            eak_quantize_act(x, Int32(nTok), Int32(cols), &act, 1)
            var want = [Float](repeating: 0, count: nTok * rows)
            eak_matmul_w2(bytes, rb, Int32(rows), Int32(cols), Int32(group), act, Int32(nTok), &want, 1)
            for threads: Int32 in [1, 2] {
                var got = [Float](repeating: 0, count: nTok * rows), gen = got
                eak_matmul_w2p(packed, rb, Int32(rows), Int32(cols), Int32(group), act, Int32(nTok), &got, threads)
                eak_force_generic(1)
                eak_matmul_w2p(packed, rb, Int32(rows), Int32(cols), Int32(group), act, Int32(nTok), &gen, threads)
                eak_force_generic(0)
                XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(String(cString: eak_w2p_kernel_name())) g\(group) cols \(cols) rows \(rows) tokens \(nTok) threads \(threads)")
                XCTAssertEqual(gen.map(\.bitPattern), want.map(\.bitPattern), "generic g\(group) cols \(cols) tokens \(nTok)")
            }
        }
        // refused: rows not a multiple of 16, a row size that does not match cols/group
        let rb = Int(eak_w2_row_bytes(64, 32))
        var buf = [UInt8](repeating: 7, count: 24 * rb), scratch = [UInt8](repeating: 0, count: 16 * rb)
        XCTAssertEqual(eak_w2_pack_panels(&buf, rb, 24, 64, 32, &scratch), -1)
        XCTAssertEqual(eak_w2_pack_panels(&buf, rb + 1, 16, 64, 32, &scratch), -1)
        XCTAssertEqual(buf, [UInt8](repeating: 7, count: 24 * rb), "a refused packing changes nothing")
        var report = [CChar](repeating: 0, count: 200)
        XCTAssertEqual(eak_w2p_self_test(9, &report, 200), 0, String(cString: report))
    }

    /// Products grouped in one region (q/k/v, gate/up): each result equals its own eak_matmul_w2p
    /// call bit for bit, whatever the share of panels a thread gets across the jobs (job sizes that
    /// split mid-job on two threads), for one and many tokens; a malformed job runs nothing.
    func testGroupedPanelProductsEqualSeparateCalls() {
        var rng = TestRNG(state: 15)
        for (shapes, nTok) in [([(576, 64, 48), (576, 64, 16), (576, 64, 16)], 1), ([(192, 64, 32), (384, 192, 16)], 3),
                               ([(96, 32, 16), (96, 96, 64), (96, 32, 80)], 37)] {
            let cols0 = shapes[0].0
            let x = (0..<(nTok * cols0 * 2)).map { _ in rng.float(-3, 3) }
            var act = [eak_act_block](repeating: eak_act_block(), count: nTok * cols0 * 2 / 32)
            eak_quantize_act(x, Int32(nTok), Int32(cols0 * 2), &act, 1)
            var packed: [[UInt8]] = [], want: [[Float]] = []
            for (cols, group, rows) in shapes {
                let (bytes, _) = randomW2(rows: rows, cols: cols, group: group, rng: &rng)
                let rb = Int(eak_w2_row_bytes(Int32(cols), Int32(group)))
                var p = bytes, scratch = [UInt8](repeating: 0, count: 16 * rb)
                XCTAssertEqual(eak_w2_pack_panels(&p, rb, Int32(rows), Int32(cols), Int32(group), &scratch), 0)
                // the activations of a narrower matrix: the first cols of each token's row of blocks
                var a = [eak_act_block]()
                for t in 0..<nTok { a += act[(t * cols0 * 2 / 32)..<(t * cols0 * 2 / 32 + cols / 32)] }
                var y = [Float](repeating: 0, count: nTok * rows)
                eak_matmul_w2p(p, rb, Int32(rows), Int32(cols), Int32(group), a, Int32(nTok), &y, 1)
                packed.append(p)
                want.append(y)
            }
            // C-side copies: the jobs hold raw pointers across one call
            let n = shapes.count
            let ws = packed.map { p -> UnsafeMutableRawPointer in
                let m = UnsafeMutableRawPointer.allocate(byteCount: p.count, alignment: 64)
                p.withUnsafeBytes { m.copyMemory(from: $0.baseAddress!, byteCount: p.count) }
                return m
            }
            let acts = shapes.map { s -> UnsafeMutablePointer<eak_act_block> in
                let m = UnsafeMutablePointer<eak_act_block>.allocate(capacity: nTok * s.0 / 32)
                for t in 0..<nTok { for b in 0..<(s.0 / 32) { m[t * s.0 / 32 + b] = act[t * cols0 * 2 / 32 + b] } }
                return m
            }
            let ys = shapes.map { UnsafeMutablePointer<Float>.allocate(capacity: nTok * $0.2) }
            defer { ws.forEach { $0.deallocate() }; acts.forEach { $0.deallocate() }; ys.forEach { $0.deallocate() } }
            func job(_ k: Int) -> eak_w2p_job {
                let (cols, group, rows) = shapes[k]
                return eak_w2p_job(w: ws[k], row_bytes: Int(eak_w2_row_bytes(Int32(cols), Int32(group))), rows: Int32(rows),
                                   cols: Int32(cols), group: Int32(group), xq: acts[k], y: ys[k])
            }
            for threads: Int32 in [1, 2] {
                for k in 0..<n { ys[k].update(repeating: .nan, count: nTok * shapes[k].2) }
                var j0 = job(0), j1 = job(1)
                if n > 2 {
                    var j2 = job(2)
                    eak_matmul_w2p_jobs(&j0, &j1, &j2, Int32(nTok), threads)
                } else {
                    eak_matmul_w2p_jobs(&j0, &j1, nil, Int32(nTok), threads)
                }
                for k in 0..<n {
                    let got = Array(UnsafeBufferPointer(start: ys[k], count: nTok * shapes[k].2))
                    XCTAssertEqual(got.map(\.bitPattern), want[k].map(\.bitPattern), "job \(k) of \(n), tokens \(nTok), threads \(threads)")
                }
            }
        }
        // a job whose rows are no whole panels: nothing runs, not even the good job
        let (bytes, _) = randomW2(rows: 16, cols: 64, group: 64, rng: &rng)
        let rb = Int(eak_w2_row_bytes(64, 64))
        let a = [eak_act_block](repeating: eak_act_block(), count: 2)
        var y = [Float](repeating: 42, count: 16), z = [Float](repeating: 42, count: 16)
        bytes.withUnsafeBytes { w in a.withUnsafeBufferPointer { ap in
            y.withUnsafeMutableBufferPointer { yp in z.withUnsafeMutableBufferPointer { zp in
                var good = eak_w2p_job(w: w.baseAddress!, row_bytes: rb, rows: 16, cols: 64, group: 64, xq: ap.baseAddress!, y: yp.baseAddress!)
                var bad = eak_w2p_job(w: w.baseAddress!, row_bytes: rb, rows: 15, cols: 64, group: 64, xq: ap.baseAddress!, y: zp.baseAddress!)
                eak_matmul_w2p_jobs(&good, &bad, nil, 1, 2)
            } }
        } }
        XCTAssertEqual(y, [Float](repeating: 42, count: 16))
        XCTAssertEqual(z, [Float](repeating: 42, count: 16))
    }
}
