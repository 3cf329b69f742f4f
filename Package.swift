// swift-tools-version:5.9
import PackageDescription

// Normal-mode build: tests and the host CLI. The C static library (Embedded Swift core + kernels,
// no Swift runtime) is built by cross/build-lib.sh from the same sources.
let ompInclude = "/usr/lib/llvm-14/lib/clang/14.0.6/include"  // Swift's clang ships no omp.h

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
                .unsafeFlags(["-L/usr/lib/llvm-14/lib", "-Xlinker", "-rpath", "-Xlinker", "/usr/lib/llvm-14/lib"]),
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
    ]
)
