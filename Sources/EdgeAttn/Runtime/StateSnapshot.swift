/// Session state snapshots (ea_session_state_save/load): the caches and recurrent state a session
/// has built, as one flat byte string another process can restore into a session made with the same
/// model and parameters. Constant size for recurrent and Λ sessions (their caches are bounded).
///
/// Layout (little-endian): 64-byte header {magic "EASTATE1", fingerprint of model and plan,
/// n_past, last-logits flag, payload bytes, FNV-1a checksum of the payload, 16 zero bytes}, then the
/// persistent arena regions in plan order, then the last token's logits row (vocab floats).
extension Session {
    static let snapshotMagic: UInt64 = 0x3145_5441_5453_4145  // "EASTATE1"
    static let snapshotHeader = 64

    var snapshotPayload: Int {
        var n = 0
        for (_, b) in plan.persistent { n += b }
        return n + model.hp.nVocab * 4
    }

    /// Bytes ea_session_state_save writes.
    public var stateSize: Int { Session.snapshotHeader + snapshotPayload }

    /// Identifies the model geometry and the session plan: a snapshot only loads where it fits.
    var snapshotFingerprint: UInt64 {
        var h = FNV1a()
        let hp = model.hp
        for v in [hp.nLayer, hp.nEmbd, hp.nHead, hp.headDim, hp.nVocab, hp.nFF, model.file.fileSize, plan.totalBytes,
                  plan.kvBits, plan.nBatch] {
            h.add(UInt64(truncatingIfNeeded: v))
        }
        for (o, b) in plan.persistent { h.add(UInt64(o)); h.add(UInt64(b)) }
        return h.value
    }

    public func saveState(into buf: UnsafeMutableRawPointer, size: Int) throws(EAError) -> Int {
        let need = stateSize
        if size < need { throw EAError(.bufferTooSmall, "state snapshot needs \(need) bytes, the buffer has \(size)") }
        var p = buf + Session.snapshotHeader
        var sum = FNV1a()
        for (o, b) in plan.persistent {
            p.copyMemory(from: arena.raw + o, byteCount: b)
            sum.add(UnsafeRawBufferPointer(start: p, count: b))
            p += b
        }
        let lb = model.hp.nVocab * 4
        if let lg = lastLogits { p.copyMemory(from: lg, byteCount: lb) } else { p.initializeMemory(as: UInt8.self, repeating: 0, count: lb) }
        sum.add(UnsafeRawBufferPointer(start: p, count: lb))
        let words: [UInt64] = [Session.snapshotMagic, snapshotFingerprint, UInt64(nPast), lastLogits == nil ? 0 : 1,
                               UInt64(snapshotPayload), sum.value, 0, 0]
        for (i, w) in words.enumerated() { (buf + i * 8).storeBytes(of: w.littleEndian, as: UInt64.self) }
        return need
    }

    /// Restores a snapshot; on any error the session is left as it was.
    public func loadState(from buf: UnsafeRawPointer, size: Int) throws(EAError) {
        if size < Session.snapshotHeader { throw EAError(.truncated, "state snapshot of \(size) bytes is shorter than its 64-byte header") }
        func word(_ i: Int) -> UInt64 { UInt64(littleEndian: (buf + i * 8).loadUnaligned(as: UInt64.self)) }
        if word(0) != Session.snapshotMagic { throw EAError(.badMagic, "not a libedgeattn state snapshot (bad magic)") }
        if word(1) != snapshotFingerprint {
            throw EAError(.stateMismatch, "snapshot was saved by a session with another model or parameters")
        }
        if size != stateSize || word(4) != UInt64(snapshotPayload) {
            throw EAError(.truncated, "state snapshot has \(size) bytes, this session's snapshots have \(stateSize)")
        }
        let pastRaw = word(2)
        if pastRaw > UInt64(plan.maxPositions) { throw EAError(.corrupt, "state snapshot position \(pastRaw) is out of range") }
        var sum = FNV1a()
        sum.add(UnsafeRawBufferPointer(start: buf + Session.snapshotHeader, count: snapshotPayload))
        if sum.value != word(5) { throw EAError(.corrupt, "state snapshot checksum mismatch (damaged data)") }
        var p = buf + Session.snapshotHeader
        for (o, b) in plan.persistent {
            (arena.raw + o).copyMemory(from: p, byteCount: b)
            p += b
        }
        nPast = Int(pastRaw)
        if word(3) != 0 {
            arena.raw.advanced(by: plan.logits).copyMemory(from: p, byteCount: model.hp.nVocab * 4)
            lastLogitsRow = 0
        } else {
            lastLogitsRow = -1
        }
    }
}

/// 64-bit FNV-1a: a cheap integrity check, not a cryptographic one.
struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ b: UnsafeRawBufferPointer) {
        for x in b { value = (value ^ UInt64(x)) &* 0x100_0000_01b3 }
    }
    mutating func add(_ v: UInt64) {
        var w = v.littleEndian
        withUnsafeBytes(of: &w) { add($0) }
    }
}
