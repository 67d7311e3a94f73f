/*
 * Byte classes shared by the pam_watchword sources.
 */
#ifndef WATCHWORD_UTIL_H
#define WATCHWORD_UTIL_H

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

#endif
