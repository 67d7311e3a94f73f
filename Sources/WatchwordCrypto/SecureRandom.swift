import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Errors from the cryptographic primitives.
public enum CryptoError: Error, Sendable, Equatable {
    /// OpenSSL's random generator failed (e.g. it could not be seeded).
    case randomFailed
}

/// Cryptographically secure random values from OpenSSL's `RAND_bytes`.
public enum SecureRandom {
    /// Returns `count` random bytes.
    ///
    /// - Throws: `CryptoError.randomFailed` if OpenSSL cannot produce them.
    public static func bytes(count: Int) throws -> [UInt8] {
        precondition(count >= 0, "negative byte count")
        var result = [UInt8](repeating: 0, count: count)
        var done = 0
        // RAND_bytes takes an Int32 length; request huge counts in chunks.
        while done < count {
            let chunk = min(count - done, 1 << 30)
            let ok = result.withUnsafeMutableBufferPointer { buffer in
                RAND_bytes(buffer.baseAddress! + done, Int32(chunk)) == 1
            }
            guard ok else { throw CryptoError.randomFailed }
            done += chunk
        }
        return result
    }

    /// Returns `count` (at most 256) random bytes straight from the kernel (getrandom(2)),
    /// without starting OpenSSL's generator: its first use loads openssl.cnf and seeds a
    /// DRBG, which costs milliseconds in a program that needs one nonce per run.
    public static func kernelBytes(count: Int) throws -> [UInt8] {
        precondition(count >= 0 && count <= 256, "kernelBytes takes 0 to 256 bytes")
        var result = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = result.withUnsafeMutableBytes { getrandom($0.baseAddress! + done, count - done, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CryptoError.randomFailed
            }
            done += n
        }
        return result
    }

    /// Returns a uniformly distributed integer in `0 ..< upperBound`.
    ///
    /// A plain `random % upperBound` favours small values whenever `upperBound`
    /// does not divide 2³²; values below `2³² mod upperBound` are therefore
    /// rejected and redrawn (at most half of all draws, so this terminates fast).
    ///
    /// - Precondition: `upperBound > 0`.
    public static func uniform(below upperBound: UInt32) throws -> UInt32 {
        precondition(upperBound > 0, "upperBound must be positive")
        let threshold = (0 &- upperBound) % upperBound  // 2³² mod upperBound
        while true {
            let b = try bytes(count: 4)
            let r = UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
            if r >= threshold {
                return r % upperBound
            }
        }
    }

    /// Returns `count` uniformly random decimal digits; leading zeros are kept.
    ///
    /// Suitable for one-time codes and recovery codes.
    public static func digits(count: Int) throws -> String {
        precondition(count >= 0, "negative digit count")
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            // Bytes 250...255 are rejected so that `b % 10` is exactly uniform.
            var batch = try bytes(count: count - out.count + 8)
            for b in batch where b < 250 && out.count < count {
                out.append(UInt8(ascii: "0") + b % 10)
            }
            secureZero(&batch)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
