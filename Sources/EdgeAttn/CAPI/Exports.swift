import EAKernels

// The C API (include/edgeattn.h): thin wrappers that check arguments, convert handles and record
// errors. No logic lives here.

/// Per-handle error text buffer.
final class ErrorText {
    static let capacity = 512
    let buf: UnsafeMutablePointer<CChar>
    init() {
        buf = .allocate(capacity: ErrorText.capacity)
        buf[0] = 0
    }
    deinit { buf.deallocate() }
    func set(_ s: String) {
        var n = 0
        for b in s.utf8 where n < ErrorText.capacity - 1 {
            buf[n] = CChar(bitPattern: b)
            n += 1
        }
        buf[n] = 0
    }
}

/// Every C handle. `freed` is only used by debug builds (EA_DEBUG_HANDLES), where ea_*_free
/// quarantines the handle instead of releasing it, so that a later use is reported as an error
/// instead of touching freed memory. Release builds free at once (use after free is undefined).
protocol GuardedHandle: AnyObject {
    var freed: Bool { get set }
}

final class ModelHandle: GuardedHandle {
    var freed = false
    let model: Model
    let error = ErrorText()
    let arch: UnsafeMutablePointer<CChar>
    init(_ m: Model) {
        model = m
        let a = Array(m.hp.architecture.utf8)
        arch = .allocate(capacity: a.count + 1)
        for (i, b) in a.enumerated() { arch[i] = CChar(bitPattern: b) }
        arch[a.count] = 0
    }
    deinit { arch.deallocate() }
}

final class SessionHandle: GuardedHandle {
    var freed = false
    let session: Session
    let error = ErrorText()
    init(_ s: Session) { session = s }
}

final class SamplerHandle: GuardedHandle {
    var freed = false
    let sampler: Sampler
    init(_ s: Sampler) { sampler = s }
}

@inline(__always) func handle<T: GuardedHandle>(_ p: OpaquePointer?, _: T.Type) -> T? {
    guard let p = p else { return nil }
    let h = Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    #if EA_DEBUG_HANDLES
    if h.freed {
        usedFreedHandle = true
        return nil
    }
    #endif
    return h
}

#if EA_DEBUG_HANDLES
/// Set when the last handle lookup on this call found a freed handle (read by `invalid`). The C API
/// is called from many threads; a plain global is enough here because only debug builds set it and
/// it only decorates an error message.
nonisolated(unsafe) var usedFreedHandle = false
#endif

@inline(__always) func retain<T: AnyObject>(_ o: T) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(o).toOpaque())
}

@inline(__always) func release<T: GuardedHandle>(_ p: OpaquePointer?, _: T.Type) {
    guard let p = p else { return }
    #if EA_DEBUG_HANDLES
    let h = Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    if !h.freed {
        h.freed = true
        eak_quarantine_push(UnsafeMutableRawPointer(p))  // keeps it reachable for leak checkers
    }
    #else
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).release()
    #endif
}

/// Records an error on the calling thread (and on a handle's buffer) and returns its status.
func fail(_ e: EAError, _ h: ErrorText? = nil) -> ea_status {
    let msg = e.message
    var bytes = Array(msg.utf8)
    bytes.append(0)
    bytes.withUnsafeBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { eak_tls_error_set($0, b.count - 1) }
    }
    h?.set(msg)
    return e.status.rawValue
}

func invalid(_ what: String, _ h: ErrorText? = nil) -> ea_status {
    #if EA_DEBUG_HANDLES
    if usedFreedHandle {
        usedFreedHandle = false
        return fail(EAError(.invalidArgument, what + " (the handle was freed: use after free, caught by this debug build)"), h)
    }
    #endif
    return fail(EAError(.invalidArgument, what), h)
}

func string(fromC p: UnsafePointer<CChar>) -> String {
    String(decoding: UnsafeRawBufferPointer(start: p, count: Int(strlenC(p))), as: UTF8.self)
}

func strlenC(_ p: UnsafePointer<CChar>) -> Int {
    var n = 0
    while p[n] != 0 { n += 1 }
    return n
}

// MARK: version and status

@_cdecl("ea_version")
public func _ea_version() -> UInt32 { libraryVersion }

/// EA_VERSION_NUMBER of this build (MAJOR*10000 + MINOR*100 + PATCH); the C tests check it equals the header's.
public let libraryVersion: UInt32 = 0 * 10000 + 4 * 100 + 0

@_cdecl("ea_set_thread_limit")
public func _ea_set_thread_limit(_ n: UInt32) { eak_set_thread_limit(Int32(clamping: n)) }

@_cdecl("ea_get_thread_limit")
public func _ea_get_thread_limit() -> UInt32 { UInt32(eak_get_thread_limit()) }

@_cdecl("ea_thread_peak")
public func _ea_thread_peak(_ reset: Int32) -> UInt32 { UInt32(eak_team_peak(reset != 0 ? 1 : 0)) }

@_cdecl("ea_self_test")
public func _ea_self_test(_ report: UnsafeMutablePointer<CChar>?, _ size: Int) -> ea_status {
    var buf = [CChar](repeating: 0, count: 256)
    let rc = buf.withUnsafeMutableBufferPointer { eak_self_test(0x5eed, $0.baseAddress!, 256) }
    if let r = report, size > 0 {
        var i = 0
        while i < size - 1 && i < 255 && buf[i] != 0 { r[i] = buf[i]; i += 1 }
        r[i] = 0
    }
    return rc == 0 ? Status.ok.rawValue : Status.kernelMismatch.rawValue
}

@_cdecl("ea_status_string")
public func _ea_status_string(_ s: ea_status) -> UnsafePointer<CChar> {
    let text: StaticString = Status(rawValue: s)?.text ?? "unknown status"
    return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("ea_last_error")
public func _ea_last_error() -> UnsafePointer<CChar> { eak_tls_error_get() }

// MARK: model

@_cdecl("ea_model_default_params")
public func _ea_model_default_params() -> ea_model_params {
    ea_model_params(size: UInt32(MemoryLayout<ea_model_params>.size), use_mmap: 1, validate_data: 0, reserved: 0)
}

@_cdecl("ea_model_load")
public func _ea_model_load(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<ea_model_params>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> ea_status {
    guard let out = out else { return invalid("ea_model_load: out_model is NULL") }
    out.pointee = nil
    guard let path = path else { return invalid("ea_model_load: path is NULL") }
    var p = _ea_model_default_params()
    if let params = params {
        if params.pointee.size < UInt32(MemoryLayout<ea_model_params>.size) {
            return invalid("ea_model_load: params->size is \(params.pointee.size); initialise params with ea_model_default_params()")
        }
        p = params.pointee
    }
    do {
        let m = try Model(path: string(fromC: path), useMmap: p.use_mmap != 0, validateData: p.validate_data != 0)
        out.pointee = retain(ModelHandle(m))
        return Status.ok.rawValue
    } catch {
        return fail(error)
    }
}

@_cdecl("ea_model_free")
public func _ea_model_free(_ m: OpaquePointer?) { release(m, ModelHandle.self) }

@_cdecl("ea_model_vocab_size")
public func _ea_model_vocab_size(_ m: OpaquePointer?) -> Int32 {
    guard let hp = handle(m, ModelHandle.self)?.model.hp, hp.series == nil else { return 0 }
    return Int32(hp.nVocab)
}

@_cdecl("ea_model_series_outputs")
public func _ea_model_series_outputs(_ m: OpaquePointer?) -> Int32 {
    Int32(handle(m, ModelHandle.self)?.model.hp.series?.outputs ?? 0)
}

@_cdecl("ea_model_layer_kind")
public func _ea_model_layer_kind(_ m: OpaquePointer?, _ layer: Int32) -> Int32 {
    guard let hp = handle(m, ModelHandle.self)?.model.hp, layer >= 0, Int(layer) < hp.nLayer else { return -1 }
    return Int32(hp.layerKinds[Int(layer)].rawValue)
}

@_cdecl("ea_model_context_length")
public func _ea_model_context_length(_ m: OpaquePointer?) -> Int32 {
    Int32(handle(m, ModelHandle.self)?.model.hp.nCtxTrain ?? 0)
}

@_cdecl("ea_model_n_layers")
public func _ea_model_n_layers(_ m: OpaquePointer?) -> Int32 {
    Int32(handle(m, ModelHandle.self)?.model.hp.nLayer ?? 0)
}

@_cdecl("ea_model_n_embd")
public func _ea_model_n_embd(_ m: OpaquePointer?) -> Int32 {
    Int32(handle(m, ModelHandle.self)?.model.hp.nEmbd ?? 0)
}

let emptyCString: StaticString = ""

@_cdecl("ea_model_architecture")
public func _ea_model_architecture(_ m: OpaquePointer?) -> UnsafePointer<CChar> {
    guard let h = handle(m, ModelHandle.self) else {
        return UnsafeRawPointer(emptyCString.utf8Start).assumingMemoryBound(to: CChar.self)
    }
    return UnsafePointer(h.arch)
}

@_cdecl("ea_model_resident_bytes")
public func _ea_model_resident_bytes(_ m: OpaquePointer?) -> UInt64 {
    UInt64(handle(m, ModelHandle.self)?.model.residentBytes ?? 0)
}

@_cdecl("ea_model_file_bytes")
public func _ea_model_file_bytes(_ m: OpaquePointer?) -> UInt64 {
    UInt64(handle(m, ModelHandle.self)?.model.file.fileSize ?? 0)
}

@_cdecl("ea_model_last_error")
public func _ea_model_last_error(_ m: OpaquePointer?) -> UnsafePointer<CChar> {
    guard let h = handle(m, ModelHandle.self) else {
        return UnsafeRawPointer(emptyCString.utf8Start).assumingMemoryBound(to: CChar.self)
    }
    return UnsafePointer(h.error.buf)
}

// MARK: tokenizer

@_cdecl("ea_tokenize")
public func _ea_tokenize(_ m: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ len: Int, _ addBos: Int32,
                         _ parseSpecial: Int32, _ tokens: UnsafeMutablePointer<Int32>?, _ maxTokens: Int,
                         _ nTokens: UnsafeMutablePointer<Int>?) -> ea_status {
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_tokenize: model is NULL") }
    if h.model.hp.series != nil { return fail(EAError(.modelKind, "ea_tokenize: this series model has no tokenizer"), h.error) }
    guard let nTokens = nTokens else { return invalid("ea_tokenize: n_tokens is NULL", h.error) }
    nTokens.pointee = 0
    if text == nil && len != 0 { return invalid("ea_tokenize: text is NULL", h.error) }
    if len < 0 { return invalid("ea_tokenize: text_len is negative", h.error) }
    let ids: [Int32]
    if let t = text {
        ids = t.withMemoryRebound(to: UInt8.self, capacity: len) {
            h.model.tokenizer.encode(UnsafeBufferPointer(start: $0, count: len), addBos: addBos != 0,
                                     parseSpecial: parseSpecial != 0)
        }
    } else {
        ids = h.model.tokenizer.encode(UnsafeBufferPointer(start: nil, count: 0), addBos: addBos != 0,
                                       parseSpecial: parseSpecial != 0)
    }
    nTokens.pointee = ids.count
    if ids.count > maxTokens {
        return fail(EAError(.bufferTooSmall, "ea_tokenize: \(ids.count) tokens needed, room for \(maxTokens)"), h.error)
    }
    guard let out = tokens else {
        if ids.isEmpty { return Status.ok.rawValue }
        return invalid("ea_tokenize: tokens is NULL", h.error)
    }
    for (i, t) in ids.enumerated() { out[i] = t }
    return Status.ok.rawValue
}

@_cdecl("ea_token_to_text")
public func _ea_token_to_text(_ m: OpaquePointer?, _ token: Int32, _ buf: UnsafeMutablePointer<CChar>?,
                              _ size: Int, _ nBytes: UnsafeMutablePointer<Int>?) -> ea_status {
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_token_to_text: model is NULL") }
    if h.model.hp.series != nil { return fail(EAError(.modelKind, "ea_token_to_text: this series model has no tokenizer"), h.error) }
    guard let nBytes = nBytes else { return invalid("ea_token_to_text: n_bytes is NULL", h.error) }
    nBytes.pointee = 0
    if token < 0 || Int(token) >= h.model.hp.nVocab {
        return fail(EAError(.tokenRange, "ea_token_to_text: token \(token) is outside [0, \(h.model.hp.nVocab))"), h.error)
    }
    let piece = h.model.tokenizer.bytes(of: token)
    nBytes.pointee = piece.count
    if piece.count > size {
        return fail(EAError(.bufferTooSmall, "ea_token_to_text: \(piece.count) bytes needed, room for \(size)"), h.error)
    }
    if piece.count > 0 {
        guard let buf = buf else { return invalid("ea_token_to_text: buf is NULL", h.error) }
        for (i, b) in piece.enumerated() { buf[i] = CChar(bitPattern: b) }
    }
    return Status.ok.rawValue
}

@_cdecl("ea_token_bos")
public func _ea_token_bos(_ m: OpaquePointer?) -> Int32 { handle(m, ModelHandle.self)?.model.tokenizer.bos ?? -1 }

@_cdecl("ea_token_eos")
public func _ea_token_eos(_ m: OpaquePointer?) -> Int32 { handle(m, ModelHandle.self)?.model.tokenizer.eos ?? -1 }

@_cdecl("ea_token_is_eog")
public func _ea_token_is_eog(_ m: OpaquePointer?, _ t: Int32) -> Int32 {
    guard let h = handle(m, ModelHandle.self) else { return 0 }
    return h.model.tokenizer.isEndOfGeneration(t) ? 1 : 0
}

@_cdecl("ea_chat_format")
public func _ea_chat_format(_ m: OpaquePointer?, _ roles: UnsafePointer<UnsafePointer<CChar>?>?,
                            _ contents: UnsafePointer<UnsafePointer<CChar>?>?, _ nMessages: Int,
                            _ addAssistant: Int32, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int,
                            _ nBytes: UnsafeMutablePointer<Int>?) -> ea_status {
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_chat_format: model is NULL") }
    if h.model.hp.series != nil { return fail(EAError(.modelKind, "ea_chat_format: this series model has no tokenizer"), h.error) }
    guard let nBytes = nBytes else { return invalid("ea_chat_format: n_bytes is NULL", h.error) }
    nBytes.pointee = 0
    var msgs: [(role: String, content: String)] = []
    if nMessages > 0 {
        guard let roles = roles, let contents = contents else {
            return invalid("ea_chat_format: roles or contents is NULL", h.error)
        }
        for i in 0..<nMessages {
            guard let r = roles[i], let c = contents[i] else {
                return invalid("ea_chat_format: message \(i) has a NULL role or content", h.error)
            }
            msgs.append((string(fromC: r), string(fromC: c)))
        }
    }
    let style = ChatTemplate.style(for: h.model.tokenizer)
    let text = Array(ChatTemplate.format(msgs, addAssistant: addAssistant != 0, style: style).utf8)
    nBytes.pointee = text.count
    if text.count + 1 > size {
        return fail(EAError(.bufferTooSmall, "ea_chat_format: \(text.count + 1) bytes needed, room for \(size)"), h.error)
    }
    guard let buf = buf else { return invalid("ea_chat_format: buf is NULL", h.error) }
    for (i, b) in text.enumerated() { buf[i] = CChar(bitPattern: b) }
    buf[text.count] = 0
    return Status.ok.rawValue
}

// MARK: session

@_cdecl("ea_session_default_params")
public func _ea_session_default_params() -> ea_session_params {
    let d = DHSAParams()
    return ea_session_params(size: UInt32(MemoryLayout<ea_session_params>.size), n_ctx: 0, n_batch: 32, n_threads: 0,
                             memory_budget: 0, kv_bits: 0, kv_group: 0, kv_sinks: 4, attention: 0, attn_sinks: 4,
                             attn_window: 1020, attn_pos_mode: 0, dhsa_budget: 0, dhsa_global: UInt32(d.global),
                             dhsa_local: UInt32(d.local), dhsa_chunk_min: UInt32(d.minChunk),
                             dhsa_chunk_max: UInt32(d.maxChunk), dhsa_chunk_threshold: d.threshold,
                             dhsa_query_block: UInt32(d.queryBlock), n_layer_attention: 0, layer_attention: nil,
                             auto_fit: 0, workspace: nil, workspace_size: 0, dhsa_prefix_frac: d.prefixFraction,
                             dhsa_dense_tail: UInt32(d.denseTail), dhsa_score: d.headMax ? 0 : 1)
}

func sessionParams(_ p: UnsafePointer<ea_session_params>?) throws(EAError) -> SessionParams {
    var c = _ea_session_default_params()
    if let p = p {
        // callers built against an older header get the defaults of the fields it did not have:
        // 0.2 ends before auto_fit, 0.3 before dhsa_prefix_frac
        let v02 = MemoryLayout<ea_session_params>.offset(of: \ea_session_params.auto_fit) ?? Int.max
        let v03 = MemoryLayout<ea_session_params>.offset(of: \ea_session_params.dhsa_prefix_frac) ?? Int.max
        let size = Int(p.pointee.size)
        if size < v02 {
            throw EAError(.invalidArgument, "params->size is \(p.pointee.size); initialise params with ea_session_default_params()")
        }
        if size >= MemoryLayout<ea_session_params>.size {
            c = p.pointee
        } else {
            // copy only the fields the caller's struct has
            let n = size >= v03 ? v03 : v02
            withUnsafeMutableBytes(of: &c) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: n)) }
        }
    }
    var s = SessionParams()
    s.nCtx = Int(c.n_ctx)
    s.nBatch = Int(c.n_batch)
    s.nThreads = Int(c.n_threads)
    s.memoryBudget = c.memory_budget
    s.kvBits = Int(c.kv_bits)
    s.kvGroup = Int(c.kv_group)
    s.kvSinks = Int(c.kv_sinks)
    func policy(_ v: UInt32, _ what: String) throws(EAError) -> AttentionPolicy {
        guard let p = AttentionPolicy(rawValue: Int(v)) else {
            throw EAError(.invalidArgument, "\(what) \(v) is not an ea_attention (0 dense, 1 lambda, 2 dhsa)")
        }
        return p
    }
    s.attention = try policy(c.attention, "attention")
    s.sinks = Int(c.attn_sinks)
    s.window = Int(c.attn_window)
    guard let pm = PositionMode(rawValue: Int(c.attn_pos_mode)) else {
        throw EAError(.invalidArgument, "attn_pos_mode \(c.attn_pos_mode) is not an ea_position_mode (0 streaming, 1 lm-infinite)")
    }
    s.positionMode = pm
    s.dhsa.budget = Int(c.dhsa_budget)
    s.dhsa.global = Int(c.dhsa_global)
    s.dhsa.local = Int(c.dhsa_local)
    s.dhsa.minChunk = Int(c.dhsa_chunk_min)
    s.dhsa.maxChunk = Int(c.dhsa_chunk_max)
    s.dhsa.threshold = c.dhsa_chunk_threshold
    s.dhsa.queryBlock = Int(c.dhsa_query_block)
    s.dhsa.prefixFraction = c.dhsa_prefix_frac
    s.dhsa.denseTail = Int(c.dhsa_dense_tail)
    guard c.dhsa_score <= 1 else {
        throw EAError(.invalidArgument, "dhsa_score \(c.dhsa_score) is not an ea_dhsa_score (0 max, 1 sum)")
    }
    s.dhsa.headMax = c.dhsa_score == 0
    s.autoFit = c.auto_fit != 0
    if let ws = c.workspace {
        if c.workspace_size > UInt64(Int.max) { throw EAError(.invalidArgument, "workspace_size \(c.workspace_size) is too large") }
        s.workspace = ws
        s.workspaceSize = Int(c.workspace_size)
    } else if c.workspace_size != 0 {
        throw EAError(.invalidArgument, "workspace is NULL but workspace_size is \(c.workspace_size)")
    }
    if c.n_layer_attention > 0 {
        guard let la = c.layer_attention else {
            throw EAError(.invalidArgument, "layer_attention is NULL but n_layer_attention is \(c.n_layer_attention)")
        }
        if c.n_layer_attention > 4096 { throw EAError(.invalidArgument, "n_layer_attention \(c.n_layer_attention) is too large") }
        for l in 0..<Int(c.n_layer_attention) { s.layerAttention.append(try policy(UInt32(la[l]), "layer_attention[\(l)]")) }
    }
    return s
}

@_cdecl("ea_estimate_session_bytes")
public func _ea_estimate_session_bytes(_ m: OpaquePointer?, _ params: UnsafePointer<ea_session_params>?,
                                       _ out: UnsafeMutablePointer<UInt64>?) -> ea_status {
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_estimate_session_bytes: model is NULL") }
    guard let out = out else { return invalid("ea_estimate_session_bytes: out_bytes is NULL", h.error) }
    out.pointee = 0
    do {
        let plan = try SessionPlan.make(h.model.hp, try sessionParams(params))
        out.pointee = UInt64(plan.totalBytes)
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_create")
public func _ea_session_create(_ m: OpaquePointer?, _ params: UnsafePointer<ea_session_params>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> ea_status {
    guard let out = out else { return invalid("ea_session_create: out_session is NULL") }
    out.pointee = nil
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_session_create: model is NULL") }
    // With a workspace everything this call allocates (the plan, the session, its handle) is carved
    // from the workspace's bookkeeping reserve: the region is open until the handle exists.
    var region = false
    if let p = params, Int(p.pointee.size) >= MemoryLayout<ea_session_params>.size, let ws = p.pointee.workspace,
       p.pointee.workspace_size > 0, p.pointee.workspace_size <= UInt64(Int.max), Int(bitPattern: ws) % 64 == 0 {
        eak_region_begin(ws, p.pointee.workspace_size)
        region = true
    }
    var made: OpaquePointer? = nil
    var status = Status.ok.rawValue
    do {
        let s = try Session(model: h.model, params: try sessionParams(params))
        made = retain(SessionHandle(s))
    } catch {
        status = fail(error)
    }
    if region {
        let used = eak_region_used()
        if eak_region_end() != 0 && status == Status.ok.rawValue {
            // a planner bug, not a caller error: the reserve is an upper bound checked by the tests
            release(made, SessionHandle.self)
            made = nil
            status = fail(EAError(.budget, "ea_session_create: the session's bookkeeping needed more than its reserve in the workspace (\(used) bytes used)"))
        }
    }
    out.pointee = made
    return status
}

@_cdecl("ea_session_free")
public func _ea_session_free(_ s: OpaquePointer?) { release(s, SessionHandle.self) }

@_cdecl("ea_session_allocated_bytes")
public func _ea_session_allocated_bytes(_ s: OpaquePointer?) -> UInt64 {
    UInt64(handle(s, SessionHandle.self)?.session.allocatedBytes ?? 0)
}

@_cdecl("ea_session_n_past")
public func _ea_session_n_past(_ s: OpaquePointer?) -> Int32 {
    Int32(clamping: handle(s, SessionHandle.self)?.session.nPast ?? 0)
}

@_cdecl("ea_session_n_ctx")
public func _ea_session_n_ctx(_ s: OpaquePointer?) -> Int32 {
    Int32(clamping: handle(s, SessionHandle.self)?.session.plan.maxPositions ?? 0)
}

@_cdecl("ea_session_reset")
public func _ea_session_reset(_ s: OpaquePointer?) { handle(s, SessionHandle.self)?.session.reset() }

@_cdecl("ea_session_last_error")
public func _ea_session_last_error(_ s: OpaquePointer?) -> UnsafePointer<CChar> {
    guard let h = handle(s, SessionHandle.self) else {
        return UnsafeRawPointer(emptyCString.utf8Start).assumingMemoryBound(to: CChar.self)
    }
    return UnsafePointer(h.error.buf)
}

@_cdecl("ea_session_prefill")
public func _ea_session_prefill(_ s: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ n: Int) -> ea_status {
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_prefill: session is NULL") }
    if n == 0 { return Status.ok.rawValue }
    guard let tokens = tokens, n > 0 else { return invalid("ea_session_prefill: tokens is NULL", h.error) }
    do {
        try h.session.evaluate(UnsafeBufferPointer(start: tokens, count: n))
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_decode")
public func _ea_session_decode(_ s: OpaquePointer?, _ token: Int32,
                               _ outLogits: UnsafeMutablePointer<UnsafePointer<Float>?>?) -> ea_status {
    outLogits?.pointee = nil
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_decode: session is NULL") }
    do {
        let l = try h.session.decode(token)
        outLogits?.pointee = l
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_get_params")
public func _ea_session_get_params(_ s: OpaquePointer?, _ out: UnsafeMutablePointer<ea_session_params>?) -> ea_status {
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_get_params: session is NULL") }
    guard let out = out else { return invalid("ea_session_get_params: out_params is NULL", h.error) }
    let p = h.session.params, plan = h.session.plan
    var c = _ea_session_default_params()
    c.n_ctx = UInt32(clamping: plan.nCtx)
    c.n_batch = UInt32(plan.nBatch)
    c.n_threads = UInt32(plan.nThreads)
    c.memory_budget = p.memoryBudget
    c.kv_bits = UInt32(plan.kvBits)
    c.kv_group = UInt32(plan.kvGroup)
    c.kv_sinks = UInt32(p.kvSinks)
    c.attention = UInt32(p.attention.rawValue)
    c.attn_sinks = UInt32(p.sinks)
    c.attn_window = UInt32(p.window)
    c.attn_pos_mode = UInt32(p.positionMode.rawValue)
    c.dhsa_budget = UInt32(clamping: plan.dhsa.budget)
    c.dhsa_global = UInt32(p.dhsa.global)
    c.dhsa_local = UInt32(p.dhsa.local)
    c.dhsa_chunk_min = UInt32(p.dhsa.minChunk)
    c.dhsa_chunk_max = UInt32(p.dhsa.maxChunk)
    c.dhsa_chunk_threshold = p.dhsa.threshold
    c.dhsa_query_block = UInt32(p.dhsa.queryBlock)
    c.dhsa_prefix_frac = p.dhsa.prefixFraction
    c.dhsa_dense_tail = UInt32(p.dhsa.denseTail)
    c.dhsa_score = p.dhsa.headMax ? 0 : 1
    c.auto_fit = p.autoFit ? 1 : 0
    c.workspace = p.workspace
    c.workspace_size = UInt64(p.workspaceSize)
    out.pointee = c
    return Status.ok.rawValue
}

@_cdecl("ea_session_eval_series")
public func _ea_session_eval_series(_ s: OpaquePointer?, _ samples: UnsafePointer<Float>?, _ n: Int,
                                    _ out: UnsafeMutablePointer<Float>?, _ outLen: Int) -> ea_status {
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_eval_series: session is NULL") }
    guard let sp = h.session.model.hp.series else {
        return fail(EAError(.modelKind, "ea_session_eval_series: this model reads tokens (use ea_session_prefill)"), h.error)
    }
    if n == 0 { return Status.ok.rawValue }
    guard let samples = samples else { return invalid("ea_session_eval_series: samples is NULL", h.error) }
    guard let out = out else { return invalid("ea_session_eval_series: out is NULL", h.error) }
    let need = n.multipliedReportingOverflow(by: sp.outputs)
    if need.overflow || outLen < need.partialValue {
        return fail(EAError(.bufferTooSmall, "ea_session_eval_series: out must hold \(n) x \(sp.outputs) floats, has \(outLen)"), h.error)
    }
    do {
        try h.session.evaluateSeries(UnsafeBufferPointer(start: samples, count: n), into: out)
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_state_size")
public func _ea_session_state_size(_ s: OpaquePointer?) -> Int {
    handle(s, SessionHandle.self)?.session.stateSize ?? 0
}

@_cdecl("ea_session_state_save")
public func _ea_session_state_save(_ s: OpaquePointer?, _ buf: UnsafeMutableRawPointer?, _ size: Int,
                                   _ written: UnsafeMutablePointer<Int>?) -> ea_status {
    written?.pointee = 0
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_state_save: session is NULL") }
    let need = h.session.stateSize
    guard let buf = buf, size >= need else {
        written?.pointee = need
        return fail(EAError(.bufferTooSmall, "ea_session_state_save: the snapshot needs \(need) bytes, the buffer has \(buf == nil ? 0 : size)"), h.error)
    }
    do {
        written?.pointee = try h.session.saveState(into: buf, size: size)
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_state_load")
public func _ea_session_state_load(_ s: OpaquePointer?, _ buf: UnsafeRawPointer?, _ size: Int) -> ea_status {
    guard let h = handle(s, SessionHandle.self) else { return invalid("ea_session_state_load: session is NULL") }
    guard let buf = buf else { return invalid("ea_session_state_load: buffer is NULL", h.error) }
    do {
        try h.session.loadState(from: buf, size: size)
        return Status.ok.rawValue
    } catch {
        return fail(error, h.error)
    }
}

@_cdecl("ea_session_logits")
public func _ea_session_logits(_ s: OpaquePointer?) -> UnsafePointer<Float>? {
    handle(s, SessionHandle.self)?.session.lastLogits
}

// MARK: sampler

@_cdecl("ea_sampler_default_params")
public func _ea_sampler_default_params() -> ea_sampler_params {
    let d = SamplerParams()
    return ea_sampler_params(size: UInt32(MemoryLayout<ea_sampler_params>.size), temperature: d.temperature,
                             top_k: Int32(d.topK), top_p: d.topP, min_p: d.minP, repeat_penalty: d.repeatPenalty,
                             repeat_last_n: Int32(d.repeatLastN), seed: d.seed)
}

@_cdecl("ea_sampler_create")
public func _ea_sampler_create(_ m: OpaquePointer?, _ params: UnsafePointer<ea_sampler_params>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> ea_status {
    guard let out = out else { return invalid("ea_sampler_create: out_sampler is NULL") }
    out.pointee = nil
    guard let h = handle(m, ModelHandle.self) else { return invalid("ea_sampler_create: model is NULL") }
    if h.model.hp.series != nil { return fail(EAError(.modelKind, "ea_sampler_create: a series model has no vocabulary to sample")) }
    var c = _ea_sampler_default_params()
    if let p = params {
        if p.pointee.size < UInt32(MemoryLayout<ea_sampler_params>.size) {
            return invalid("ea_sampler_create: params->size is \(p.pointee.size); initialise params with ea_sampler_default_params()")
        }
        c = p.pointee
    }
    var sp = SamplerParams()
    sp.temperature = c.temperature
    sp.topK = Int(c.top_k)
    sp.topP = c.top_p
    sp.minP = c.min_p
    sp.repeatPenalty = c.repeat_penalty
    sp.repeatLastN = Int(c.repeat_last_n)
    sp.seed = c.seed
    do {
        out.pointee = retain(SamplerHandle(try Sampler(vocabSize: h.model.hp.nVocab, params: sp)))
        return Status.ok.rawValue
    } catch {
        return fail(error)
    }
}

@_cdecl("ea_sampler_free")
public func _ea_sampler_free(_ s: OpaquePointer?) { release(s, SamplerHandle.self) }

@_cdecl("ea_sampler_sample")
public func _ea_sampler_sample(_ s: OpaquePointer?, _ logits: UnsafePointer<Float>?,
                               _ out: UnsafeMutablePointer<Int32>?) -> ea_status {
    guard let h = handle(s, SamplerHandle.self) else { return invalid("ea_sampler_sample: sampler is NULL") }
    guard let logits = logits, let out = out else { return invalid("ea_sampler_sample: logits or out_token is NULL") }
    out.pointee = h.sampler.sample(logits)
    return Status.ok.rawValue
}

@_cdecl("ea_sampler_accept")
public func _ea_sampler_accept(_ s: OpaquePointer?, _ token: Int32) {
    handle(s, SamplerHandle.self)?.sampler.accept(token)
}

// MARK: generation

@_cdecl("ea_generate")
public func _ea_generate(_ s: OpaquePointer?, _ smp: OpaquePointer?, _ prompt: UnsafePointer<Int32>?,
                         _ nPrompt: Int, _ nPredict: Int32, _ callback: ea_token_callback?,
                         _ user: UnsafeMutableRawPointer?, _ abort: UnsafePointer<Int32>?,
                         _ nGenerated: UnsafeMutablePointer<Int32>?) -> ea_status {
    nGenerated?.pointee = 0
    guard let sh = handle(s, SessionHandle.self) else { return invalid("ea_generate: session is NULL") }
    guard let sampler = handle(smp, SamplerHandle.self)?.sampler else {
        return invalid("ea_generate: sampler is NULL", sh.error)
    }
    if nPredict < 0 { return invalid("ea_generate: n_predict is negative", sh.error) }
    if nPrompt < 0 { return invalid("ea_generate: n_prompt is out of range", sh.error) }
    if nPrompt > 0 && prompt == nil { return invalid("ea_generate: prompt is NULL", sh.error) }
    let session = sh.session
    if nPrompt == 0 && session.lastLogits == nil {
        return invalid("ea_generate: empty prompt and no previous token to continue from", sh.error)
    }
    let tok = session.model.tokenizer
    do throws(EAError) {
        var produced: Int32 = 0
        _ = try session.generate(UnsafeBufferPointer(start: prompt, count: nPrompt), sampler: sampler,
                                 maxTokens: Int(nPredict), abort: abort) { t in
            produced += 1
            nGenerated?.pointee = produced
            guard let cb = callback else { return false }
            let piece = tok.bytes(of: t)
            return piece.withMemoryRebound(to: CChar.self) { cb(t, $0.baseAddress, $0.count, user) } != 0
        }
        return Status.ok.rawValue
    } catch {
        return fail(error, sh.error)
    }
}
