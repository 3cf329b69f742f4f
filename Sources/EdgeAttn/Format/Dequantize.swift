import EAKernels

/// The weights a tensor holds, as ggml dims: its stored dims, except for W2 tensors (stored as I8
/// bytes [row_bytes, rows]), whose logical dims are [cols, rows].
public func logicalDims(_ f: GGUFFile, _ t: GGUFTensor) -> [Int] {
    if t.type == Int32(EAK_I8), t.dims.count == 2, let g = try? f.int(Model.w2GroupKey(t.name)), g >= 32, g % 32 == 0 {
        let perGroup = 4 + g / 4, planes = (try? f.int(Model.w2PlanesKey(t.name))) ?? 1
        if t.dims[0] % perGroup == 0, planes == 1 || planes == 2, (t.dims[0] / perGroup) % planes == 0 {
            return [t.dims[0] / perGroup / planes * g, t.dims[1]]
        }
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
        let planes = (try? f.int(Model.w2PlanesKey(t.name))) ?? 1, sc = cols * planes
        // two planes: decode the 2 * cols stored weights of a row, then W = W_hi + W_lo
        var both = [Float](repeating: 0, count: planes > 1 ? sc : 0)
        return both.withUnsafeMutableBufferPointer { bp -> Bool in
            for r in 0..<dims[1] {
                let dst = planes > 1 ? bp.baseAddress! : out + r * cols
                let rc = panels ? eak_w2p_dequantize_row(f.data(of: t), rb, Int32(r), dst, Int32(sc), Int32(g))
                                : eak_w2_dequantize_row(f.data(of: t) + r * rb, dst, Int32(sc), Int32(g))
                if rc != 0 { return false }
                if planes > 1 { for c in 0..<cols { out[r * cols + c] = dst[c] + dst[cols + c] } }
            }
            return true
        }
    }
    if f.isQ4Panels(t.name) {
        return f.rowLayoutBytes(of: t).withUnsafeBytes { eak_dequantize(t.type, $0.baseAddress!, out, Int64(t.elementCount)) == 0 }
    }
    return eak_dequantize(t.type, f.data(of: t), out, Int64(t.elementCount)) == 0
}
