// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "watchword",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "watchword", targets: ["Watchword"]),
        .executable(name: "watchword-helper", targets: ["WatchwordHelper"]),
        // For the fuzz targets in Fuzz/, a separate package that depends on this one.
        .library(name: "WatchwordCore", targets: ["WatchwordCore", "LinkLibcrypto"]),
        .library(name: "WatchwordOTP", targets: ["WatchwordOTP", "LinkLibcrypto"]),
        .library(name: "WatchwordPostgres", targets: ["WatchwordPostgres", "LinkLibcrypto"]),
        .library(name: "WatchwordImport", targets: ["WatchwordImport", "LinkLibcrypto"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries from Debian: libcrypto (libssl-dev), libcurl and libpq (headers only).
        // COpenSSL gives libcrypto's headers only; each program chooses how it links libcrypto:
        // LinkLibcrypto (below) for the shared libcrypto.so.3, or the helper's libcrypto.a.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", providers: [.apt(["libssl-dev"])]),
        // libcurl's headers (libcurl4-openssl-dev). Deliberately not linked: WatchwordSMS
        // dlopen()s libcurl.so.4 when a text is sent, so TOTP logins never load it.
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // libpq's headers (libpq-dev). Deliberately not linked: WatchwordPostgres dlopen()s
        // libpq.so.5 when the config says backend = "postgres", so logins on the file store
        // never load it.
        .systemLibrary(name: "CLibpq", path: "Sources/CLibpq", providers: [.apt(["libpq-dev"])]),

        // The version from the top-level VERSION file (its one source; #embed at build time).
        .target(name: "CVersion"),

        // QR codes for the terminal: libqrencode (Debian's libqrencode4) dlopen()ed when a code
        // is drawn (enroll, export, and the helper only when a user enrolls at login).
        .target(name: "WatchwordQR"),
        // HMAC, hashes, random bytes and constant-time compare over OpenSSL.
        .target(name: "WatchwordCrypto", dependencies: ["COpenSSL"]),
        // Links the shared libcrypto.so.3: the CLI, the tests, and programs built on the
        // library products (Fuzz/, Benchmarks/). Not the helper: see its target.
        .target(name: "LinkLibcrypto", linkerSettings: [.linkedLibrary("crypto")]),
        // RFC 4226 HOTP, RFC 6238 TOTP, RFC 4648 base32, otpauth:// Key URIs.
        .target(name: "WatchwordOTP", dependencies: ["WatchwordCrypto"]),
        // Config, user names, the state store, policy and the login flow. No Foundation:
        // the helper links this and starts on every login.
        // Debug builds only: WATCHWORD_TEST_HOOKS compiles in the crash points of
        // TestHooks.swift (the integration tests kill a write at each step); release builds
        // never have them.
        .target(
            name: "WatchwordCore", dependencies: ["WatchwordOTP", "WatchwordCrypto"],
            swiftSettings: [.define("WATCHWORD_TEST_HOOKS", .when(configuration: .debug))]),

        // The google-authenticator and pam_oath files `watchword import` reads: files users
        // own, parsed strictly; a library of its own, unit-tested and fuzzed (Fuzz/).
        .target(name: "WatchwordImport", dependencies: ["WatchwordCore", "WatchwordOTP", "WatchwordCrypto"]),
        // enable/disable/doctor: PAM stack and sshd_config parsing, editing and checks. The CLI
        // only; the helper never links it.
        .target(name: "WatchwordSetup", dependencies: ["WatchwordCore"]),

        // The SMS providers: command, twilio, twilio-verify, nomado (HTTPS through libcurl).
        .target(name: "WatchwordSMS", dependencies: ["WatchwordCore", "CCurl"]),
        // The shared store for fleets: PostgreSQL through libpq (loaded only when used).
        .target(name: "WatchwordPostgres", dependencies: ["WatchwordCore", "WatchwordCrypto", "CLibpq"]),
        // Test doubles shipped as a target of their own: a fake SMS provider.
        .target(name: "WatchwordTestDoubles", dependencies: ["WatchwordCore"]),

        // The helper's command line handed to the Swift runtime by glibc, not found by the
        // runtime's own scan of /proc/self/maps at every start (arguments.c).
        .target(name: "CHelperStart"),

        // The verification helper run by pam_watchword.so. It starts on every login, so it
        // links libcrypto.a (libssl-dev) rather than libcrypto.so.3: only HMAC is used on the
        // login path, and the shared library's 3,400 symbol relocations and its pages cost
        // every login about 2 ms at start-up and in OpenSSL's initialisation. `-l:` keeps the
        // archive after the objects on the link line, where the linker pulls from it. Its
        // symbols are not exported (the static Swift runtime links with --exclude-libs ALL),
        // so the libcrypto.so.3 that libcurl (SMS) or libpq (a fleet's database) loads keeps to
        // itself.
        .executableTarget(
            name: "WatchwordHelper",
            dependencies: [
                "WatchwordCore", "WatchwordSMS", "WatchwordPostgres", "WatchwordQR",
                .target(name: "CHelperStart", condition: .when(platforms: [.linux])),
            ],
            linkerSettings: [
                .linkedLibrary(":libcrypto.a", .when(platforms: [.linux])),
                .linkedLibrary("crypto", .when(platforms: [.macOS])),
                // With --static-swift-stdlib: libstdc++.a instead of libstdc++.so.6 (link/libstdc++.so).
                .unsafeFlags(["-L", Context.packageDirectory + "/link"], .when(platforms: [.linux])),
            ]),
        // The admin CLI.
        .executableTarget(
            name: "Watchword",
            dependencies: [
                "WatchwordCore", "WatchwordSetup", "WatchwordSMS", "WatchwordPostgres", "WatchwordQR", "WatchwordImport",
                "LinkLibcrypto", "CVersion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "WatchwordOTPTests", dependencies: ["WatchwordOTP", "WatchwordCrypto", "LinkLibcrypto"]),
        .testTarget(
            name: "WatchwordCoreTests",
            // WatchwordPostgres: the fleet's offline cache is tested here, with Core's fixtures.
            dependencies: [
                "WatchwordCore", "WatchwordOTP", "WatchwordCrypto", "WatchwordPostgres", "WatchwordTestDoubles", "LinkLibcrypto",
            ]),
        .testTarget(name: "WatchwordSMSTests", dependencies: ["WatchwordSMS", "WatchwordCore", "LinkLibcrypto"]),
        .testTarget(name: "WatchwordImportTests", dependencies: ["WatchwordImport", "WatchwordCore", "WatchwordOTP", "LinkLibcrypto"]),
        .testTarget(name: "WatchwordSetupTests", dependencies: ["WatchwordSetup", "LinkLibcrypto"]),
        .testTarget(name: "WatchwordPostgresTests", dependencies: ["WatchwordPostgres", "WatchwordCrypto", "LinkLibcrypto"]),
    ]
)
