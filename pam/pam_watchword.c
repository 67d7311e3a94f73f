/*
 * pam_watchword: second factor (TOTP/HOTP/SMS) for PAM.
 *
 * The module checks no codes itself. It runs the watchword helper, relays
 * the helper's prompts through the PAM conversation and maps the helper's
 * verified outcome to a PAM result (docs/helper-protocol.md). Everything
 * that is not a clean, verified outcome denies.
 */
#include <string.h>
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "helper.h"
#include "options.h"
#include "util.h"

#define WW_MAX_USER 256

/* Built with -fvisibility=hidden; pam_watchword.map limits exports too. */
#define WW_EXPORT PAM_EXTERN __attribute__((visibility("default")))

/* Empty, over-long or control bytes: refused before anything else. */
static int valid_user(const char *user) {
    size_t len = strnlen(user, WW_MAX_USER + 1);

    if (len == 0 || len > WW_MAX_USER)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (ww_is_control((unsigned char)user[i]))
            return 0;
    }
    return 1;
}

static int map_outcome(enum ww_outcome outcome, int nullok) {
    switch (outcome) {
    case WW_OUTCOME_SUCCESS:
        return PAM_SUCCESS;
    case WW_OUTCOME_AUTH_ERR:
        return PAM_AUTH_ERR;
    case WW_OUTCOME_NOT_ENROLLED:
        return nullok ? PAM_IGNORE : PAM_AUTH_ERR;
    case WW_OUTCOME_MAXTRIES:
        return PAM_MAXTRIES;
    case WW_OUTCOME_CONV_ERR:
        return PAM_CONV_ERR;
    case WW_OUTCOME_UNAVAILABLE:
    case WW_OUTCOME_NONE:
    default:
        return PAM_AUTHINFO_UNAVAIL;
    }
}

static const char *pam_code_name(int rc) {
    switch (rc) {
    case PAM_SUCCESS:
        return "PAM_SUCCESS";
    case PAM_AUTH_ERR:
        return "PAM_AUTH_ERR";
    case PAM_IGNORE:
        return "PAM_IGNORE";
    case PAM_MAXTRIES:
        return "PAM_MAXTRIES";
    case PAM_AUTHINFO_UNAVAIL:
        return "PAM_AUTHINFO_UNAVAIL";
    case PAM_CONV_ERR:
        return "PAM_CONV_ERR";
    case PAM_INCOMPLETE:
        return "PAM_INCOMPLETE";
    default:
        return "other";
    }
}

WW_EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                  const char **argv) {
    struct ww_options opts;
    struct ww_login login = {NULL, NULL, NULL, NULL};
    enum ww_outcome outcome = WW_OUTCOME_NONE;
    const char *reason = NULL;
    const char *outcome_word = "error";
    char shown_user[WW_MAX_USER + 1], shown_service[64], shown_rhost[256];
    int rc = PAM_AUTHINFO_UNAVAIL;
    int r;

    /* Best effort, for the log line; the real checks come below. */
    (void)pam_get_item(pamh, PAM_SERVICE, (const void **)&login.service);
    (void)pam_get_item(pamh, PAM_RHOST, (const void **)&login.rhost);
    (void)pam_get_item(pamh, PAM_TTY, (const void **)&login.tty);

    if (ww_parse_options(pamh, argc, argv, &opts) != 0) {
        reason = "invalid module options";
        rc = PAM_AUTHINFO_UNAVAIL;
        goto done;
    }

    r = pam_get_user(pamh, &login.user, NULL);
    if (r != PAM_SUCCESS || login.user == NULL) {
        pam_syslog(pamh, LOG_ERR, "cannot determine the user name: %s",
                   pam_strerror(pamh, r));
        reason = "no user name";
        login.user = NULL;
        rc = r == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_AUTH_ERR;
        goto done;
    }
    if (!valid_user(login.user)) {
        pam_syslog(pamh, LOG_ERR, "refusing an invalid user name");
        reason = "invalid user name";
        rc = PAM_AUTH_ERR;
        goto done;
    }

    outcome = ww_run_helper(pamh, flags, &opts, &login, &reason);
    rc = map_outcome(outcome, opts.nullok);
    if (outcome != WW_OUTCOME_NONE)
        outcome_word = ww_outcome_name(outcome);

done:
    ww_sanitize(shown_user, sizeof(shown_user), login.user);
    ww_sanitize(shown_service, sizeof(shown_service), login.service);
    ww_sanitize(shown_rhost, sizeof(shown_rhost), login.rhost);
    pam_syslog(pamh, rc == PAM_SUCCESS ? LOG_INFO : LOG_NOTICE,
               "user=%s service=%s rhost=%s outcome=%s result=%s%s%s%s",
               shown_user, shown_service, shown_rhost, outcome_word,
               pam_code_name(rc), reason != NULL ? " reason=\"" : "",
               reason != NULL ? reason : "", reason != NULL ? "\"" : "");
    return rc;
}

WW_EXPORT int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc,
                             const char **argv) {
    (void)pamh;
    (void)flags;
    (void)argc;
    (void)argv;
    return PAM_SUCCESS;
}
