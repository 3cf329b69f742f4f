import EAKernels

/// Tokenizers driven by GGUF metadata (`tokenizer.ggml.*`), two kinds:
///
/// - `gpt2` (SmolLM2): byte-level BPE. (1) special tokens are matched whole, longest first;
///   (2) the smollm pre-tokenizer splits every Unicode number into its own piece, then applies the
///   GPT-2 split rules (PreTokenizer.swift); (3) each piece's UTF-8 bytes start as byte tokens and the
///   lowest-ranked adjacent merge is applied until none applies.
/// - `llama` (SentencePiece BPE, Gemma): spaces become U+2581; the text is split into UTF-8
///   characters and the adjacent pair whose concatenation is the highest-scoring vocabulary token is
///   merged, repeatedly (ties: leftmost); characters outside the vocabulary become <0xXX> byte tokens.
///
/// In both, user-defined tokens are always matched whole and control tokens when parsing specials
/// (llama.cpp's rules).
public final class Tokenizer {
    public enum Kind { case bytePairGPT2, sentencePiece }
    public let kind: Kind
    /// SentencePiece: token scores and whether a space is prefixed to raw text after a special token
    /// or at the start.
    let scores: [Float]
    let addSpacePrefix: Bool
    let unknown: Int32
    public let vocabSize: Int
    /// Token bytes as produced on output, flat with offsets (decoding allocates nothing).
    let tokenBytes: UnsafeMutableBufferPointer<UInt8>
    let tokenOffsets: [Int32]
    let tokenTypes: [Int32]
    /// Token text (byte-level encoded, as in the file) -> id.
    let tokenIndex: [String: Int32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    /// Byte value -> its single-byte token.
    let byteToken: [Int32]
    /// Tokens matched whole: (bytes, id, always), longest first; `always` (user-defined) ones are
    /// matched even when special parsing is off.
    let specials: [([UInt8], Int32, Bool)]
    public let bos: Int32
    public let eos: Int32
    public let addBos: Bool
    let eog: Set<Int32>
    public let residentBytes: Int

    public static let typeNormal: Int32 = 1, typeUnknown: Int32 = 2, typeControl: Int32 = 3
    public static let typeUserDefined: Int32 = 4, typeUnused: Int32 = 5, typeByte: Int32 = 6

    public convenience init(file f: GGUFFile, vocabSize: Int) throws(EAError) {
        let model = try f.string("tokenizer.ggml.model") ?? ""
        let kind: Kind
        switch model {
        case "gpt2": kind = .bytePairGPT2
        case "llama": kind = .sentencePiece
        default:
            throw EAError(.tokenizer, "tokenizer model '\(model)' is not supported (supported: gpt2, llama)")
        }
        guard let toks = try f.array("tokenizer.ggml.tokens"), toks.elementType == .string else {
            throw EAError(.tokenizer, "'tokenizer.ggml.tokens' must be an array of strings")
        }
        if toks.count != vocabSize {
            throw EAError(.tokenizer, "vocabulary has \(toks.count) tokens but the model has \(vocabSize) rows")
        }
        var types = [Int32](repeating: Tokenizer.typeNormal, count: toks.count)
        if let ta = try f.array("tokenizer.ggml.token_type") {
            guard ta.count == toks.count, let v = f.integers(ta) else {
                throw EAError(.tokenizer, "'tokenizer.ggml.token_type' must hold one integer per token (\(toks.count))")
            }
            for i in 0..<v.count { types[i] = Int32(truncatingIfNeeded: v[i]) }
        }

        // byte <-> printable character map of GPT-2's byte-level BPE
        var byteToScalar = [UInt32](repeating: 0, count: 256)
        var scalarToByte: [UInt32: UInt8] = [:]
        var extra: UInt32 = 0
        for b in 0..<256 {
            let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
            let u: UInt32 = printable ? UInt32(b) : 256 + extra
            if !printable { extra += 1 }
            byteToScalar[b] = u
            scalarToByte[u] = UInt8(b)
        }

        var index: [String: Int32] = [:]
        index.reserveCapacity(toks.count)
        var bytes: [UInt8] = []
        var offsets: [Int32] = [0]
        var specials: [([UInt8], Int32, Bool)] = []
        var dupe: String? = nil
        f.forEachString(toks) { i, raw in
            let text = String(decoding: raw, as: UTF8.self)
            if index[text] == nil { index[text] = Int32(i) } else if dupe == nil { dupe = text }
            let t = types[i]
            if t == Tokenizer.typeControl || t == Tokenizer.typeUserDefined {
                let b = Array(raw)
                bytes.append(contentsOf: b)
                if !b.isEmpty { specials.append((b, Int32(i), t == Tokenizer.typeUserDefined)) }
            } else if kind == .sentencePiece {
                if t == Tokenizer.typeByte, let v = Tokenizer.byteTokenValue(raw) {
                    bytes.append(v)
                } else {
                    // U+2581 (E2 96 81) stands for a space
                    var k = 0
                    while k < raw.count {
                        if k + 2 < raw.count && raw[k] == 0xE2 && raw[k + 1] == 0x96 && raw[k + 2] == 0x81 {
                            bytes.append(0x20)
                            k += 3
                        } else {
                            bytes.append(raw[k])
                            k += 1
                        }
                    }
                }
            } else {
                // map each character back to its byte; characters outside the map are kept as UTF-8
                for sc in text.unicodeScalars {
                    if let b = scalarToByte[sc.value] {
                        bytes.append(b)
                    } else {
                        bytes.append(contentsOf: Array(String(sc).utf8))
                    }
                }
            }
            offsets.append(Int32(bytes.count))
        }
        _ = dupe  // duplicate token texts exist in real vocabularies; the first id wins, as in llama.cpp
        specials.sort { $0.0.count > $1.0.count }

        // Some vocabularies (SmolLM2's) lack a few control-byte tokens: such bytes are dropped when
        // encoding, as the reference BPE without an unknown token does. Printable ASCII must exist.
        var bt = [Int32](repeating: -1, count: 256)
        if kind == .bytePairGPT2 {
            for b in 0..<256 {
                var s = ""
                s.unicodeScalars.append(Unicode.Scalar(byteToScalar[b])!)
                if let id = index[s] {
                    bt[b] = id
                } else if b >= 0x20 && b < 0x7F {
                    throw EAError(.tokenizer, "vocabulary has no token for byte 0x\(hex(UInt64(b)))")
                }
            }
        } else {
            for (i, t) in types.enumerated() where t == Tokenizer.typeByte {
                let o = Int(offsets[i])
                if offsets[i + 1] - offsets[i] == 1 { bt[Int(bytes[o])] = Int32(i) }
            }
        }
        var scores: [Float] = []
        if kind == .sentencePiece {
            guard let sa = try f.array("tokenizer.ggml.scores"), sa.count == toks.count, let sc = f.floats(sa) else {
                throw EAError(.tokenizer, "'tokenizer.ggml.scores' must hold one float32 per token (\(toks.count))")
            }
            scores = sc
        }
        let addSpacePrefix = kind == .sentencePiece ? ((try f.bool("tokenizer.ggml.add_space_prefix")) ?? true) : false

        var mergeMap: [UInt64: UInt64] = [:]
        if let ma = try f.array("tokenizer.ggml.merges") {
            guard ma.elementType == .string else {
                throw EAError(.tokenizer, "'tokenizer.ggml.merges' must be an array of strings")
            }
            mergeMap.reserveCapacity(ma.count)
            var badMerge: Int = -1
            f.forEachString(ma) { rank, raw in
                // "left right": split at the first space after the first byte
                var sp = -1
                if raw.count > 1 {
                    for k in 1..<raw.count where raw[k] == 0x20 {
                        sp = k
                        break
                    }
                }
                if sp < 0 {
                    if badMerge < 0 { badMerge = rank }
                    return
                }
                let l = String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<sp]), as: UTF8.self)
                let r = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(sp + 1)...]), as: UTF8.self)
                guard let li = index[l], let ri = index[r], let mi = index[l + r] else {
                    if badMerge < 0 { badMerge = rank }
                    return
                }
                let key = UInt64(UInt32(bitPattern: li)) << 32 | UInt64(UInt32(bitPattern: ri))
                if mergeMap[key] == nil {
                    mergeMap[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: mi))
                }
            }
            if badMerge >= 0 {
                throw EAError(.tokenizer, "merge \(badMerge) does not name two tokens whose concatenation is in the vocabulary")
            }
        }

        func special(_ key: String) throws(EAError) -> Int32 {
            guard let v = try f.int(key) else { return -1 }
            if v < 0 || v >= toks.count {
                throw EAError(.tokenizer, "'\(key)' = \(v) is outside the vocabulary (\(toks.count) tokens)")
            }
            return Int32(v)
        }
        let bos = try special("tokenizer.ggml.bos_token_id")
        let eos = try special("tokenizer.ggml.eos_token_id")
        let eot = try special("tokenizer.ggml.eot_token_id")
        let addBos = (try f.bool("tokenizer.ggml.add_bos_token")) ?? (kind == .sentencePiece)
        let unknown = try special("tokenizer.ggml.unknown_token_id")
        var eogSet = Set<Int32>()
        if eos >= 0 { eogSet.insert(eos) }
        if eot >= 0 { eogSet.insert(eot) }
        // Chat end markers are end-of-generation too (as llama.cpp does), when they are special tokens.
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"] {
            if let id = index[name], types[Int(id)] == Tokenizer.typeControl || types[Int(id)] == Tokenizer.typeUserDefined {
                eogSet.insert(id)
            }
        }
        // allocated last: nothing may throw after it
        let tokenBytes = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        _ = tokenBytes.initialize(from: bytes)
        self.init(kind: kind, scores: scores, addSpacePrefix: addSpacePrefix, unknown: unknown,
                  vocabSize: toks.count, tokenBytes: tokenBytes, tokenOffsets: offsets, tokenTypes: types,
                  tokenIndex: index, merges: mergeMap, byteToken: bt, specials: specials, bos: bos, eos: eos,
                  addBos: addBos, eog: eogSet,
                  residentBytes: bytes.count + offsets.count * 4 + types.count * 4 + mergeMap.count * 24
                      + index.count * 40 + 256 * 4)
    }

    /// The empty tokenizer of series models (no vocabulary; the C API refuses text calls on them).
    static func none() -> Tokenizer {
        let tb = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1)
        tb.initialize(repeating: 0)
        return Tokenizer(kind: .bytePairGPT2, scores: [], addSpacePrefix: false, unknown: -1, vocabSize: 0,
                         tokenBytes: tb, tokenOffsets: [0], tokenTypes: [], tokenIndex: [:], merges: [:],
                         byteToken: [Int32](repeating: -1, count: 256), specials: [], bos: -1, eos: -1,
                         addBos: false, eog: [], residentBytes: 0)
    }

    init(kind: Kind, scores: [Float], addSpacePrefix: Bool, unknown: Int32,
         vocabSize: Int, tokenBytes: UnsafeMutableBufferPointer<UInt8>, tokenOffsets: [Int32], tokenTypes: [Int32],
         tokenIndex: [String: Int32], merges: [UInt64: UInt64], byteToken: [Int32], specials: [([UInt8], Int32, Bool)],
         bos: Int32, eos: Int32, addBos: Bool, eog: Set<Int32>, residentBytes: Int) {
        self.kind = kind
        self.scores = scores
        self.addSpacePrefix = addSpacePrefix
        self.unknown = unknown
        self.vocabSize = vocabSize
        self.tokenBytes = tokenBytes
        self.tokenOffsets = tokenOffsets
        self.tokenTypes = tokenTypes
        self.tokenIndex = tokenIndex
        self.merges = merges
        self.byteToken = byteToken
        self.specials = specials
        self.bos = bos
        self.eos = eos
        self.addBos = addBos
        self.eog = eog
        self.residentBytes = residentBytes
    }

    deinit { tokenBytes.deallocate() }

    public func isEndOfGeneration(_ t: Int32) -> Bool { eog.contains(t) }

    /// Whether a token is ordinary text (not a control, byte, unused or user-defined token); a
    /// vocabulary without token types counts every token as text.
    public func isText(_ t: Int32) -> Bool {
        guard t >= 0 && Int(t) < vocabSize else { return false }
        return tokenTypes.isEmpty || tokenTypes[Int(t)] == Tokenizer.typeNormal
    }

    public func id(of text: String) -> Int32? { tokenIndex[text] }

    /// The output bytes of a token. Caller checks the range.
    public func bytes(of token: Int32) -> UnsafeBufferPointer<UInt8> {
        let a = Int(tokenOffsets[Int(token)]), b = Int(tokenOffsets[Int(token) + 1])
        return UnsafeBufferPointer(rebasing: tokenBytes[a..<b])
    }

    /// Copies a token's bytes (for Swift callers).
    public func piece(_ token: Int32) -> [UInt8] {
        let a = Int(tokenOffsets[Int(token)]), b = Int(tokenOffsets[Int(token) + 1])
        return Array(tokenBytes[a..<b])
    }

    /// Encodes UTF-8 text. Invalid UTF-8 is kept byte for byte (each bad byte is its own piece).
    public func encode(_ text: UnsafeBufferPointer<UInt8>, addBos: Bool, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.count / 3 + 2)
        if addBos && self.addBos && bos >= 0 { out.append(bos) }
        var start = 0
        var i = 0
        let n = text.count
        var afterSpecial = true  // SentencePiece prefixes a space to raw text at the start or after a special
        while i < n && !specials.isEmpty {
            var hit: Int32 = -1
            var hitLen = 0
            let c0 = text[i]
            for (sb, id, always) in specials where sb[0] == c0 && sb.count <= n - i && (parseSpecial || always) {
                var eq = true
                for k in 1..<sb.count where text[i + k] != sb[k] {
                    eq = false
                    break
                }
                if eq {
                    hit = id
                    hitLen = sb.count
                    break  // longest first
                }
            }
            if hit >= 0 {
                if start < i {
                    encodePlain(UnsafeBufferPointer(rebasing: text[start..<i]), prefixSpace: afterSpecial, into: &out)
                }
                out.append(hit)
                afterSpecial = true
                i += hitLen
                start = i
            } else {
                i += 1
            }
        }
        if start < n {
            encodePlain(UnsafeBufferPointer(rebasing: text[start..<n]), prefixSpace: afterSpecial, into: &out)
        }
        return out
    }

    func encodePlain(_ text: UnsafeBufferPointer<UInt8>, prefixSpace: Bool, into out: inout [Int32]) {
        if text.isEmpty { return }
        if kind == .sentencePiece {
            encodeSentencePiece(text, prefixSpace: prefixSpace && addSpacePrefix, into: &out)
            return
        }
        var work: [Int32] = []
        PreTokenizer.split(text) { a, b in
            work.removeAll(keepingCapacity: true)
            for k in a..<b {
                let id = byteToken[Int(text[k])]
                if id >= 0 { work.append(id) }
            }
            applyMerges(&work)
            out.append(contentsOf: work)
        }
    }

    /// Repeatedly merges the adjacent pair with the lowest rank (leftmost on ties).
    func applyMerges(_ ids: inout [Int32]) {
        while ids.count > 1 {
            var bestRank = UInt64.max
            var bestAt = -1
            var bestId: Int32 = 0
            for k in 0..<(ids.count - 1) {
                let key = UInt64(UInt32(bitPattern: ids[k])) << 32 | UInt64(UInt32(bitPattern: ids[k + 1]))
                if let m = merges[key] {
                    let rank = m >> 32
                    if rank < bestRank {
                        bestRank = rank
                        bestAt = k
                        bestId = Int32(bitPattern: UInt32(truncatingIfNeeded: m))
                    }
                }
            }
            if bestAt < 0 { return }
            ids[bestAt] = bestId
            ids.remove(at: bestAt + 1)
        }
    }

    /// "<0x41>" -> 0x41.
    static func byteTokenValue(_ raw: UnsafeRawBufferPointer) -> UInt8? {
        if raw.count != 6 || raw[0] != 0x3C || raw[1] != 0x30 || raw[2] != 0x78 || raw[5] != 0x3E { return nil }
        func hexDigit(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let hi = hexDigit(raw[3]), let lo = hexDigit(raw[4]) else { return nil }
        return hi << 4 | lo
    }

    /// SentencePiece BPE over UTF-8 characters with a max-heap of candidate pairs (score, then
    /// leftmost); stale heap entries are skipped by checking the pair's current sizes.
    func encodeSentencePiece(_ text: UnsafeBufferPointer<UInt8>, prefixSpace: Bool, into out: inout [Int32]) {
        var b: [UInt8] = []
        b.reserveCapacity(text.count + 3)
        if prefixSpace { b.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for c in text {
            if c == 0x20 { b.append(contentsOf: [0xE2, 0x96, 0x81]) } else { b.append(c) }
        }
        // one symbol per UTF-8 character (a stray byte is its own symbol)
        var start: [Int] = [], len: [Int] = []
        var p = 0
        while p < b.count {
            let c = b[p]
            var l = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1
            if p + l > b.count { l = b.count - p }
            start.append(p)
            len.append(l)
            p += l
        }
        let n = start.count
        var prev = [Int](repeating: -1, count: n), next = [Int](repeating: -1, count: n)
        for i in 0..<n {
            prev[i] = i - 1
            next[i] = i + 1 < n ? i + 1 : -1
        }
        // heap entries: (score, left, right, size)
        var heap: [(Float, Int, Int, Int)] = []
        func before(_ a: (Float, Int, Int, Int), _ c: (Float, Int, Int, Int)) -> Bool {
            a.0 > c.0 || (a.0 == c.0 && a.1 < c.1)
        }
        func push(_ e: (Float, Int, Int, Int)) {
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if !before(heap[i], heap[parent]) { break }
                heap.swapAt(i, parent)
                i = parent
            }
        }
        func pop() -> (Float, Int, Int, Int)? {
            guard let top = heap.first else { return nil }
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < heap.count && before(heap[l], heap[m]) { m = l }
                    if r < heap.count && before(heap[r], heap[m]) { m = r }
                    if m == i { break }
                    heap.swapAt(i, m)
                    i = m
                }
            }
            return top
        }
        func tryAdd(_ l: Int, _ r: Int) {
            if l < 0 || r < 0 { return }
            let size = len[l] + len[r]
            let s = String(decoding: b[start[l]..<(start[l] + size)], as: UTF8.self)
            if let id = tokenIndex[s] { push((scores[Int(id)], l, r, size)) }
        }
        for i in 1..<max(n, 1) { tryAdd(i - 1, i) }
        while let (_, l, r, size) = pop() {
            if len[l] == 0 || len[r] == 0 || len[l] + len[r] != size || next[l] != r { continue }
            len[l] = size
            len[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[next[r]] = l }
            tryAdd(prev[l], l)
            tryAdd(l, next[l])
        }
        var i = n > 0 ? 0 : -1
        while i >= 0 {
            let s = String(decoding: b[start[i]..<(start[i] + len[i])], as: UTF8.self)
            if let id = tokenIndex[s] {
                out.append(id)
            } else {
                for k in start[i]..<(start[i] + len[i]) {
                    let t = byteToken[Int(b[k])]
                    if t >= 0 { out.append(t) } else if unknown >= 0 { out.append(unknown) }
                }
            }
            i = next[i]
        }
    }
}
