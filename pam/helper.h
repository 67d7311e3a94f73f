/*
 * Running the watchword helper and speaking protocol version 1 with it
 * (docs/helper-protocol.md).
 */
#ifndef WATCHWORD_HELPER_H
#define WATCHWORD_HELPER_H

#include <security/pam_modules.h>

#include "options.h"

/* The outcome the helper reported, checked against its exit status. */
enum ww_outcome {
    WW_OUTCOME_NONE = 0, /* no valid result: the run failed, deny */
#define WW_OUTCOME(word, status, pam, pam_nullok) WW_OUTCOME_##word,
#include "outcomes.def"
#undef WW_OUTCOME
};

/* What the header tells the helper about this login. */
struct ww_login {
    const char *user; /* validated by the caller */
    const char *service;
    const char *rhost; /* may be NULL */
    const char *account; /* the user database's name for user; NULL: none */
};

/*
 * Run the helper once for this login, relay its messages through the PAM
 * conversation and return the outcome it reported, or WW_OUTCOME_NONE when
 * anything went wrong (the reason has been logged and, for the summary line,
 * stored in *reason as a static string).
 */
enum ww_outcome ww_run_helper(pam_handle_t *pamh, int flags,
                              const struct ww_options *opts,
                              const struct ww_login *login,
                              const char **reason);

/* The protocol word for an outcome ("success", ...; "error" for NONE). */
const char *ww_outcome_name(enum ww_outcome outcome);

/* The PAM result for an outcome (outcomes.def; NONE: PAM_AUTHINFO_UNAVAIL). */
int ww_outcome_pam(enum ww_outcome outcome, int nullok);

#endif
