// No code: this target exists for its linker setting (-lcrypto, the shared libcrypto.so.3),
// which every program that depends on it inherits. See Package.swift.
