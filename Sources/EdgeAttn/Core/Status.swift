/// Status codes of the C API (`ea_status`), mirrored as a Swift enum so the core never deals in
/// bare integers. The values are the header's and never change; a unit test checks they agree.
public enum Status: Int32 {
    case ok = 0
    case invalidArgument = 1
    case io = 2
    case badMagic = 3
    case unsupportedVersion = 4
    case truncated = 5
    case corrupt = 6
    case unsupportedType = 7
    case unsupportedArch = 8
    case missingTensor = 9
    case shape = 10
    case metadata = 11
    case budget = 12
    case outOfMemory = 13
    case tokenRange = 14
    case contextFull = 15
    case bufferTooSmall = 16
    case aborted = 17
    case tokenizer = 18
    case kernelMismatch = 19
    case stateMismatch = 20
    case modelKind = 21

    /// The static, NUL-terminated description returned by `ea_status_string`.
    public var text: StaticString {
        switch self {
        case .ok: return "EA_OK: success"
        case .invalidArgument: return "EA_ERR_INVALID_ARGUMENT: invalid argument"
        case .io: return "EA_ERR_IO: input/output error"
        case .badMagic: return "EA_ERR_BAD_MAGIC: not a GGUF file"
        case .unsupportedVersion: return "EA_ERR_UNSUPPORTED_VERSION: unsupported GGUF version"
        case .truncated: return "EA_ERR_TRUNCATED: file is truncated"
        case .corrupt: return "EA_ERR_CORRUPT: file is corrupt"
        case .unsupportedType: return "EA_ERR_UNSUPPORTED_TYPE: unsupported tensor or value type"
        case .unsupportedArch: return "EA_ERR_UNSUPPORTED_ARCH: unsupported model architecture"
        case .missingTensor: return "EA_ERR_MISSING_TENSOR: required tensor missing"
        case .shape: return "EA_ERR_SHAPE: tensor has the wrong shape"
        case .metadata: return "EA_ERR_METADATA: required metadata missing or mistyped"
        case .budget: return "EA_ERR_BUDGET: does not fit the memory budget"
        case .outOfMemory: return "EA_ERR_OUT_OF_MEMORY: out of memory"
        case .tokenRange: return "EA_ERR_TOKEN_RANGE: token id out of range"
        case .contextFull: return "EA_ERR_CONTEXT_FULL: context is full"
        case .bufferTooSmall: return "EA_ERR_BUFFER_TOO_SMALL: buffer too small"
        case .aborted: return "EA_ERR_ABORTED: aborted by the caller"
        case .tokenizer: return "EA_ERR_TOKENIZER: tokenizer data missing or inconsistent"
        case .kernelMismatch: return "EA_ERR_KERNEL_MISMATCH: a SIMD kernel disagrees with the generic one"
        case .stateMismatch: return "EA_ERR_STATE_MISMATCH: state snapshot is from another model or session configuration"
        case .modelKind: return "EA_ERR_MODEL_KIND: call does not apply to this kind of model (series or text)"
        }
    }
}

/// The one error type of the core (typed throws: Embedded Swift has no `any Error`).
public struct EAError: Error {
    public var status: Status
    public var message: String
    public init(_ status: Status, _ message: String) {
        self.status = status
        self.message = message
    }
}
