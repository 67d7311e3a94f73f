/*
 * pam_watchword: second factor (TOTP/HOTP/SMS) for PAM.
 *
 * The module checks no codes itself. It runs the watchword helper, relays
 * the helper's prompts through the PAM conversation and maps the helper's
 * verified outcome to a PAM result (docs/helper-protocol.md). Everything
 * that is not a clean, verified outcome denies, and so does every module
 * argument that is not understood: a typo in /etc/pam.d never weakens a login.
 */
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modutil.h>
#include <security/pam_modules.h>

#include "helper.h"
#include "options.h"
#include "util.h"

#define WW_MAX_USER 256

/* Built with -fvisibility=hidden; pam_watchword.map limits exports too. */
#define WW_EXPORT PAM_EXTERN __attribute__((visibility("default")))

/* 1 if s is 1 to max bytes long and holds no control byte, else 0. */
static int clean(const char *s, size_t max) {
    size_t len = strnlen(s, max + 1);

    for (size_t i = 0; i < len; i++) {
        if (ww_is_control((unsigned char)s[i]))
            return 0;
    }
    return len > 0 && len <= max;
}

/* src (NULL: "") for a log field: ww_is_loggable bytes, others as '?'. */
static void sanitize(char *dst, size_t dstlen, const char *src) {
    size_t i = 0;

    for (; src != NULL && src[i] != '\0' && i + 1 < dstlen; i++)
        dst[i] = ww_is_loggable((unsigned char)src[i]) ? src[i] : '?';
    dst[i] = '\0';
}

/*
 * The PAM result's name for the summary line: each result of outcomes.def,
 * and PAM_INCOMPLETE (pam_get_user's conversation is to be resumed).
 */
static const char *pam_code_name(int rc) {
#define WW_OUTCOME(word, status, pam, pam_nullok)                              \
    if (rc == (pam))                                                           \
        return #pam;                                                           \
    if (rc == (pam_nullok))                                                    \
        return #pam_nullok;
#include "outcomes.def"
#undef WW_OUTCOME
    return rc == PAM_INCOMPLETE ? "PAM_INCOMPLETE" : "other";
}

int ww_parse_options(pam_handle_t *pamh, int argc, const char **argv,
                     struct ww_options *opts) {
    static const char *const path_names[] = {"helper=", "state_dir=",
                                             "config="};
    const char **paths[] = {&opts->helper, &opts->state_dir, &opts->config};
    int ok = 1;

    *opts = (struct ww_options){.timeout = WW_DEFAULT_TIMEOUT,
                                .helper = WW_DEFAULT_HELPER,
                                .state_dir = WW_DEFAULT_STATE_DIR,
                                .config = WW_DEFAULT_CONFIG};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i] != NULL ? argv[i] : "", *value = NULL;
        char shown[64];
        size_t k = 0;

        while (k < 3 && strncmp(arg, path_names[k], strlen(path_names[k])) != 0)
            k++;
        if (k < 3)
            value = arg + strlen(path_names[k]);
        sanitize(shown, sizeof(shown), arg);
        if (strcmp(arg, "nullok") == 0) {
            opts->nullok = 1;
        } else if (strcmp(arg, "debug") == 0) {
            opts->debug = 1;
        } else if (strcmp(arg, "enroll_at_login") == 0) {
            opts->enroll_at_login = 1;
        } else if (strncmp(arg, "exempt_group=", 13) == 0 ||
                   strncmp(arg, "exempt_from=", 12) == 0) {
            /* One header line each; the helper reads the group and the
             * address range (AddressRange), and denies on one it cannot. */
            int group = arg[7] == 'g';
            const char *v = arg + (group ? 13 : 12);
            const char **list = group ? opts->exempt_group : opts->exempt_from;
            unsigned int *n = group ? &opts->n_exempt_group : &opts->n_exempt_from;

            if (!clean(v, 255) || strchr(v, ' ') != NULL) {
                pam_syslog(pamh, LOG_ERR, "invalid option %s", shown);
                ok = 0;
            } else if (*n == WW_MAX_EXEMPT) {
                pam_syslog(pamh, LOG_ERR, "invalid option %s: more than %d",
                           shown, WW_MAX_EXEMPT);
                ok = 0;
            } else {
                list[(*n)++] = v;
            }
        } else if (strncmp(arg, "timeout=", 8) == 0) {
            /* Decimal digits only: no sign, no white space. */
            size_t digits = strspn(arg + 8, "0123456789");
            unsigned long n = digits > 0 && digits < 10 && arg[8 + digits] == 0
                                  ? strtoul(arg + 8, NULL, 10)
                                  : 0;

            if (n >= WW_MIN_TIMEOUT && n <= WW_MAX_TIMEOUT) {
                opts->timeout = (unsigned int)n;
            } else {
                pam_syslog(pamh, LOG_ERR,
                           "invalid option %s: must be %d to %d seconds",
                           shown, WW_MIN_TIMEOUT, WW_MAX_TIMEOUT);
                ok = 0;
            }
        } else if (value != NULL && value[0] == '/' &&
                   clean(value, PATH_MAX - 1)) {
            *paths[k] = value; /* absolute, shorter than PATH_MAX, clean */
            opts->config_named |= paths[k] == &opts->config;
        } else if (value != NULL) {
            pam_syslog(pamh, LOG_ERR, "invalid option %s: not an absolute path",
                       path_names[k]);
            ok = 0;
        } else {
            pam_syslog(pamh, LOG_ERR, "unknown option \"%s\"", shown);
            ok = 0;
        }
    }
    return ok ? 0 : -1;
}

WW_EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                  const char **argv) {
    struct ww_options opts;
    struct ww_login login = {NULL, NULL, NULL, NULL};
    enum ww_outcome outcome = WW_OUTCOME_NONE;
    const char *reason = NULL;
    char shown_user[WW_MAX_USER + 1], shown_service[64], shown_rhost[256];
    int rc;

    /* Best effort, for the log line; the real checks come below. */
    (void)pam_get_item(pamh, PAM_SERVICE, (const void **)&login.service);
    (void)pam_get_item(pamh, PAM_RHOST, (const void **)&login.rhost);

    if (ww_parse_options(pamh, argc, argv, &opts) != 0) {
        reason = "invalid module options";
        rc = PAM_AUTHINFO_UNAVAIL;
    } else if ((rc = pam_get_user(pamh, &login.user, NULL)) != PAM_SUCCESS ||
               login.user == NULL) {
        pam_syslog(pamh, LOG_ERR, "cannot determine the user name: %s",
                   pam_strerror(pamh, rc));
        reason = "no user name";
        login.user = NULL;
        rc = rc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_AUTH_ERR;
    } else if (!clean(login.user, WW_MAX_USER)) {
        /* Empty, over-long or control bytes: refused before anything else. */
        pam_syslog(pamh, LOG_ERR, "refusing an invalid user name");
        reason = "invalid user name";
        rc = PAM_AUTH_ERR;
    } else {
        /* Looked up here, where NSS works: the helper is linked statically. */
        const struct passwd *pw = pam_modutil_getpwnam(pamh, login.user);
        login.account = pw != NULL ? pw->pw_name : NULL;
        outcome = ww_run_helper(pamh, flags, &opts, &login, &reason);
        rc = ww_outcome_pam(outcome, opts.nullok);
    }

    sanitize(shown_user, sizeof(shown_user), login.user);
    sanitize(shown_service, sizeof(shown_service), login.service);
    sanitize(shown_rhost, sizeof(shown_rhost), login.rhost);
    pam_syslog(pamh, rc == PAM_SUCCESS ? LOG_INFO : LOG_NOTICE,
               "user=%s service=%s rhost=%s outcome=%s result=%s%s%s%s",
               shown_user, shown_service, shown_rhost, ww_outcome_name(outcome),
               pam_code_name(rc), reason != NULL ? " reason=\"" : "",
               reason != NULL ? reason : "", reason != NULL ? "\"" : "");
    return rc;
}

WW_EXPORT int pam_sm_setcred(pam_handle_t *pamh __attribute__((unused)),
                             int flags __attribute__((unused)),
                             int argc __attribute__((unused)),
                             const char **argv __attribute__((unused))) {
    return PAM_SUCCESS;
}
