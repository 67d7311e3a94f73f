// swift-tools-version: 6.1
// libFuzzer targets for watchword's parsers. A package of its own so that the sanitizer
// flags never reach the product build; Fuzz/run.sh builds and runs it, Fuzz/README.md says
// what each target checks.
import PackageDescription

// Instrumentation for these targets. run.sh passes the same flags with -Xswiftc so that the
// code under test (WatchwordCore, WatchwordOTP, ...) is instrumented too: coverage of the
// harness alone would leave libFuzzer blind.
let fuzzer: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]
// ld.gold fails (an internal error) on these links; lld does not.
let fuzzerLink: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzDriver"] + products.map { .product(name: $0, package: "watchword") },
        swiftSettings: fuzzer, linkerSettings: fuzzerLink)
}

let package = Package(
    name: "watchword-fuzz",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "watchword", path: ".."),
    ],
    targets: [
        .target(name: "FuzzDriver"),
        fuzzTarget("FuzzStateFile", ["WatchwordCore"]),
        fuzzTarget("FuzzConfig", ["WatchwordCore"]),
        fuzzTarget("FuzzOTPAuthURI", ["WatchwordOTP"]),
        fuzzTarget("FuzzBase32", ["WatchwordOTP"]),
        fuzzTarget("FuzzGoogleAuthenticatorFile", ["WatchwordImport", "WatchwordCore"]),
        fuzzTarget("FuzzOathUsersFile", ["WatchwordImport", "WatchwordCore", "WatchwordOTP"]),
        fuzzTarget("FuzzOfflineCache", ["WatchwordCore", "WatchwordPostgres"]),
        fuzzTarget("FuzzJSON", ["WatchwordCore"]),
    ]
)
