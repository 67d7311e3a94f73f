/*
 * Option parsing for pam_watchword.
 *
 * Every argument must be understood. Anything unknown or malformed is logged
 * and makes the module deny: a typo in /etc/pam.d must never weaken a login.
 */
#include "options.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_ext.h>

/* Decimal digits only, no sign, no white space, within the allowed range. */
static int parse_timeout(const char *value, unsigned int *out) {
    size_t digits = strspn(value, "0123456789");
    unsigned long n = digits < 10 ? strtoul(value, NULL, 10) : 0;

    if (digits == 0 || value[digits] != '\0' || n < WW_MIN_TIMEOUT ||
        n > WW_MAX_TIMEOUT)
        return -1;
    *out = (unsigned int)n;
    return 0;
}

/* If arg is "<name>=<value>", return the value, else NULL. */
static const char *option_value(const char *arg, const char *name) {
    size_t len = strlen(name);

    return strncmp(arg, name, len) == 0 && arg[len] == '=' ? arg + len + 1
                                                           : NULL;
}

int ww_parse_options(pam_handle_t *pamh, int argc, const char **argv,
                     struct ww_options *opts) {
    static const char *const path_names[] = {"helper", "state_dir", "config"};
    const char **paths[] = {&opts->helper, &opts->state_dir, &opts->config};
    int ok = 1;

    *opts = (struct ww_options){.timeout = WW_DEFAULT_TIMEOUT,
                                .helper = WW_DEFAULT_HELPER,
                                .state_dir = WW_DEFAULT_STATE_DIR,
                                .config = WW_DEFAULT_CONFIG};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i] != NULL ? argv[i] : "", *value = NULL;
        char shown[64];
        size_t k;

        for (k = 0; k < 3; k++) {
            if ((value = option_value(arg, path_names[k])) != NULL)
                break;
        }
        if (strcmp(arg, "nullok") == 0) {
            opts->nullok = 1;
        } else if (strcmp(arg, "debug") == 0) {
            opts->debug = 1;
        } else if (strncmp(arg, "timeout=", 8) == 0) {
            if (parse_timeout(arg + 8, &opts->timeout) != 0) {
                ww_sanitize(shown, sizeof(shown), arg + 8);
                pam_syslog(pamh, LOG_ERR,
                           "invalid option timeout=%s: must be %d to %d "
                           "seconds",
                           shown, WW_MIN_TIMEOUT, WW_MAX_TIMEOUT);
                ok = 0;
            }
        } else if (value != NULL && value[0] == '/' &&
                   ww_clean(value, PATH_MAX - 1)) {
            *paths[k] = value; /* an absolute path, no control bytes */
            opts->config_named |= paths[k] == &opts->config;
        } else if (value != NULL) {
            pam_syslog(pamh, LOG_ERR,
                       "invalid option %s=: not an absolute path",
                       path_names[k]);
            ok = 0;
        } else {
            ww_sanitize(shown, sizeof(shown), arg);
            pam_syslog(pamh, LOG_ERR, "unknown option \"%s\"", shown);
            ok = 0;
        }
    }
    return ok ? 0 : -1;
}
