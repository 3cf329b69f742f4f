import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

/// The `edgeattn` command; each subcommand lives in its own file of this folder.
@main
struct EdgeAttnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeattn",
        abstract: "Run, inspect and evaluate GGUF models with libedgeattn.",
        subcommands: [Run.self, Tokenize.self, Detokenize.self, Inspect.self, Perplexity.self,
                      Dequant.self, Logits.self, Convert.self, Bench.self, Needle.self])
}
