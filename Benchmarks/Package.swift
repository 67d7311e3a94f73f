// swift-tools-version: 6.1
// In-process benchmarks (ordo-one/benchmark): `swift package --package-path Benchmarks benchmark`.
// A package of its own so the main build and the test suite never build the harness.
import PackageDescription

let package = Package(
    name: "watchword-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "watchword", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "WatchwordBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WatchwordCore", package: "watchword"),
                .product(name: "WatchwordOTP", package: "watchword"),
            ],
            path: "Benchmarks/WatchwordBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
