/// Constants shared by every attention policy; the kernels themselves are eak_attention,
/// eak_attention_f16 and eak_kvq_attention, told by an eak_span which keys each query reads.
struct AttentionScale {
    let hp: Hyperparams
    let scale: Float

    init(_ hp: Hyperparams) {
        self.hp = hp
        scale = 1 / Float(hp.headDim).squareRoot()
    }
}
