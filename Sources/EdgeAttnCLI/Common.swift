import ArgumentParser
import EdgeAttn
import EdgeAttnTools
import EAKernels
import Foundation

/// Prints to stderr and exits non-zero: the CLI's one way to fail.
func die(_ msg: String, _ code: Int32 = 1) -> Never {
    FileHandle.standardError.write(("edgeattn: " + msg + "\n").data(using: .utf8)!)
    exit(code)
}

func eprint(_ msg: String) {
    FileHandle.standardError.write((msg + "\n").data(using: .utf8)!)
}

/// Loads a text model (every command that takes -m reads or writes tokens).
func loadModel(_ path: String) -> Model {
    let model: Model
    do { model = try Model(path: path) } catch {
        die("\(error.status.text): \(error.message)")
    }
    if model.hp.series != nil {
        die("\(Status.modelKind.text): \(path) is a series model (numbers in, forecasts out): run it with examples/stream or ea_session_eval_series")
    }
    return model
}

func writeStdout(_ bytes: [UInt8]) {
    bytes.withUnsafeBufferPointer { b in
        var off = 0
        while off < b.count {
            let w = write(1, b.baseAddress! + off, b.count - off)
            if w <= 0 { return }
            off += w
        }
    }
}

/// Writes data to path through a temporary file and a rename: no half-written output.
func writeAtomically(_ data: Data, to path: String) {
    let tmp = path + ".tmp.\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: data) else { die("cannot write \(tmp)") }
    if rename(tmp, path) != 0 {
        unlink(tmp)
        die("cannot rename \(tmp) to \(path)")
    }
}

func peakRSSBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return 0
}

func tokenize(_ model: Model, _ text: String, bos: Bool, special: Bool) -> [Int32] {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBufferPointer {
        model.tokenizer.encode(UnsafeBufferPointer($0), addBos: bos, parseSpecial: special)
    }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func pad(_ s: String, _ w: Int, right: Bool = false) -> String {
    s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count)
}

func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int32 {
    var best = 0
    for i in 1..<n where p[i] > p[best] { best = i }
    return Int32(best)
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func jsonEscape(_ s: String) -> String {
    var o = ""
    for c in s.unicodeScalars {
        switch c {
        case "\"": o += "\\\""
        case "\\": o += "\\\\"
        default: o += c.value < 0x20 ? "?" : String(c)
        }
    }
    return o
}
