// swift-tools-version:6.0
import Foundation
import PackageDescription

// Normal-mode build: tests and the host CLI. The C static library (Embedded Swift core + kernels,
// no Swift runtime) is built by cross/build-lib.sh from the same sources.

// OpenMP: Swift's clang ships no omp.h and no libomp, so the kernels use a system LLVM's (Debian
// libomp-dev), the newest installed. EA_OMP_INCLUDE (folder of omp.h) and EA_OMP_LIB (folder of
// libomp.so.5) override the search.
let env = Context.environment

/// Children of `dir` sorted by their numbers, newest version first ("19" > "14.0.6" > "9").
func newestFirst(_ dir: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    func key(_ s: String) -> [Int] { s.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) } }
    return names.sorted { key($1).lexicographicallyPrecedes(key($0)) }.map { "\(dir)/\($0)" }
}

func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

let llvmDirs = newestFirst("/usr/lib").filter { $0.hasPrefix("/usr/lib/llvm-") }
let foundInclude = env["EA_OMP_INCLUDE"] ?? llvmDirs
    .flatMap { newestFirst("\($0)/lib/clang").map { "\($0)/include" } }
    .first { exists("\($0)/omp.h") }
let ompLib = env["EA_OMP_LIB"] ?? llvmDirs.map { "\($0)/lib" }.first { exists("\($0)/libomp.so.5") }
guard let ompInclude = foundInclude else {
    fatalError("omp.h not found in /usr/lib/llvm-*/lib/clang/*/include: run cross/setup.sh (libomp-dev) or set EA_OMP_INCLUDE")
}
// Without a folder the linker's default path must hold libomp.so.5.
let ompLinkFlags = ompLib.map { ["-L\($0)", "-Xlinker", "-rpath", "-Xlinker", $0] } ?? []

let package = Package(
    name: "edgeattn",
    products: [
        .executable(name: "edgeattn", targets: ["EdgeAttnCLI"]),
        .library(name: "EdgeAttn", targets: ["EdgeAttn"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "EAKernels",
            path: "Sources/EAKernels",
            cSettings: [
                .unsafeFlags(["-fopenmp", "-idirafter", ompInclude, "-O3", "-ffp-contract=off"]),
            ],
            linkerSettings: [
                .unsafeFlags(ompLinkFlags),
                .linkedLibrary(":libomp.so.5"),
                .linkedLibrary("m"),
            ]
        ),
        .target(
            name: "EdgeAttn",
            dependencies: ["EAKernels"],
            path: "Sources/EdgeAttn",
            linkerSettings: [.linkedLibrary("m")]
        ),
        // Host-only tools (full Swift): the converter and its GGUF writer.
        .target(
            name: "EdgeAttnTools",
            dependencies: ["EdgeAttn", "EAKernels"],
            path: "Sources/EdgeAttnTools"
        ),
        .executableTarget(
            name: "EdgeAttnCLI",
            dependencies: [
                "EdgeAttn",
                "EdgeAttnTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/EdgeAttnCLI"
        ),
        .testTarget(
            name: "EdgeAttnTests",
            dependencies: ["EdgeAttn", "EdgeAttnTools", "EAKernels"],
            path: "Tests/EdgeAttnTests"
        ),
    ],
    // tools 6.0 for typed throws; the code is still written for the Swift 5 language mode
    swiftLanguageModes: [.v5]
)
