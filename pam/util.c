/*
 * Small string helpers shared by the pam_watchword sources.
 */
#include "util.h"

#include <string.h>

int ww_clean(const char *s, size_t max) {
    size_t len = strnlen(s, max + 1);

    for (size_t i = 0; i < len; i++) {
        if (ww_is_control((unsigned char)s[i]))
            return 0;
    }
    return len > 0 && len <= max;
}

void ww_sanitize(char *dst, size_t dstlen, const char *src) {
    size_t i = 0;

    if (src != NULL) {
        for (; src[i] != '\0' && i + 1 < dstlen; i++)
            dst[i] = ww_is_loggable((unsigned char)src[i]) ? src[i] : '?';
    }
    dst[i] = '\0';
}
