import EAKernels

/// The weights a tensor holds, as ggml dims: its stored dims, except for W2 tensors (stored as I8
/// bytes [row_bytes, rows]), whose logical dims are [cols, rows].
public func logicalDims(_ f: GGUFFile, _ t: GGUFTensor) -> [Int] {
    if t.type == Int32(EAK_I8), t.dims.count == 2, let g = try? f.int(Model.w2GroupKey(t.name)), g >= 32, g % 32 == 0 {
        let perGroup = 4 + g / 4
        if t.dims[0] % perGroup == 0 { return [t.dims[0] / perGroup * g, t.dims[1]] }
    }
    return t.dims
}

/// Decodes a whole tensor to float32 (ggml order; W2 tensors to their logical weights, see
/// logicalDims). False for a type without a dequantizer.
public func dequantizeTensor(_ f: GGUFFile, _ t: GGUFTensor, into out: UnsafeMutablePointer<Float>) -> Bool {
    let dims = logicalDims(f, t)
    if dims != t.dims {
        let g = (try? f.int(Model.w2GroupKey(t.name))) ?? 0
        let cols = dims[0], rb = t.dims[0]
        let panels = f.isW2Panels(t.name)
        for r in 0..<dims[1] {
            let rc = panels ? eak_w2p_dequantize_row(f.data(of: t), rb, Int32(r), out + r * cols, Int32(cols), Int32(g))
                            : eak_w2_dequantize_row(f.data(of: t) + r * rb, out + r * cols, Int32(cols), Int32(g))
            if rc != 0 { return false }
        }
        return true
    }
    return eak_dequantize(t.type, f.data(of: t), out, Int64(t.elementCount)) == 0
}
