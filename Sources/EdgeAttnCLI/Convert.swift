import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a GGUF model to W2A8 (2-bit linear layers; embedding/head at 8 bits by default).",
        discussion: """
        Types: w2 (group-wise asymmetric 2-bit, fp16 scale and offset per group), w2g<N> (group N), \
        w4 (ggml q4_1), w4g<N> (asymmetric 4-bit groups of N as two W2 planes), w8 (ggml q8_0), f16, f32. Quantizers: rtn, search, imatrix, gptq (the last two \
        need --calib). Example: edgeattn convert in.gguf out.gguf --calib macbeth.txt --type '*ffn_down*=w4'
        """)
    @Argument(help: "Source GGUF (any type the runtime reads).") var input: String
    @Argument(help: "Output GGUF (written to a temporary file, then renamed).") var output: String
    @Flag(name: .long, help: "The building blocks alone, as before any recipe: --group 64, no rotation, no refinement, no sequential calibration, no float target, the source's head layout, no bit allocation, 4096 calibration tokens. Options given explicitly still apply.")
    var plain = false
    @Option(name: .long, help: "W2 group size (multiple of 32; rows it does not divide use the largest multiple of 32 below it that does). Default 1536 (one group per row up to 1536 weights); 64 with --plain.") var group: Int?
    @Option(name: .long, help: "rtn | search | imatrix | gptq") var quantizer: String = "gptq"
    @Option(name: .long, help: "Calibration text file (repeatable).") var calib: [String] = []
    @Option(name: .customLong("calib-tokens"), help: "Calibration tokens (chunks of 512, spread evenly over the texts, or generated). Default 16384; 4096 with --plain.") var calibTokens: Int?
    @Option(name: .customLong("calib-seed"), help: "Seed of the calibration text the model generates when no --calib is given.") var calibSeed: UInt64 = 0xca1b
    @Option(name: .customLong("save-calib"), help: "Write the generated calibration text to this file.") var saveCalib: String? = nil
    @Option(name: .long, help: "Format of the linear layers.") var linear: String = "w2"
    @Option(name: .long, help: "Format of the token embedding / output head.") var embed: String = "w8"
    @Option(name: .long, help: "Format of a separate, calibrated output head (w4, w4g<N>, w8, f16), or 'source' for the source's layout: a tied source gets its own output.weight from token_embd, which keeps --embed. Default w4; source with --plain.")
    var head: String?
    @Option(name: .long, help: "PATTERN=TYPE override by tensor name glob (repeatable, last match wins).")
    var type: [String] = []
    @Option(name: .long, help: "Hadamard block (power of two) to rotate the layer matrices by; 0 = none. Default 64; 0 with --plain.")
    var rotate: Int?
    @Option(name: .long, help: "GPTQ: rounds of code coordinate descent and joint scale/offset least squares per row after GPTQ (0 = none). Default 4; 0 with --plain.")
    var refine: Int?
    @Flag(name: .long, inversion: .prefixedNo, help: "Calibrate layer by layer on the partly quantized model: each layer's statistics come from the outputs of the already quantized layers before it. Default on for gptq and imatrix; off with --plain.")
    var sequential: Bool?
    @Option(name: .customLong("float-target"), help: "With --sequential: quantize each layer matrix towards W + BETA (W* - W), W* the least-squares fit of the source model's output on the same tokens from the quantized model's inputs (0 <= BETA <= 1). Default 0.25 when sequential; 0 with --plain.")
    var floatTarget: Double?
    @Flag(name: .customLong("true-sequential"), help: "With --sequential: within a layer too, calibrate each matrix on inputs that went through the layer's matrices converted before it (q/k/v, attention output, gate/up, down).")
    var trueSequential = false
    @Flag(name: .customLong("act-order"), help: "GPTQ: quantize columns in order of decreasing calibration energy (Hessian diagonal), group parameters fitted on the original weights.")
    var actOrder = false
    @Option(name: .customLong("target-bpw"), help: "Bits per weight for the linear layers: the default W2 matrices whose 2-bit form changes the model's output most per added bit (measured) get two-plane 4-bit until the target is reached; 0 = off. Default 2.5 when the linear layers are W2 (skipped if they alone exceed it); off with --plain.")
    var targetBpw: Double?
    @Flag(name: .long, help: "No progress bar.") var quiet = false

    func run() throws {
        var o = ConvertOptions()
        o.input = input
        o.output = output
        // The defaults are the recipe that measured best on text of domains it never saw
        // (docs/results/quality-domains.md); --plain restores the bare building blocks.
        let group = self.group ?? (plain ? 64 : 1536)
        o.group = group
        guard let q = Quantizer(rawValue: quantizer) else { die("unknown quantizer '\(quantizer)' (rtn, search, imatrix, gptq)") }
        o.quantizer = q
        o.calibFiles = calib
        o.calibTokens = calibTokens ?? (plain ? 4096 : 16384)
        if o.calibTokens < 1 { die("--calib-tokens must be at least 1") }
        o.calibSeed = calibSeed
        o.saveCalib = saveCalib
        if saveCalib != nil && !calib.isEmpty { die("--save-calib writes generated text; it cannot be combined with --calib") }
        guard let lt = TargetType.parse(linear, defaultGroup: group) else { die("unknown type '\(linear)'") }
        guard let et = TargetType.parse(embed, defaultGroup: group) else { die("unknown type '\(embed)'") }
        o.linearType = lt
        o.embedType = et
        let h = head ?? (plain ? "source" : "w4")
        if h != "source" {
            guard let ht = TargetType.parse(h, defaultGroup: group) else { die("unknown type '\(h)'") }
            o.headType = ht
        }
        for spec in type {
            guard let eq = spec.lastIndex(of: "="), let t = TargetType.parse(String(spec[spec.index(after: eq)...]), defaultGroup: group) else {
                die("bad --type '\(spec)': expected PATTERN=TYPE")
            }
            o.overrides.append((String(spec[..<eq]), t))
        }
        o.progress = !quiet
        o.rotate = rotate ?? (plain ? 0 : 64)
        let refine = self.refine ?? (plain ? 0 : 4)
        if refine < 0 || refine > 100 { die("--refine \(refine) must be in 0...100") }
        o.refine = q == .gptq ? refine : 0
        if self.refine != nil && refine > 0 && q != .gptq { die("--refine needs --quantizer gptq") }
        o.sequential = sequential ?? (!plain && (q == .gptq || q == .imatrix))
        if actOrder && q != .gptq { die("--act-order needs --quantizer gptq") }
        o.actOrder = actOrder
        o.floatTarget = floatTarget ?? (o.sequential && !plain ? 0.25 : 0)
        o.trueSequential = trueSequential
        if let t = targetBpw, !(t >= 0 && t <= 32) { die("--target-bpw \(t) must be in [0, 32] (0 = off)") }
        if let t = targetBpw {
            o.targetBpw = t > 0 ? t : nil
        } else if !plain, case .w2 = lt {
            o.targetBpw = 2.5
            o.targetBpwIsDefault = true
        }
        let t0 = eak_now_ns()
        let reports: [TensorReport]
        do {
            reports = try convert(o) { FileHandle.standardError.write($0.data(using: .utf8)!) }
        } catch { die("\(error)") }
        let secs = Double(eak_now_ns() - t0) / 1e9
        print(pad("tensor", 28) + pad("type", 12, right: false) + pad("bits/w", 8) + pad("rel.err", 10) + "  (error on)")
        var linBits = 0, linN = 0, allBits = 0, allN = 0
        for r in reports {
            print(pad(r.name, 28) + pad(r.type, 12, right: false) + pad(fmt(r.bitsPerWeight, 3), 8)
                  + pad(fmt(r.relError, 4), 10) + (r.outputError ? "  output" : "  weights"))
            if r.isLinear { linBits += r.bytes * 8; linN += r.elements }
            allBits += r.bytes * 8
            allN += r.elements
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("linear layers: \(fmt(Double(linBits) / Double(max(1, linN)), 3)) bits/weight over \(linN) weights")
        print("all quantized matrices: \(fmt(Double(allBits) / Double(max(1, allN)), 3)) bits/weight; file \(size) bytes (\(fmt(Double(size) / 1048576, 1)) MiB)")
        print("converted in \(fmt(secs, 1)) s")
    }
}
