/*
 * pam_watchword: second factor (TOTP/HOTP/SMS) for PAM.
 *
 * The module checks no codes itself. It runs the watchword helper, relays
 * the helper's prompts through the PAM conversation and maps the helper's
 * verified outcome to a PAM result (docs/helper-protocol.md). Everything
 * that is not a clean, verified outcome denies.
 */
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "helper.h"
#include "options.h"
#include "util.h"

#define WW_MAX_USER 256

/* Built with -fvisibility=hidden; pam_watchword.map limits exports too. */
#define WW_EXPORT PAM_EXTERN __attribute__((visibility("default")))

/* The PAM result's name for the summary line. */
static const char *pam_code_name(int rc) {
#define WW_CODE(code) {code, #code}
    static const struct {
        int code;
        const char *name;
    } names[] = {WW_CODE(PAM_SUCCESS),  WW_CODE(PAM_AUTH_ERR),
                 WW_CODE(PAM_IGNORE),   WW_CODE(PAM_MAXTRIES),
                 WW_CODE(PAM_CONV_ERR), WW_CODE(PAM_AUTHINFO_UNAVAIL),
                 WW_CODE(PAM_INCOMPLETE)};
#undef WW_CODE

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].code == rc)
            return names[i].name;
    }
    return "other";
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
    (void)pam_get_item(pamh, PAM_TTY, (const void **)&login.tty);

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
    } else if (!ww_clean(login.user, WW_MAX_USER)) {
        /* Empty, over-long or control bytes: refused before anything else. */
        pam_syslog(pamh, LOG_ERR, "refusing an invalid user name");
        reason = "invalid user name";
        rc = PAM_AUTH_ERR;
    } else {
        outcome = ww_run_helper(pamh, flags, &opts, &login, &reason);
        rc = ww_outcome_pam(outcome, opts.nullok);
    }

    ww_sanitize(shown_user, sizeof(shown_user), login.user);
    ww_sanitize(shown_service, sizeof(shown_service), login.service);
    ww_sanitize(shown_rhost, sizeof(shown_rhost), login.rhost);
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
