/*
 * Option parsing for pam_watchword.
 */
#ifndef WATCHWORD_OPTIONS_H
#define WATCHWORD_OPTIONS_H

#include <security/pam_modules.h>

/* Where the Debian package (install/build-deb.sh) puts the helper. */
#define WW_DEFAULT_HELPER "/usr/libexec/watchword/watchword-helper"
#define WW_DEFAULT_STATE_DIR "/var/lib/watchword"
#define WW_DEFAULT_CONFIG "/etc/watchword/config.toml"
#define WW_DEFAULT_TIMEOUT 30
#define WW_MIN_TIMEOUT 1
#define WW_MAX_TIMEOUT 600
#define WW_MAX_EXEMPT 16 /* exempt_group= and exempt_from= lines, each */

struct ww_options {
    int nullok;
    int debug;
    int enroll_at_login; /* offer a token to a user who has none */
    unsigned int timeout; /* seconds, WW_MIN_TIMEOUT..WW_MAX_TIMEOUT */
    const char *helper;   /* absolute paths; point into argv or defaults */
    const char *state_dir;
    const char *config;
    int config_named; /* config= was given: the file must exist */
    /* Passed to the helper, which decides (docs/helper-protocol.md). */
    const char *exempt_group[WW_MAX_EXEMPT];
    const char *exempt_from[WW_MAX_EXEMPT];
    unsigned int n_exempt_group, n_exempt_from;
};

/*
 * Fill *opts from the module arguments. Returns 0 when every argument is
 * valid, -1 otherwise (the reason has been logged). A bad argument must
 * make the caller deny: never fall back to a default.
 */
int ww_parse_options(pam_handle_t *pamh, int argc, const char **argv,
                     struct ww_options *opts);

#endif
