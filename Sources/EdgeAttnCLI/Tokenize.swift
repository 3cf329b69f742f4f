import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print token ids of a text, separated by spaces.")
    @Option(name: .short) var m: String
    @Flag(name: .customLong("no-special"), help: "Tokenize special-token text as plain text.") var noSpecial = false
    @Flag(name: .long, help: "Add BOS if the model asks for it.") var bos = false
    @Option(name: .long, help: "Read the text from a file (bytes as they are).") var file: String?
    @Argument var text: String?

    func run() throws {
        let model = loadModel(m)
        var bytes: [UInt8]
        if let f = file {
            guard let d = FileManager.default.contents(atPath: f) else { die("cannot read \(f)") }
            bytes = [UInt8](d)
        } else if let t = text {
            bytes = Array(t.utf8)
        } else {
            die("give TEXT or --file")
        }
        let ids = bytes.withUnsafeMutableBufferPointer {
            model.tokenizer.encode(UnsafeBufferPointer($0), addBos: bos, parseSpecial: !noSpecial)
        }
        writeStdout(Array((ids.map { String($0) }.joined(separator: " ") + "\n").utf8))
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the bytes of whitespace-separated token ids.")
    @Option(name: .short) var m: String
    @Option(name: .long) var file: String

    func run() throws {
        let model = loadModel(m)
        guard let d = FileManager.default.contents(atPath: file), let s = String(data: d, encoding: .utf8) else {
            die("cannot read \(file)")
        }
        var out: [UInt8] = []
        for w in s.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            guard let id = Int32(w), id >= 0, Int(id) < model.hp.nVocab else { die("bad token id '\(w)'") }
            out.append(contentsOf: model.tokenizer.piece(id))
        }
        writeStdout(out)
    }
}
