import EAKernels

/// Decodes a whole tensor to float32 (ggml order). False for a type without a dequantizer.
public func dequantizeTensor(_ f: GGUFFile, _ t: GGUFTensor, into out: UnsafeMutablePointer<Float>) -> Bool {
    eak_dequantize(t.type, f.data(of: t), out, Int64(t.elementCount)) == 0
}
