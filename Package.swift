// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "watchword",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "watchword", targets: ["Watchword"]),
        .executable(name: "watchword-helper", targets: ["WatchwordHelper"]),
        // For the fuzz targets in Fuzz/, a separate package that depends on this one.
        .library(name: "WatchwordCore", targets: ["WatchwordCore"]),
        .library(name: "WatchwordOTP", targets: ["WatchwordOTP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries from Debian: libcrypto (libssl-dev) and libqrencode (libqrencode-dev).
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CQRencode", path: "Sources/CQRencode", pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]),

        // HMAC, hashes, random bytes and constant-time compare over OpenSSL.
        .target(name: "WatchwordCrypto", dependencies: ["COpenSSL"]),
        // RFC 4226 HOTP, RFC 6238 TOTP, RFC 4648 base32, otpauth:// Key URIs.
        .target(name: "WatchwordOTP", dependencies: ["WatchwordCrypto"]),
        // Config, user names, the state store, policy and the login flow. No Foundation:
        // the helper links this and starts on every login.
        .target(name: "WatchwordCore", dependencies: ["WatchwordOTP", "WatchwordCrypto"]),

        // enable/disable/doctor: PAM stack and sshd_config parsing, editing and checks. The CLI
        // only; the helper never links it.
        .target(name: "WatchwordSetup", dependencies: ["WatchwordCore"]),

        // The verification helper run by pam_watchword.so.
        .executableTarget(name: "WatchwordHelper", dependencies: ["WatchwordCore"]),
        // The admin CLI.
        .executableTarget(
            name: "Watchword",
            dependencies: [
                "WatchwordCore", "WatchwordSetup", "CQRencode",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "WatchwordOTPTests", dependencies: ["WatchwordOTP", "WatchwordCrypto"]),
        .testTarget(name: "WatchwordCoreTests", dependencies: ["WatchwordCore", "WatchwordOTP", "WatchwordCrypto"]),
        .testTarget(name: "WatchwordSetupTests", dependencies: ["WatchwordSetup"]),
    ]
)
