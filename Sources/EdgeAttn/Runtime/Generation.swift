import EAKernels

/// The one generation loop: ea_generate and the CLI's `run` both call it, so streaming, stopping and
/// what enters the cache are decided in one place.
extension Session {
    /// Evaluates prompt (when not empty) and feeds it to the sampler, then samples up to maxTokens
    /// tokens from the last evaluated token's logits. onToken(t) sees each sampled token in order;
    /// returning true stops after it. An end-of-generation token ends the loop unreported. Every
    /// reported token enters the cache, so a later call continues after it, except the last one
    /// when cacheLast is false (a caller that stops there saves one decode). abort is checked
    /// between batches and before each token. Returns the number of tokens reported.
    public func generate(_ prompt: UnsafeBufferPointer<Int32>, sampler: Sampler, maxTokens: Int,
                         abort: UnsafePointer<Int32>? = nil, cacheLast: Bool = true,
                         onToken: (Int32) -> Bool) throws(EAError) -> Int {
        if !prompt.isEmpty {
            try evaluate(prompt, abort: abort)
            for t in prompt { sampler.accept(t) }
        }
        guard var logits = lastLogits else {
            throw EAError(.invalidArgument, "empty prompt and no previous token to continue from")
        }
        var produced = 0
        while produced < maxTokens {
            if let a = abort, eak_load_flag(a) != 0 {
                throw EAError(.aborted, "aborted after \(produced) generated tokens")
            }
            let t = sampler.sample(logits)
            if model.tokenizer.isEndOfGeneration(t) { break }
            produced += 1
            let stop = onToken(t)
            if !cacheLast && produced == maxTokens { break }
            logits = try decode(t)
            if stop { break }
        }
        return produced
    }
}
