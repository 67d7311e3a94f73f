#ifndef WATCHWORD_COPENSSL_SHIM_H
#define WATCHWORD_COPENSSL_SHIM_H
/* SHA1_Init and its kin, which WatchwordCrypto's HMAC uses, are deprecated in OpenSSL 3.0
 * in favour of EVP, but kept: they compute without the provider machinery, whose first
 * fetch costs a login about half a millisecond (BENCHMARKS.md). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
/* getrandom(2), for nonces that need not start OpenSSL's generator. */
#include <sys/random.h>
#endif
