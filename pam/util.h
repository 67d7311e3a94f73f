/*
 * Small string helpers shared by the pam_watchword sources.
 */
#ifndef WATCHWORD_UTIL_H
#define WATCHWORD_UTIL_H

#include <stddef.h>

/* A control byte: below 0x20, or DEL. */
static inline int ww_is_control(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}

/*
 * Printable ASCII other than space: what a log field may hold, so that no
 * user-chosen name can forge another field ("x outcome=success") or smuggle
 * bytes that are not UTF-8 into the log.
 */
static inline int ww_is_loggable(unsigned char c) {
    return c > 0x20 && c < 0x7f;
}

/* 1 if s is 1 to max bytes long and holds no control byte, else 0. */
int ww_clean(const char *s, size_t max);

/*
 * Copy src (NULL counts as "") into dst of size dstlen (> 0), replacing
 * every byte that is not ww_is_loggable by '?' and truncating to dstlen-1
 * bytes. For log lines.
 */
void ww_sanitize(char *dst, size_t dstlen, const char *src);

#endif
