/*
 * Running the watchword helper and speaking protocol version 1 with it.
 *
 * The contract is docs/helper-protocol.md. The process handling follows
 * linux-pam's pam_exec: SIGCHLD set to the default while we wait, all
 * signals blocked around fork(), the child resets signal dispositions and
 * mask, gets only fds 0-2, fixed resource limits, umask 077 and "/" as its
 * directory, calls setsid() and executes the descriptor open_helper checked
 * (never the path again) with an environment built from scratch; every
 * child-side failure is _exit(127).
 *
 * Anything the helper does outside the protocol denies the login.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* close_range, explicit_bzero */
#endif
#include "helper.h"
#include "util.h"

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>

#define WW_NONCE_BYTES 16
#define WW_NONCE_HEX (2 * WW_NONCE_BYTES)
#define WW_MAX_LINE 1024 /* per helper message, '\n' included */
#define WW_MAX_MESSAGES 64
#define WW_MAX_ANSWER 4096
#define WW_MAX_ITEM 4096 /* longest PAM item we pass in the header */

/* Results of the I/O helpers below. */
#define IO_OK 0
#define IO_ERROR (-1)   /* protocol violation or I/O error, reason logged */
#define IO_TIMEOUT (-2) /* the deadline passed */
#define IO_EOF 1        /* read_line only: the helper closed its end */

struct run {
    pam_handle_t *pamh;
    int flags;
    const struct ww_options *opts;
    int fd;             /* our end of the socket pair, or -1 */
    pid_t pid;          /* the helper, or -1 */
    int reaped;         /* the helper has been waited for */
    int status_known;   /* status holds its wait status */
    int status;         /* wait status once reaped */
    int64_t deadline;   /* CLOCK_MONOTONIC, milliseconds */
    const char *reason; /* first failure, for the summary line */
    char nonce[WW_NONCE_HEX + 1];
    char buf[WW_MAX_LINE]; /* received, not yet consumed */
    size_t len;
};

static const struct {
    const char *word;
    enum ww_outcome outcome;
    int exit_status;
} outcomes[] = {
    {"success", WW_OUTCOME_SUCCESS, 0},
    {"auth_err", WW_OUTCOME_AUTH_ERR, 10},
    {"not_enrolled", WW_OUTCOME_NOT_ENROLLED, 11},
    {"maxtries", WW_OUTCOME_MAXTRIES, 12},
    {"unavailable", WW_OUTCOME_UNAVAILABLE, 13},
    {"conv_err", WW_OUTCOME_CONV_ERR, 14},
};

#define N_OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

const char *ww_outcome_name(enum ww_outcome outcome) {
    for (size_t i = 0; i < N_OUTCOMES; i++) {
        if (outcomes[i].outcome == outcome)
            return outcomes[i].word;
    }
    return "none";
}

static int expected_status(enum ww_outcome outcome) {
    for (size_t i = 0; i < N_OUTCOMES; i++) {
        if (outcomes[i].outcome == outcome)
            return outcomes[i].exit_status;
    }
    return -1;
}

/* Record the first failure and log it. */
static void fail(struct run *r, const char *reason) {
    if (r->reason == NULL)
        r->reason = reason;
    pam_syslog(r->pamh, LOG_ERR, "%s", reason);
}

/* ---- time ------------------------------------------------------------ */

static int64_t now_ms(void) {
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0; /* cannot happen for CLOCK_MONOTONIC */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start a new stretch in which the helper must act. */
static void set_deadline(struct run *r) {
    r->deadline = now_ms() + (int64_t)r->opts->timeout * 1000;
}

static int remaining_ms(const struct run *r) {
    int64_t left = r->deadline - now_ms();

    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- checks before running anything ---------------------------------- */

/* Each step of the helper's path: root's, not writable by group or other. */
static const char *check_owner(const struct stat *st, const char *not_root,
                               const char *writable) {
    if (st->st_uid != 0)
        return not_root;
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return writable;
    return NULL;
}

/*
 * Open the helper without following links: from "/" down, one component at
 * a time with openat(O_PATH|O_NOFOLLOW) from the directory before, each
 * checked with fstat: every directory root's and not writable by group or
 * other, no symlink anywhere, no empty, "." or ".." component; the helper a
 * regular file, root's, not writable by group or other, executable. The
 * child executes the descriptor, so what was checked is what runs. Returns
 * NULL with *out the descriptor (close-on-exec), else the reason, after
 * logging the path as far as it was walked.
 */
static const char *open_helper(pam_handle_t *pamh, const char *path,
                               int *out) {
    char buf[PATH_MAX];
    size_t len = strlen(path);
    const char *bad = NULL;
    char *name = buf + 1; /* the next component; NULL once fd is the helper */
    int shown = 1;        /* path[0..shown) is what fd refers to */
    int fd;

    *out = -1;
    if (path[0] != '/')
        return "helper path is not absolute";
    if (len >= sizeof(buf))
        return "helper path is too long";
    memcpy(buf, path, len + 1);
    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (;;) {
        struct stat st;
        char *slash;
        int next, saved_errno;

        if (fd < 0 || fstat(fd, &st) != 0) {
            pam_syslog(pamh, LOG_ERR, "cannot open %.*s: %m", shown, path);
            bad = name != NULL ? "helper directory missing" : "helper missing";
            break;
        }
        if (S_ISLNK(st.st_mode))
            bad = "helper path has a symlink";
        else if (name == NULL && !S_ISREG(st.st_mode))
            bad = "helper is not a regular file";
        else if (name == NULL && (st.st_mode & S_IXUSR) == 0)
            bad = "helper is not executable";
        else if (name == NULL)
            bad = check_owner(&st, "helper is not owned by root",
                              "helper is writable by group or other");
        else if (!S_ISDIR(st.st_mode))
            bad = "helper directory is not a directory";
        else
            bad = check_owner(&st, "helper directory is not owned by root",
                              "helper directory is writable by group or other");
        if (bad != NULL) {
            pam_syslog(pamh, LOG_ERR, "%s: %.*s", bad, shown, path);
            break;
        }
        if (name == NULL)
            break;
        if ((slash = strchr(name, '/')) != NULL)
            *slash = '\0';
        shown = (int)(name - buf) + (int)strlen(name);
        if (name[0] == '\0' || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0) {
            bad = "helper path has an empty, . or .. component";
            break;
        }
        next = openat(fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        saved_errno = errno;
        (void)close(fd);
        errno = saved_errno;
        fd = next;
        name = slash != NULL ? slash + 1 : NULL;
    }
    if (bad != NULL && fd >= 0)
        (void)close(fd);
    *out = bad == NULL ? fd : -1;
    return bad;
}

/* 16 bytes from the kernel CSPRNG as 32 lowercase hex digits. */
static int make_nonce(char out[WW_NONCE_HEX + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[WW_NONCE_BYTES];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0x0f];
    }
    out[WW_NONCE_HEX] = '\0';
    explicit_bzero(raw, sizeof(raw));
    return 0;
}

/* ---- the header ------------------------------------------------------ */

struct text {
    char *data;
    size_t len;
    size_t cap;
};

/* Append "key value\n", control bytes in value replaced by '?'. */
static void put_line(struct text *t, const char *key, const char *value) {
    size_t klen = strlen(key);
    size_t vlen = value != NULL ? strlen(value) : 0;

    /* build_header sized the buffer; never write past it regardless */
    if (t->len + klen + vlen + 2 > t->cap)
        return;
    memcpy(t->data + t->len, key, klen);
    t->len += klen;
    if (value != NULL) {
        t->data[t->len++] = ' ';
        for (size_t i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)value[i];
            t->data[t->len++] = ww_is_control(c) ? '?' : (char)c;
        }
    }
    t->data[t->len++] = '\n';
}

static char *build_header(struct run *r, const struct ww_login *login,
                          size_t *out_len) {
    const char *items[] = {login->user, login->service,     login->rhost,
                           login->tty,  r->opts->state_dir, r->opts->config};
    struct text t = {NULL, 0, 256};

    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        size_t n = items[i] != NULL ? strlen(items[i]) : 0;

        if (n > WW_MAX_ITEM) {
            fail(r, "a PAM item is too long for the helper header");
            return NULL;
        }
        t.cap += n;
    }
    t.data = malloc(t.cap);
    if (t.data == NULL) {
        fail(r, "out of memory");
        return NULL;
    }
    put_line(&t, "WATCHWORD 1", NULL);
    put_line(&t, "nonce", r->nonce);
    put_line(&t, "user", login->user);
    put_line(&t, "service", login->service != NULL ? login->service : "");
    put_line(&t, "rhost", login->rhost != NULL ? login->rhost : "");
    put_line(&t, "tty", login->tty != NULL ? login->tty : "");
    put_line(&t, "state_dir", r->opts->state_dir);
    put_line(&t, "config", r->opts->config);
    put_line(&t, "config_required", r->opts->config_named ? "1" : "0");
    put_line(&t, "debug", r->opts->debug ? "1" : "0");
    {
        char timeout[16];

        snprintf(timeout, sizeof(timeout), "%u", r->opts->timeout);
        put_line(&t, "timeout", timeout);
    }
    put_line(&t, "end", NULL);
    *out_len = t.len;
    return t.data;
}

/* ---- the child ------------------------------------------------------- */

/*
 * The limits the helper runs under, whatever the caller had: no core dumps
 * (it holds secrets) and the kernel's defaults, or none, for the rest. A
 * hard limit that cannot be raised (no CAP_SYS_RESOURCE) leaves the soft
 * limit as high as it allows; but none of CPU time or file size, as their
 * signals would kill the helper halfway through writing state (`ulimit -f`
 * before su): then the helper does not run.
 */
#define WW_NONE RLIM_INFINITY
static const struct {
    int resource;
    rlim_t cur, max;
    int exact;
} helper_limits[] = {
    {RLIMIT_CPU, WW_NONE, WW_NONE, 1},
    {RLIMIT_FSIZE, WW_NONE, WW_NONE, 1},
    {RLIMIT_DATA, WW_NONE, WW_NONE, 0},
    {RLIMIT_STACK, 8 << 20, WW_NONE, 0},
    {RLIMIT_CORE, 0, 0, 1},
    {RLIMIT_RSS, WW_NONE, WW_NONE, 0},
    {RLIMIT_NPROC, WW_NONE, WW_NONE, 0},
    {RLIMIT_NOFILE, 1024, 4096, 0},
    {RLIMIT_MEMLOCK, 8 << 20, 8 << 20, 0},
    {RLIMIT_AS, WW_NONE, WW_NONE, 0},
    {RLIMIT_LOCKS, WW_NONE, WW_NONE, 0},
    {RLIMIT_SIGPENDING, WW_NONE, WW_NONE, 0},
    {RLIMIT_MSGQUEUE, 819200, 819200, 0},
    {RLIMIT_NICE, 0, 0, 0},
    {RLIMIT_RTPRIO, 0, 0, 0},
    {RLIMIT_RTTIME, WW_NONE, WW_NONE, 0},
};

/* In the child: set helper_limits; 0, or -1 if an exact one failed. */
static int set_limits(void) {
    for (size_t i = 0; i < sizeof(helper_limits) / sizeof(helper_limits[0]);
         i++) {
        struct rlimit want = {helper_limits[i].cur, helper_limits[i].max};
        struct rlimit old;

        if (setrlimit(helper_limits[i].resource, &want) == 0)
            continue;
        if (helper_limits[i].exact ||
            getrlimit(helper_limits[i].resource, &old) != 0)
            return -1;
        if (old.rlim_max < want.rlim_cur)
            want.rlim_cur = old.rlim_max;
        want.rlim_max = old.rlim_max;
        if (setrlimit(helper_limits[i].resource, &want) != 0)
            return -1;
    }
    return 0;
}

/*
 * Runs in the forked child: only async-signal-safe calls, no malloc, no
 * syslog. exe (>= 3) is the helper opened by open_helper. Never returns.
 */
static void __attribute__((noreturn)) exec_helper(int sock, int exe,
                                                  long max_fd) {
    static char arg0[] = "watchword-helper";
    static char arg1[] = "--pam";
    static char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char *const child_argv[] = {arg0, arg1, NULL};
    char *const child_envp[] = {path_env, NULL};
    struct sigaction dfl;
    sigset_t none;
    int null_fd;

    /* Default dispositions first, then unblock (the parent blocked all). */
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL); /* EINVAL for reserved ones */
    }
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        _exit(127);

    /* sock >= 3, so these really duplicate and drop FD_CLOEXEC. */
    if (dup2(sock, STDIN_FILENO) < 0 || dup2(sock, STDOUT_FILENO) < 0)
        _exit(127);
    null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0)
        _exit(127);
    if (null_fd != STDERR_FILENO && dup2(null_fd, STDERR_FILENO) < 0)
        _exit(127);
    /* The helper's descriptor becomes fd 3 (still close-on-exec). */
    if (exe != 3 && dup3(exe, 3, O_CLOEXEC) < 0)
        _exit(127);
    if (close_range(4, ~0U, 0) != 0) {
        for (long fd = 4; fd < max_fd; fd++)
            (void)close((int)fd);
    }

    /*
     * A setuid caller (sudo) runs us with the invoking user as the real uid;
     * the helper must be wholly root, so that user can neither signal nor
     * trace it, and so its own root check holds.
     */
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(0, 0, 0) != 0 ||
            setresuid(0, 0, 0) != 0)
            _exit(127);
    }
    (void)umask(077);
    if (set_limits() != 0 || chdir("/") != 0 || setsid() < 0)
        _exit(127);
    fexecve(3, child_argv, child_envp);
    /*
     * ENOENT from a close-on-exec descriptor: a "#!" script, whose
     * interpreter must open /dev/fd/3 (the fake helpers of the tests; the
     * real helper is an ELF binary). Only then does fd 3 reach the helper.
     */
    if (errno == ENOENT && fcntl(3, F_SETFD, 0) == 0)
        fexecve(3, child_argv, child_envp);
    _exit(127);
}

/*
 * Move fd to 3 or above, so that dup2 onto 0-2 in the child is a real dup
 * and clobbers none of the descriptors the child still needs.
 */
static int move_high(int fd) {
    int high;

    if (fd > STDERR_FILENO)
        return fd;
    high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    (void)close(fd);
    return high;
}

/* ---- talking to the helper ------------------------------------------- */

/* Wait until fd is ready for events or the deadline passes. */
static int wait_fd(struct run *r, short events) {
    for (;;) {
        struct pollfd pfd = {.fd = r->fd, .events = events, .revents = 0};
        int ms = remaining_ms(r);
        int rc;

        if (ms == 0)
            return IO_TIMEOUT;
        rc = poll(&pfd, 1, ms);
        if (rc > 0)
            return IO_OK; /* readiness, or HUP/ERR for the caller to see */
        if (rc < 0 && errno != EINTR) {
            pam_syslog(r->pamh, LOG_ERR, "poll: %m");
            fail(r, "cannot wait for the helper");
            return IO_ERROR;
        }
    }
}

/* Send all of data. IO_ERROR without logging when the helper is gone. */
static int send_all(struct run *r, const void *data, size_t len) {
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(r, POLLOUT);
            if (rc != IO_OK)
                return rc;
        } else {
            return IO_ERROR;
        }
    }
    return IO_OK;
}

/*
 * Read one message into line (NUL-terminated, without the '\n').
 * Returns IO_OK, IO_EOF, IO_ERROR (logged) or IO_TIMEOUT.
 */
static int read_line(struct run *r, char line[WW_MAX_LINE]) {
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        ssize_t n;

        if (nl != NULL) {
            size_t used = (size_t)(nl - r->buf) + 1;

            memcpy(line, r->buf, used - 1);
            line[used - 1] = '\0';
            memmove(r->buf, r->buf + used, r->len - used);
            r->len -= used;
            if (memchr(line, '\0', used - 1) != NULL) {
                fail(r, "helper sent a NUL byte");
                return IO_ERROR;
            }
            return IO_OK;
        }
        if (r->len >= sizeof(r->buf)) {
            fail(r, "helper sent a line longer than 1024 bytes");
            return IO_ERROR;
        }
        n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
        } else if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            if (r->len > 0) {
                fail(r, "helper sent an unterminated line");
                return IO_ERROR;
            }
            return IO_EOF;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(r, POLLIN);
            if (rc != IO_OK)
                return rc;
        } else if (errno != EINTR) {
            pam_syslog(r->pamh, LOG_ERR, "recv from helper: %m");
            fail(r, "cannot read from the helper");
            return IO_ERROR;
        }
    }
}

/*
 * One message through the application's conversation function. On success
 * *resp (if wanted) is the malloc'ed response or NULL; the caller wipes and
 * frees it.
 */
static int converse(pam_handle_t *pamh, int style, const char *text,
                    char **resp_out) {
    const struct pam_conv *conv = NULL;
    struct pam_message msg;
    const struct pam_message *msgp = &msg;
    struct pam_response *resp = NULL;
    int rc;

    if (resp_out != NULL)
        *resp_out = NULL;
    rc = pam_get_item(pamh, PAM_CONV, (const void **)&conv);
    if (rc != PAM_SUCCESS)
        return rc;
    if (conv == NULL || conv->conv == NULL)
        return PAM_CONV_ERR;

    msg.msg_style = style;
    msg.msg = text;
    rc = conv->conv(1, &msgp, &resp, conv->appdata_ptr);
    if (resp != NULL) {
        if (rc == PAM_SUCCESS && resp_out != NULL) {
            *resp_out = resp->resp;
        } else if (resp->resp != NULL) {
            explicit_bzero(resp->resp, strlen(resp->resp));
            free(resp->resp);
        }
        free(resp);
    }
    return rc;
}

/* prompt <text>: ask with echo off and send the reply. */
static int relay_prompt(struct run *r, const char *text) {
    char *resp = NULL;
    int conv_rc;
    int rc;

    conv_rc = converse(r->pamh, PAM_PROMPT_ECHO_OFF, text, &resp);
    set_deadline(r); /* the user's typing time does not count */

    if (conv_rc != PAM_SUCCESS || resp == NULL) {
        if (r->opts->debug)
            pam_syslog(r->pamh, LOG_DEBUG, "conversation gave no answer: %s",
                       pam_strerror(r->pamh, conv_rc));
        rc = send_all(r, "conv-error\n", strlen("conv-error\n"));
    } else {
        size_t len = strlen(resp);

        if (len > WW_MAX_ANSWER) {
            rc = send_all(r, "too-long\n", strlen("too-long\n"));
        } else {
            char head[32];
            int hlen = snprintf(head, sizeof(head), "answer %zu\n", len);

            rc = send_all(r, head, (size_t)hlen);
            if (rc == IO_OK && len > 0)
                rc = send_all(r, resp, len);
        }
        explicit_bzero(resp, len);
    }
    free(resp);
    return rc;
}

/* info / error: show the text unless PAM_SILENT. */
static void relay_message(struct run *r, int style, const char *text) {
    char *resp = NULL;

    if ((r->flags & PAM_SILENT) != 0)
        return;
    (void)converse(r->pamh, style, text, &resp);
    if (resp != NULL) {
        explicit_bzero(resp, strlen(resp));
        free(resp);
    }
}

/* "<nonce> <outcome>" after "result ". */
static enum ww_outcome parse_result(struct run *r, const char *rest) {
    unsigned char diff = 0;

    if (strlen(rest) < WW_NONCE_HEX + 2 || rest[WW_NONCE_HEX] != ' ') {
        fail(r, "helper sent a malformed result");
        return WW_OUTCOME_NONE;
    }
    for (size_t i = 0; i < WW_NONCE_HEX; i++)
        diff |= (unsigned char)(rest[i] ^ r->nonce[i]);
    if (diff != 0) {
        fail(r, "helper result carries a wrong nonce");
        return WW_OUTCOME_NONE;
    }
    for (size_t i = 0; i < N_OUTCOMES; i++) {
        if (strcmp(rest + WW_NONCE_HEX + 1, outcomes[i].word) == 0)
            return outcomes[i].outcome;
    }
    fail(r, "helper sent an unknown outcome");
    return WW_OUTCOME_NONE;
}

/* ---- the process ----------------------------------------------------- */

/*
 * A descriptor that becomes readable when the helper exits (pidfd_open,
 * Linux 5.3), or -1 where the kernel or a seccomp filter refuses it. The
 * helper is our unreaped child, so its pid cannot have been reused.
 */
static int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0); /* always close-on-exec */
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/*
 * Wait, without reaping, until the helper has exited or the deadline
 * passes. Returns IO_OK, IO_TIMEOUT or IO_ERROR. With a pidfd, poll() wakes
 * us as soon as the helper has exited; without one, look again after naps
 * of 1 ms doubling to 20 ms (the first nap alone cost most logins about
 * 0.5 ms, as the helper takes well under 1 ms to exit after its result).
 */
static int wait_exit(struct run *r) {
    long nap_us = 1000;
    int pidfd = open_pidfd(r->pid);
    int rc;

    for (;;) {
        siginfo_t si;
        int64_t left;
        struct timespec ts;

        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT) !=
            0) {
            if (errno == EINTR)
                continue;
            pam_syslog(r->pamh, LOG_ERR, "waitid: %m");
            fail(r, "cannot wait for the helper");
            rc = IO_ERROR;
            break;
        }
        if (si.si_pid == r->pid) {
            rc = IO_OK;
            break;
        }
        left = r->deadline - now_ms();
        if (left <= 0) {
            rc = IO_TIMEOUT;
            break;
        }
        if (pidfd >= 0) {
            struct pollfd pfd = {.fd = pidfd, .events = POLLIN, .revents = 0};

            if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) >= 0 ||
                errno == EINTR)
                continue;
            (void)close(pidfd); /* unexpected: fall back to napping */
            pidfd = -1;
        }
        if ((int64_t)nap_us > left * 1000)
            nap_us = (long)(left * 1000);
        ts.tv_sec = 0;
        ts.tv_nsec = nap_us * 1000;
        (void)nanosleep(&ts, NULL);
        if (nap_us < 20000)
            nap_us *= 2;
    }
    if (pidfd >= 0)
        (void)close(pidfd);
    return rc;
}

/*
 * SIGKILL whatever is left of the helper's process group (it called
 * setsid(), so its pid is the group id) and reap the helper. The helper is
 * not yet reaped here, so its pid and group id cannot have been reused.
 */
static void kill_and_reap(struct run *r) {
    if (r->pid <= 0 || r->reaped)
        return;
    (void)kill(-r->pid, SIGKILL);
    (void)kill(r->pid, SIGKILL); /* in case setsid() has not run yet */
    for (;;) {
        pid_t w = waitpid(r->pid, &r->status, 0);

        if (w == r->pid) {
            r->status_known = 1;
            break;
        }
        if (w < 0 && errno == EINTR)
            continue;
        pam_syslog(r->pamh, LOG_ERR, "waitpid: %m");
        break;
    }
    r->reaped = 1;
}

static void describe_status(const struct run *r, char *out, size_t len) {
    if (!r->status_known)
        snprintf(out, len, "status unknown");
    else if (WIFEXITED(r->status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(r->status));
    else if (WIFSIGNALED(r->status))
        snprintf(out, len, "killed by signal %d", WTERMSIG(r->status));
    else
        snprintf(out, len, "wait status 0x%x", (unsigned int)r->status);
}

/* How a conversation with the helper ended. */
enum talk_end {
    TALK_WAIT,    /* result received or helper gone: wait for its exit */
    TALK_KILL,    /* protocol violation: kill it now */
    TALK_TIMEOUT, /* the helper did not act in time */
};

/*
 * log <priority> <text>: the helper's reason for an outcome, written with
 * pam_syslog so it lands in the service's authpriv log. read_line only
 * refuses NUL, so control bytes are replaced by '?' here: a helper's line
 * cannot start a forged log entry or hide text from a terminal. Debug lines
 * need `debug`.
 */
static void relay_log(struct run *r, char *rest) {
    static const struct {
        const char *word;
        int priority;
    } levels[] = {{"err ", LOG_ERR},       {"warning ", LOG_WARNING},
                  {"notice ", LOG_NOTICE}, {"info ", LOG_INFO},
                  {"debug ", LOG_DEBUG}};

    for (char *p = rest; *p != '\0'; p++) {
        if (ww_is_control((unsigned char)*p))
            *p = '?';
    }
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        size_t n = strlen(levels[i].word);
        if (strncmp(rest, levels[i].word, n) != 0)
            continue;
        if (levels[i].priority == LOG_DEBUG && !r->opts->debug)
            return;
        pam_syslog(r->pamh, levels[i].priority, "%s", rest + n);
        return;
    }
    pam_syslog(r->pamh, LOG_WARNING, "helper log line with unknown priority");
}

/* Send the header and relay messages until the result line or a failure. */
static enum talk_end talk(struct run *r, const char *header, size_t header_len,
                          enum ww_outcome *reported, unsigned int *messages) {
    char line[WW_MAX_LINE];
    enum talk_end end;
    int rc;

    set_deadline(r);
    rc = send_all(r, header, header_len);
    if (rc == IO_TIMEOUT)
        return TALK_TIMEOUT;
    if (rc != IO_OK) {
        /* Most likely the helper is already gone; wait to learn how. */
        fail(r, "cannot send the header to the helper");
        return TALK_WAIT;
    }

    for (;;) {
        rc = read_line(r, line);
        if (rc == IO_TIMEOUT) {
            end = TALK_TIMEOUT;
            break;
        }
        if (rc == IO_ERROR) {
            end = TALK_KILL;
            break;
        }
        if (rc == IO_EOF) {
            fail(r, "helper closed the connection without a result");
            end = TALK_WAIT;
            break;
        }
        if (++*messages > WW_MAX_MESSAGES) {
            fail(r, "helper sent more than 64 messages");
            end = TALK_KILL;
            break;
        }

        if (strncmp(line, "prompt ", 7) == 0) {
            rc = relay_prompt(r, line + 7);
            if (rc == IO_TIMEOUT) {
                end = TALK_TIMEOUT;
                break;
            }
            if (rc != IO_OK) {
                fail(r, "cannot send the answer to the helper");
                end = TALK_WAIT;
                break;
            }
        } else if (strncmp(line, "info ", 5) == 0) {
            /*
             * Showing a message may block in the application (a dialog),
             * so the helper's next stretch starts afterwards.
             */
            relay_message(r, PAM_TEXT_INFO, line + 5);
            set_deadline(r);
        } else if (strncmp(line, "error ", 6) == 0) {
            relay_message(r, PAM_ERROR_MSG, line + 6);
            set_deadline(r);
        } else if (strncmp(line, "log ", 4) == 0) {
            relay_log(r, line + 4);
        } else if (strncmp(line, "result ", 7) == 0) {
            *reported = parse_result(r, line + 7);
            if (*reported == WW_OUTCOME_NONE) {
                end = TALK_KILL;
                break;
            }
            set_deadline(r); /* the helper now has to exit */
            end = TALK_WAIT;
            break;
        } else {
            fail(r, "helper sent an unknown message");
            end = TALK_KILL;
            break;
        }
    }
    explicit_bzero(line, sizeof(line));
    return end;
}

/*
 * Wait for the helper to exit on its own. Once it has, everything it wrote
 * is in our receive queue, and nothing may follow the result line.
 */
static enum talk_end await_exit(struct run *r, enum ww_outcome reported) {
    char extra;
    int rc = wait_exit(r);

    if (rc == IO_TIMEOUT)
        return TALK_TIMEOUT;
    if (rc != IO_OK)
        return TALK_KILL;
    if (reported != WW_OUTCOME_NONE &&
        (r->len > 0 || recv(r->fd, &extra, 1, MSG_DONTWAIT) > 0))
        fail(r, "helper sent data after its result");
    return TALK_WAIT;
}

/* The reported outcome counts only with the matching normal exit. */
static enum ww_outcome verify_exit(struct run *r, enum ww_outcome reported,
                                   unsigned int messages) {
    char status[64];

    describe_status(r, status, sizeof(status));
    if (r->reason != NULL) {
        if (r->status_known && WIFEXITED(r->status) &&
            WEXITSTATUS(r->status) == 127)
            pam_syslog(r->pamh, LOG_ERR,
                       "helper %s could not be executed (exit status 127)",
                       r->opts->helper);
        else if (r->opts->debug)
            pam_syslog(r->pamh, LOG_DEBUG, "helper pid %d %s", (int)r->pid,
                       status);
        return WW_OUTCOME_NONE;
    }
    if (reported == WW_OUTCOME_NONE || !r->status_known ||
        !WIFEXITED(r->status) ||
        WEXITSTATUS(r->status) != expected_status(reported)) {
        pam_syslog(r->pamh, LOG_ERR, "helper result %s but helper %s",
                   ww_outcome_name(reported), status);
        fail(r, "helper exit status does not match its result");
        return WW_OUTCOME_NONE;
    }
    if (r->opts->debug)
        pam_syslog(r->pamh, LOG_DEBUG,
                   "helper pid %d %s after %u messages, result %s", (int)r->pid,
                   status, messages, ww_outcome_name(reported));
    return reported;
}

/* fork() with all signals blocked; the child never returns. */
static int spawn(struct run *r, int child_fd, int exe, long max_fd) {
    sigset_t all, old_mask;
    int fork_errno;

    sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old_mask);
    r->pid = fork();
    if (r->pid == 0)
        exec_helper(child_fd, exe, max_fd);
    fork_errno = errno;
    (void)pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (r->pid < 0) {
        errno = fork_errno;
        pam_syslog(r->pamh, LOG_ERR, "fork: %m");
        fail(r, "cannot start the helper");
        return -1;
    }
    if (r->opts->debug)
        pam_syslog(r->pamh, LOG_DEBUG, "started helper %s as pid %d",
                   r->opts->helper, (int)r->pid);
    return 0;
}

enum ww_outcome ww_run_helper(pam_handle_t *pamh, int flags,
                              const struct ww_options *opts,
                              const struct ww_login *login,
                              const char **reason) {
    struct run r;
    struct sigaction dfl, old_chld;
    int chld_changed = 0;
    int sv[2] = {-1, -1};
    int exe = -1;
    char *header = NULL;
    size_t header_len = 0;
    unsigned int messages = 0;
    enum ww_outcome reported = WW_OUTCOME_NONE;
    enum ww_outcome verified = WW_OUTCOME_NONE;
    enum talk_end end;
    const char *bad;
    long max_fd;

    memset(&r, 0, sizeof(r));
    r.pamh = pamh;
    r.flags = flags;
    r.opts = opts;
    r.fd = -1;
    r.pid = -1;

    if ((bad = open_helper(pamh, opts->helper, &exe)) != NULL) {
        fail(&r, bad);
        goto done;
    }
    if (make_nonce(r.nonce) != 0) {
        pam_syslog(pamh, LOG_ERR, "getrandom: %m");
        fail(&r, "cannot get random bytes");
        goto done;
    }
    if ((header = build_header(&r, login, &header_len)) == NULL)
        goto done;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        pam_syslog(pamh, LOG_ERR, "socketpair: %m");
        fail(&r, "cannot create a socket pair");
        goto done;
    }
    sv[0] = move_high(sv[0]);
    sv[1] = move_high(sv[1]);
    exe = move_high(exe);
    if (sv[0] < 0 || sv[1] < 0 || exe < 0) {
        pam_syslog(pamh, LOG_ERR, "fcntl(F_DUPFD_CLOEXEC): %m");
        fail(&r, "cannot set up the helper's descriptors");
        goto done;
    }
    r.fd = sv[0];
    max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > INT_MAX)
        max_fd = INT_MAX;

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    if (sigaction(SIGCHLD, &dfl, &old_chld) != 0) {
        pam_syslog(pamh, LOG_ERR, "sigaction(SIGCHLD): %m");
        fail(&r, "cannot reset SIGCHLD");
        goto done;
    }
    chld_changed = 1;

    if (spawn(&r, sv[1], exe, max_fd) != 0)
        goto done;
    (void)close(sv[1]);
    sv[1] = -1;
    (void)close(exe);
    exe = -1;

    end = talk(&r, header, header_len, &reported, &messages);
    if (end == TALK_WAIT)
        end = await_exit(&r, reported);
    if (end == TALK_TIMEOUT)
        fail(&r, "helper timed out");
    kill_and_reap(&r); /* after a normal exit this ends its process group */
    verified = verify_exit(&r, reported, messages);

done:
    kill_and_reap(&r); /* no-op unless we left early */
    if (chld_changed)
        (void)sigaction(SIGCHLD, &old_chld, NULL);
    if (sv[0] >= 0)
        (void)close(sv[0]);
    if (sv[1] >= 0)
        (void)close(sv[1]);
    if (exe >= 0)
        (void)close(exe);
    free(header);
    *reason = r.reason;
    return verified;
}
