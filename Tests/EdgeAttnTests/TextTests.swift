import XCTest
@testable import EdgeAttn

final class PreTokenizerTests: XCTestCase {
    func pieces(_ s: String) -> [String] {
        var out: [String] = []
        var b = Array(s.utf8)
        b.withUnsafeMutableBufferPointer { buf in
            let t = UnsafeBufferPointer(buf)
            PreTokenizer.split(t) { a, e in out.append(String(decoding: UnsafeBufferPointer(rebasing: t[a..<e]), as: UTF8.self)) }
        }
        return out
    }

    func testGPT2RulesWithIsolatedDigits() {
        XCTAssertEqual(pieces("Hello world"), ["Hello", " world"])
        XCTAssertEqual(pieces("I'll don't WE'LL"), ["I", "'ll", " don", "'t", " WE", "'", "LL"])
        XCTAssertEqual(pieces("abc 123"), ["abc", " ", "1", "2", "3"])
        XCTAssertEqual(pieces("a  b"), ["a", " ", " b"])
        XCTAssertEqual(pieces("a \n\nb"), ["a", " \n", "\n", "b"])
        XCTAssertEqual(pieces("x...  "), ["x", "...", "  "])
        XCTAssertEqual(pieces(" !?"), [" !?"])
        XCTAssertEqual(pieces("café ½"), ["café", " ", "½"])
        XCTAssertEqual(pieces("日本語 テスト"), ["日本語", " テスト"])
    }

    /// Pieces always tile the input exactly, including invalid UTF-8.
    func testPiecesTileInput() {
        var rng = TestRNG(state: 1)
        for _ in 0..<200 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(rng.next() % 40) {
                let r = rng.next() % 10
                bytes.append(r < 3 ? 0x20 : r < 5 ? UInt8(0x30 + rng.next() % 10) : r < 6 ? 0x27 : r < 7 ? UInt8(0x80 + rng.next() % 0x7F) : UInt8(0x61 + rng.next() % 26))
            }
            var covered = 0
            bytes.withUnsafeBufferPointer { t in
                PreTokenizer.split(t) { a, e in
                    XCTAssertEqual(a, covered)
                    XCTAssertGreaterThan(e, a)
                    covered = e
                }
            }
            XCTAssertEqual(covered, bytes.count)
        }
    }
}

final class SamplerTests: XCTestCase {
    func testGreedyIsArgmaxAndPenaltyApplies() throws {
        var p = SamplerParams()
        p.temperature = 0
        let s = try Sampler(vocabSize: 5, params: p)
        let logits: [Float] = [1, 3, 2, 3, -1]
        XCTAssertEqual(s.sample(logits), 1)  // lowest index wins ties
        var q = SamplerParams()
        q.repeatPenalty = 2
        let s2 = try Sampler(vocabSize: 5, params: q)
        s2.accept(1)
        XCTAssertEqual(s2.sample(logits), 3)  // 3/2 < 3
    }

    func testSeededSamplingIsDeterministicAndFollowsDistribution() throws {
        var p = SamplerParams()
        p.temperature = 1
        p.topK = 0
        p.topP = 1
        p.minP = 0
        p.seed = 1234
        let logits: [Float] = [0, log(2), log(3), log(4)]  // probabilities 0.1 .. 0.4
        let a = try Sampler(vocabSize: 4, params: p), b = try Sampler(vocabSize: 4, params: p)
        var counts = [0, 0, 0, 0]
        for _ in 0..<20000 {
            let x = a.sample(logits)
            XCTAssertEqual(x, b.sample(logits))
            counts[Int(x)] += 1
        }
        for i in 0..<4 {
            // binomial sd at n=20000 is <= 0.0035; 5 sd
            XCTAssertEqual(Double(counts[i]) / 20000, Double(i + 1) / 10, accuracy: 0.018)
        }
    }

    func testTopKOneAndMinPReduceToGreedy() throws {
        var p = SamplerParams()
        p.temperature = 5
        p.topK = 1
        let s = try Sampler(vocabSize: 4, params: p)
        for _ in 0..<50 { XCTAssertEqual(s.sample([0.1, 0.5, 0.3, 0.2]), 1) }
        var q = SamplerParams()
        q.temperature = 1
        q.topK = 0
        q.minP = 0.9
        let s2 = try Sampler(vocabSize: 3, params: q)
        for _ in 0..<50 { XCTAssertEqual(s2.sample([0, 5, 4]), 1) }  // e^-1 < 0.9
    }

    func testBadParamsRejected() {
        var p = SamplerParams()
        p.topP = 0
        XCTAssertThrowsError(try Sampler(vocabSize: 4, params: p))
        p = SamplerParams()
        p.repeatPenalty = -1
        XCTAssertThrowsError(try Sampler(vocabSize: 4, params: p))
        XCTAssertThrowsError(try Sampler(vocabSize: 0, params: SamplerParams()))
    }
}
