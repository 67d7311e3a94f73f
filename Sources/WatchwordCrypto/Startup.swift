import COpenSSL

/// OpenSSL set up for a short-lived process (the helper): call before any other function of
/// this module. Returns false if OpenSSL could not be initialised.
///
/// It skips filling OpenSSL's tables of every cipher and digest by name and of its error
/// texts (together about 0.7 ms of the first HMAC, at every login) and its clean-up at exit.
/// HMAC and the three digests do not go through EVP at all (`DirectDigest`); what still
/// does (random bytes, a digest known only by name) loads the system's OpenSSL
/// configuration when first used. What it gives
/// up: looking a digest up by a name (`EVP_get_digestbyname`), which this module does only
/// for a `HashFunction` declared outside it (SHA-1, SHA-256 and SHA-512 are fetched
/// directly), and OpenSSL's error texts, which nothing here shows.
public func initializeCryptoForShortLivedProcess() -> Bool {
    let flags = UInt64(
        OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS
            | OPENSSL_INIT_NO_ATEXIT)
    return OPENSSL_init_crypto(flags, nil) == 1
}
