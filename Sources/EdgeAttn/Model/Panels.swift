import EAKernels

/// Panel layouts: at load, W2 and Q4_1 matrices that are only multiplied (never looked up by row)
/// are reordered in place into 16-row panels, so one load serves 16 rows in the kernels
/// (eak_matmul_w2p, eak_matmul_q4p) with the same results. The reordering happens in this
/// process's copy-on-write mapping; the file is untouched. docs/formats.md gives the byte layouts.
extension GGUFFile {
    /// Reorders W2 tensor t (rows of rowBytes, a multiple of 16 rows) into panels, once. True when
    /// the tensor is in panels afterwards; its readers then go through eak_w2p_dequantize_row.
    public func packW2Panels(_ t: GGUFTensor, rows: Int, cols: Int, group: Int, rowBytes: Int) -> Bool {
        if isW2Panels(t.name) { return true }
        if rows % Int(EAK_W2_PANEL) != 0 || rows * rowBytes != t.byteCount { return false }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: Int(EAK_W2_PANEL) * rowBytes, alignment: 64)
        defer { scratch.deallocate() }
        let ok = eak_w2_pack_panels(UnsafeMutableRawPointer(mutating: data(of: t)), rowBytes, Int32(rows), Int32(cols),
                                    Int32(group), scratch) == 0
        if ok { reordered[t.name] = .w2Panels }
        return ok
    }

    /// Reorders Q4_1 tensor t (rows x cols) into panels of 16 rows, once: decode then reads 16 rows'
    /// scales per load. True when the tensor is in panels; readers of its bytes go through
    /// rowLayoutBytes(of:).
    public func packQ4Panels(_ t: GGUFTensor, rows: Int, cols: Int) -> Bool {
        if isQ4Panels(t.name) { return true }
        let rowBytes = cols / 32 * 20
        if t.type != Int32(EAK_Q4_1) || rows % Int(EAK_Q4P_PANEL) != 0 || cols % 32 != 0 || cols / 32 > 512
            || rows * rowBytes != t.byteCount { return false }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: Int(EAK_Q4P_PANEL) * rowBytes, alignment: 64)
        defer { scratch.deallocate() }
        let ok = eak_q4p_pack_panels(UnsafeMutableRawPointer(mutating: data(of: t)), rowBytes, Int32(rows), Int32(cols),
                                     scratch) == 0
        if ok { reordered[t.name] = .q4Panels }
        return ok
    }

    /// The tensor's bytes as the file stores them (Q4_1 panels rebuilt into rows; W2 panels are not
    /// handled here: their readers decode rows with eak_w2p_dequantize_row).
    public func rowLayoutBytes(of t: GGUFTensor) -> [UInt8] {
        let src = data(of: t)
        guard isQ4Panels(t.name), t.dims.count == 2, t.dims[1] > 0 else {
            return Array(UnsafeRawBufferPointer(start: src, count: t.byteCount))
        }
        let rows = t.dims[1], rb = t.byteCount / rows
        return [UInt8](unsafeUninitializedCapacity: t.byteCount) { buf, n in
            for r in 0..<rows { eak_q4p_row(src, rb, Int32(r), buf.baseAddress! + r * rb) }
            n = t.byteCount
        }
    }
}
