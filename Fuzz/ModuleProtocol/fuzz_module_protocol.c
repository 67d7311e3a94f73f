/*
 * libFuzzer target for the PAM module's side of the helper protocol
 * (docs/helper-protocol.md): everything pam_watchword.so does with the bytes
 * a helper writes. The module's own pam/helper.c is compiled into this file
 * unchanged, so the static functions under test are the shipped ones: talk()
 * (read_line's limits, the message dispatch, relay_prompt's answers,
 * relay_log, parse_result's nonce and outcome checks) and verify_exit().
 *
 * Input: byte 0 picks the run's setting (PAM_SILENT, the debug option, how
 * the conversation answers prompts); the rest is what the helper sends,
 * written into the other end of a socket pair before talk() starts and then
 * shut down, so every read either has data or sees the end of the stream and
 * nothing ever waits. The helper process is not run: the exit status that
 * verify_exit() checks is the one the reported outcome calls for.
 *
 * libpam is not linked: pam_syslog and pam_prompt are the small stand-ins
 * below, which also check what the module passes to them. pam_prompt
 * behaves as libpam's: a failed conversation may still hand back a response.
 */
#include "../../pam/helper.c"

#include <assert.h>
#include <stdint.h>

/* The nonce of every fuzzed run; the seeds' result lines carry it. */
static const char fuzz_nonce[] = "00112233445566778899aabbccddeeff";

/* ---- stand-ins for libpam -------------------------------------------- */

static int conv_mode;         /* how the conversation answers prompts */
static unsigned int n_prompts; /* prompts the conversation saw */

void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...) {
    char line[2048];
    va_list ap;

    (void)pamh;
    (void)priority;
    va_start(ap, fmt);
    (void)vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
}

/* The conversation, as libpam's pam_prompt (pam_vprompt.c) runs it. */
int pam_prompt(pam_handle_t *pamh, int style, char **response,
               const char *fmt, ...) {
    char *text;
    va_list ap;
    int rc = PAM_SUCCESS;

    (void)pamh;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        abort();
    va_end(ap);
    /* One message at a time, with text from a single protocol line. */
    assert(strlen(text) < WW_MAX_LINE && strchr(text, '\n') == NULL);
    free(text);
    if (response != NULL)
        *response = NULL;
    if (style != PAM_PROMPT_ECHO_OFF) {
        assert(style == PAM_TEXT_INFO || style == PAM_ERROR_MSG);
        assert(response == NULL);
        return PAM_SUCCESS;
    }
    assert(response != NULL);
    n_prompts++;
    switch (conv_mode) {
    case 1:
        return PAM_CONV_ERR;
    case 2: /* success without a response */
        return PAM_SUCCESS;
    case 3: /* one byte longer than the module may forward */
        *response = malloc(WW_MAX_ANSWER + 2);
        if (*response == NULL)
            abort();
        memset(*response, '7', WW_MAX_ANSWER + 1);
        (*response)[WW_MAX_ANSWER + 1] = '\0';
        return PAM_SUCCESS;
    case 5: /* failed, yet with a response the module must wipe and free */
        rc = PAM_CONV_ERR;
        break;
    default:
        break;
    }
    *response = strdup(conv_mode == 4 ? "" : "123456");
    if (*response == NULL)
        abort();
    return rc;
}

/* ---- the target ------------------------------------------------------ */

/* Reads what the module sent to the helper, to check the answers' framing. */
static void drain(int fd) {
    char sink[4096];

    while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fake_handle;
    pam_handle_t *pamh = (pam_handle_t *)&fake_handle;
    struct ww_options opts = {
        .nullok = 0,
        .debug = 0,
        .timeout = 1,
        .helper = "/nonexistent/watchword-helper",
        .state_dir = WW_DEFAULT_STATE_DIR,
        .config = WW_DEFAULT_CONFIG,
    };
    struct ww_login login = {"alice", "sshd", "203.0.113.7", "ssh"};
    enum ww_outcome reported = WW_OUTCOME_NONE, verified;
    struct run r;
    char *header;
    size_t header_len = 0, sent = 0;
    int sv[2], sndbuf = 1 << 20;
    char extra;

    if (size < 1)
        return 0;
    opts.debug = (data[0] & 0x01) != 0;
    conv_mode = (data[0] >> 2) % 6;
    n_prompts = 0;

    memset(&r, 0, sizeof(r));
    r.pamh = pamh;
    r.flags = (data[0] & 0x02) != 0 ? PAM_SILENT : 0;
    r.opts = &opts;
    r.fd = -1;
    r.pid = -1; /* no process */
    r.status = -1;
    data++;
    size--;

    header = build_header(&r, &login, &header_len);
    assert(header != NULL);
    memcpy(r.nonce, fuzz_nonce, sizeof(r.nonce)); /* the seeds' nonce */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
    /* The helper's whole output is queued up front (run.sh keeps inputs far below
     * the socket buffer); anything that does not fit is cut off. */
    while (sent < size) {
        ssize_t n = send(sv[1], data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    (void)shutdown(sv[1], SHUT_WR);
    r.fd = sv[0];

    (void)talk(&r, header, header_len, &reported);
    drain(sv[1]);

    /* As ww_run_helper once the helper has exited: nothing may follow the result. */
    if (reported != WW_OUTCOME_NONE && recv(r.fd, &extra, 1, MSG_DONTWAIT) > 0)
        fail(&r, NULL, "helper sent data after its result");
    /* The helper exits with the status its outcome calls for. */
    if (reported != WW_OUTCOME_NONE)
        r.status = outcomes[reported].exit_status << 8; /* as WIFEXITED */
    verified = verify_exit(&r, reported);

#ifdef FUZZ_TRACE /* -DFUZZ_TRACE: say what each input led to, for reading a crash */
    fprintf(stderr, "messages %u, prompts %u, reported %s, verified %s, reason %s\n",
            r.messages, n_prompts, ww_outcome_name(reported), ww_outcome_name(verified),
            r.reason != NULL ? r.reason : "none");
#endif
    /* What the module may conclude from the bytes. */
    assert(r.messages <= WW_MAX_MESSAGES + 1);
    assert(n_prompts <= WW_MAX_MESSAGES);
    assert((verified == WW_OUTCOME_NONE) == (r.reason != NULL || reported == WW_OUTCOME_NONE));
    if (verified == WW_OUTCOME_success) {
        static const char line[] = "result 00112233445566778899aabbccddeeff success\n";
        /* Granted only for this run's nonce, as the last thing sent. */
        assert(sent >= sizeof(line) - 1);
        assert(memcmp(data + sent - (sizeof(line) - 1), line, sizeof(line) - 1) == 0);
        assert(r.reason == NULL);
    }

    close(sv[0]);
    close(sv[1]);
    free(header);
    return 0;
}
