/*
 * Option parsing for pam_watchword.
 *
 * Every argument must be understood. Anything unknown or malformed is logged
 * and makes the module deny: a typo in /etc/pam.d must never weaken a login.
 */
#include "options.h"
#include "util.h"

#include <limits.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_ext.h>

/* An absolute path of at most PATH_MAX-1 bytes with no control bytes. */
static int valid_path(const char *value) {
    size_t len = strnlen(value, PATH_MAX);

    if (len == 0 || len >= PATH_MAX || value[0] != '/')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (ww_is_control((unsigned char)value[i]))
            return 0;
    }
    return 1;
}

/* Decimal digits only, no sign, no white space, within the allowed range. */
static int parse_timeout(const char *value, unsigned int *out) {
    unsigned long n = 0;

    if (*value == '\0')
        return -1;
    for (const char *p = value; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (unsigned long)(*p - '0');
        if (n > WW_MAX_TIMEOUT)
            return -1;
    }
    if (n < WW_MIN_TIMEOUT)
        return -1;
    *out = (unsigned int)n;
    return 0;
}

/* If arg is "<name>=<value>", return the value, else NULL. */
static const char *option_value(const char *arg, const char *name) {
    size_t len = strlen(name);

    if (strncmp(arg, name, len) == 0 && arg[len] == '=')
        return arg + len + 1;
    return NULL;
}

int ww_parse_options(pam_handle_t *pamh, int argc, const char **argv,
                     struct ww_options *opts) {
    const char *value;
    int ok = 1;

    opts->nullok = 0;
    opts->debug = 0;
    opts->timeout = WW_DEFAULT_TIMEOUT;
    opts->helper = WW_DEFAULT_HELPER;
    opts->state_dir = WW_DEFAULT_STATE_DIR;
    opts->config = WW_DEFAULT_CONFIG;
    opts->config_named = 0;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];

        if (arg == NULL) {
            ok = 0;
        } else if (strcmp(arg, "nullok") == 0) {
            opts->nullok = 1;
        } else if (strcmp(arg, "debug") == 0) {
            opts->debug = 1;
        } else if ((value = option_value(arg, "timeout")) != NULL) {
            if (parse_timeout(value, &opts->timeout) != 0) {
                char shown[32];

                ww_sanitize(shown, sizeof(shown), value);
                pam_syslog(pamh, LOG_ERR,
                           "invalid option timeout=%s: must be %d to %d "
                           "seconds",
                           shown, WW_MIN_TIMEOUT, WW_MAX_TIMEOUT);
                ok = 0;
            }
        } else if ((value = option_value(arg, "helper")) != NULL) {
            if (!valid_path(value)) {
                pam_syslog(pamh, LOG_ERR,
                           "invalid option helper=: not an absolute path");
                ok = 0;
            } else {
                opts->helper = value;
            }
        } else if ((value = option_value(arg, "state_dir")) != NULL) {
            if (!valid_path(value)) {
                pam_syslog(pamh, LOG_ERR,
                           "invalid option state_dir=: not an absolute path");
                ok = 0;
            } else {
                opts->state_dir = value;
            }
        } else if ((value = option_value(arg, "config")) != NULL) {
            if (!valid_path(value)) {
                pam_syslog(pamh, LOG_ERR,
                           "invalid option config=: not an absolute path");
                ok = 0;
            } else {
                opts->config = value;
                opts->config_named = 1;
            }
        } else {
            char shown[64];

            ww_sanitize(shown, sizeof(shown), arg);
            pam_syslog(pamh, LOG_ERR, "unknown option \"%s\"", shown);
            ok = 0;
        }
    }
    return ok ? 0 : -1;
}
