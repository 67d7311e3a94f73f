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
        .library(name: "WatchwordPostgres", targets: ["WatchwordPostgres"]),
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
        // libcurl's headers (libcurl4-openssl-dev). Deliberately not linked: WatchwordSMS
        // dlopen()s libcurl.so.4 when a text is sent, so TOTP logins never load it.
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),

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

        // The SMS providers: command, twilio, twilio-verify, nomado (HTTPS through libcurl).
        .target(name: "WatchwordSMS", dependencies: ["WatchwordCore", "CCurl"]),
        // The shared store for fleets: PostgreSQL, through its own protocol client (TLS by
        // libssl, loaded only when used).
        .target(name: "WatchwordPostgres", dependencies: ["WatchwordCore", "WatchwordCrypto"]),
        // Test doubles shipped as a target of their own: a fake SMS provider.
        .target(name: "WatchwordTestDoubles", dependencies: ["WatchwordCore"]),

        // The verification helper run by pam_watchword.so.
        .executableTarget(name: "WatchwordHelper", dependencies: ["WatchwordCore", "WatchwordSMS", "WatchwordPostgres"]),
        // The admin CLI.
        .executableTarget(
            name: "Watchword",
            dependencies: [
                "WatchwordCore", "WatchwordSetup", "WatchwordSMS", "WatchwordPostgres", "CQRencode",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "WatchwordOTPTests", dependencies: ["WatchwordOTP", "WatchwordCrypto"]),
        .testTarget(
            name: "WatchwordCoreTests",
            dependencies: ["WatchwordCore", "WatchwordOTP", "WatchwordCrypto", "WatchwordTestDoubles"]),
        .testTarget(name: "WatchwordSMSTests", dependencies: ["WatchwordSMS", "WatchwordCore"]),
        .testTarget(name: "WatchwordSetupTests", dependencies: ["WatchwordSetup"]),
        .testTarget(name: "WatchwordPostgresTests", dependencies: ["WatchwordPostgres", "WatchwordCrypto"]),
    ]
)
