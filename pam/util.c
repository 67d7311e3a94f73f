/*
 * Small string helpers shared by the pam_watchword sources.
 */
#include "util.h"

void ww_sanitize(char *dst, size_t dstlen, const char *src) {
    size_t i = 0;

    if (src != NULL) {
        for (; src[i] != '\0' && i + 1 < dstlen; i++)
            dst[i] = ww_is_loggable((unsigned char)src[i]) ? src[i] : '?';
    }
    dst[i] = '\0';
}
