// swift-tools-version:6.0
import PackageDescription

// Plain -O (no -Ounchecked: Swift 6.3.1 miscompiled a String->Int parse next to a
// nonisolated(unsafe) static in a release cross-module build; the kernels index raw pointers anyway).
let package = Package(
    name: "mcl-dist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mcl-dist", targets: ["mcl-dist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),
        // oneDNN's sgemm for the network's and the loss's GEMMs (Sources/MCLCore/GEMM.swift).
        .systemLibrary(name: "COneDNN", providers: [.apt(["libdnnl-dev"])]),
        .target(name: "MCLCore", dependencies: ["COpenBLAS", "COneDNN", "CImageCodecs"]),
        // Direct 3x3 convolution kernels (AVX-512 / AVX2, chosen at run time) for the small-channel layers.
        .target(name: "CDirectConv"),
        .target(name: "MCLNet", dependencies: ["MCLCore", "COpenBLAS", "CDirectConv"]),
        .target(name: "MCLObjective", dependencies: ["MCLCore", "COpenBLAS"]),
        .target(name: "MCLDistributed", dependencies: ["MCLCore", "CMPI"]),
        .target(name: "MCLEval", dependencies: ["MCLCore", "COpenBLAS", "CImageCodecs", "MCLData"]),
        // libjpeg-turbo, libpng, zlib (Debian: libjpeg-dev libpng-dev zlib1g-dev) and a C shim that
        // catches libjpeg's fatal errors with setjmp (Sources/CImageCodecs/jpeg_shim.c).
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png"), .linkedLibrary("z")]),
        .target(name: "MCLData", dependencies: ["MCLCore", "CImageCodecs"]),
        .target(name: "MCLTrain", dependencies: ["MCLCore", "MCLNet", "MCLObjective", "MCLDistributed", "MCLData", "MCLEval",
                                              .product(name: "Yams", package: "Yams")]),
        .executableTarget(name: "mcl-mpi-check", dependencies: ["MCLCore", "MCLNet", "MCLObjective", "MCLDistributed", "MCLTrain"],
                          path: "Tests/MPI"),
        .executableTarget(name: "mcl-dist", dependencies: [
            "MCLCore", "MCLNet", "MCLObjective", "MCLDistributed", "MCLEval", "MCLData", "MCLTrain",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .testTarget(name: "MCLCoreTests", dependencies: ["MCLCore"]),
        .testTarget(name: "MCLNetTests", dependencies: ["MCLCore", "MCLNet"]),
        .testTarget(name: "MCLObjectiveTests", dependencies: ["MCLCore", "MCLObjective"]),
        .testTarget(name: "MCLEvalTests", dependencies: ["MCLCore", "MCLData", "MCLEval"]),
        .testTarget(name: "MCLDataTests", dependencies: ["MCLCore", "MCLData"]),
        .testTarget(name: "MCLTrainTests", dependencies: ["MCLCore", "MCLNet", "MCLObjective", "MCLDistributed", "MCLData", "MCLEval", "MCLTrain"]),
    ],
    swiftLanguageModes: [.v6]
)
