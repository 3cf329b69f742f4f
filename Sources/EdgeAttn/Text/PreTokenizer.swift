/// The smollm pre-tokenizer: every Unicode number character (categories Nd, Nl, No) is a piece of
/// its own; the text between them is split by the GPT-2 rules, tried in this order at each position:
///   's 't 're 've 'm 'll 'd  |  ␠?Letters+  |  ␠?Numbers+  |  ␠?Others+  |  Spaces+(?!\S)  |  Spaces+
/// (Letters = L*, Numbers = N*, Spaces = Unicode White_Space, Others = none of these; ␠ is U+0020).
/// No regex engine: a hand-written scanner over the decoded scalars, so it runs in Embedded Swift.
enum PreTokenizer {
    static let other: UInt8 = 0, letter: UInt8 = 1, number: UInt8 = 2, space: UInt8 = 3

    @inline(__always)
    static func classify(_ v: UInt32) -> UInt8 {
        if v < 0x80 {
            if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) { return letter }
            if v >= 0x30 && v <= 0x39 { return number }
            if v == 0x20 || (v >= 0x09 && v <= 0x0D) { return space }
            return other
        }
        guard let sc = Unicode.Scalar(v) else { return other }
        let p = sc.properties
        if p.isWhitespace { return space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return other
        }
    }

    /// Decodes UTF-8 into scalars with their byte offsets; an invalid byte becomes U+FFFD covering
    /// that one byte, so byte-level BPE still sees the original bytes.
    static func decode(_ t: UnsafeBufferPointer<UInt8>, scalars: inout [UInt32], starts: inout [Int]) {
        var i = 0
        let n = t.count
        while i < n {
            let b0 = UInt32(t[i])
            var len = 1
            var v: UInt32 = 0xFFFD
            if b0 < 0x80 {
                v = b0
            } else if b0 >= 0xC2 && b0 <= 0xDF, i + 1 < n, t[i + 1] & 0xC0 == 0x80 {
                v = (b0 & 0x1F) << 6 | UInt32(t[i + 1] & 0x3F)
                len = 2
            } else if b0 >= 0xE0 && b0 <= 0xEF, i + 2 < n, t[i + 1] & 0xC0 == 0x80, t[i + 2] & 0xC0 == 0x80 {
                let c = (b0 & 0x0F) << 12 | UInt32(t[i + 1] & 0x3F) << 6 | UInt32(t[i + 2] & 0x3F)
                if c >= 0x800 && !(c >= 0xD800 && c <= 0xDFFF) {
                    v = c
                    len = 3
                }
            } else if b0 >= 0xF0 && b0 <= 0xF4, i + 3 < n, t[i + 1] & 0xC0 == 0x80, t[i + 2] & 0xC0 == 0x80,
                      t[i + 3] & 0xC0 == 0x80 {
                let c = (b0 & 0x07) << 18 | UInt32(t[i + 1] & 0x3F) << 12 | UInt32(t[i + 2] & 0x3F) << 6
                    | UInt32(t[i + 3] & 0x3F)
                if c >= 0x10000 && c <= 0x10FFFF {
                    v = c
                    len = 4
                }
            }
            scalars.append(v)
            starts.append(i)
            i += len
        }
        starts.append(n)
    }

    /// Calls emit(byteStart, byteEnd) for each piece of the text, in order.
    static func split(_ text: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void) {
        var s: [UInt32] = []
        var starts: [Int] = []
        s.reserveCapacity(text.count)
        starts.reserveCapacity(text.count + 1)
        decode(text, scalars: &s, starts: &starts)
        var cls = [UInt8](repeating: 0, count: s.count)
        for k in 0..<s.count { cls[k] = classify(s[k]) }
        // numbers stand alone; split the runs between them
        var a = 0
        var k = 0
        while k < s.count {
            if cls[k] == number {
                if a < k { splitRun(s, cls, a, k, starts, emit) }
                emit(starts[k], starts[k + 1])
                a = k + 1
            }
            k += 1
        }
        if a < s.count { splitRun(s, cls, a, s.count, starts, emit) }
    }

    static func splitRun(_ s: [UInt32], _ c: [UInt8], _ a: Int, _ b: Int, _ starts: [Int],
                         _ emit: (Int, Int) -> Void) {
        var i = a
        while i < b {
            let e = matchAt(s, c, i, b)
            emit(starts[i], starts[e])
            i = e
        }
    }

    /// End (exclusive) of the piece starting at i, by the rules in order.
    static func matchAt(_ s: [UInt32], _ c: [UInt8], _ i: Int, _ b: Int) -> Int {
        let apos: UInt32 = 0x27
        if s[i] == apos && i + 1 < b {
            let n1 = s[i + 1]
            if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 { return i + 2 }  // s t m d
            if i + 2 < b {
                let n2 = s[i + 2]
                if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                    return i + 3  // re ve ll
                }
            }
        }
        let j = (s[i] == 0x20 && i + 1 < b && c[i + 1] != space) ? i + 1 : i
        let k = c[j]
        if k != space {
            var e = j + 1
            while e < b && c[e] == k { e += 1 }
            return e
        }
        // whitespace run starting at i
        var e = i + 1
        while e < b && c[e] == space { e += 1 }
        if e == b { return e }          // \s+ at the end
        if e - i >= 2 { return e - 1 }  // \s+(?!\S): leave the last one to lead the next piece
        return e                        // \s+
    }
}
