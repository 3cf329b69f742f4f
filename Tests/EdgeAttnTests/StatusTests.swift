import EAKernels
import XCTest
@testable import EdgeAttn

final class StatusTests: XCTestCase {
    /// The Swift mirror of ea_status must equal the header's values.
    func testStatusValuesMatchHeader() {
        let header: [(Status, Int)] = [
            (.ok, Int(EA_OK)), (.invalidArgument, Int(EA_ERR_INVALID_ARGUMENT)), (.io, Int(EA_ERR_IO)),
            (.badMagic, Int(EA_ERR_BAD_MAGIC)), (.unsupportedVersion, Int(EA_ERR_UNSUPPORTED_VERSION)),
            (.truncated, Int(EA_ERR_TRUNCATED)), (.corrupt, Int(EA_ERR_CORRUPT)),
            (.unsupportedType, Int(EA_ERR_UNSUPPORTED_TYPE)), (.unsupportedArch, Int(EA_ERR_UNSUPPORTED_ARCH)),
            (.missingTensor, Int(EA_ERR_MISSING_TENSOR)), (.shape, Int(EA_ERR_SHAPE)),
            (.metadata, Int(EA_ERR_METADATA)), (.budget, Int(EA_ERR_BUDGET)),
            (.outOfMemory, Int(EA_ERR_OUT_OF_MEMORY)), (.tokenRange, Int(EA_ERR_TOKEN_RANGE)),
            (.contextFull, Int(EA_ERR_CONTEXT_FULL)), (.bufferTooSmall, Int(EA_ERR_BUFFER_TOO_SMALL)),
            (.aborted, Int(EA_ERR_ABORTED)), (.tokenizer, Int(EA_ERR_TOKENIZER)),
            (.kernelMismatch, Int(EA_ERR_KERNEL_MISMATCH)), (.stateMismatch, Int(EA_ERR_STATE_MISMATCH)),
            (.modelKind, Int(EA_ERR_MODEL_KIND)),
        ]
        for (s, v) in header { XCTAssertEqual(Int(s.rawValue), v, "\(s)") }
        XCTAssertEqual(libraryVersion, UInt32(EA_VERSION_MAJOR * 10000 + EA_VERSION_MINOR * 100 + EA_VERSION_PATCH))
    }
}
