/*
 * Running the watchword helper and relaying protocol version 1 for it; the
 * contract, and why each step is there, is docs/helper-protocol.md. As in
 * pam_exec, one function runs the helper and libpam holds the conversation
 * (pam_prompt). Written here, as they are why it is safe: the helper opened
 * from "/" without following links and run from that descriptor, a child
 * that starts from nothing, a deadline on every stretch in which the helper
 * must act, a nonce, an outcome that counts only with its exit status.
 */
#define _GNU_SOURCE /* clone, close_range, explicit_bzero, open_memstream */
#include "helper.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>

#define WW_NONCE_BYTES 16
#define WW_MAX_LINE 1024 /* per helper message, '\n' included */
#define WW_MAX_MESSAGES 128 /* a QR code at enrollment is ~30 info lines */
#define WW_MAX_ANSWER 4096
#define WW_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define WW_CHILD_STACK (64 * 1024)

/* talk() returns IO_OK when the helper is to be waited for, not killed. */
enum { IO_ERROR = -1, IO_OK, IO_EOF, IO_TIMEOUT };

struct run {
    pam_handle_t *pamh;
    int flags;
    const struct ww_options *opts;
    int fd;                /* our end of the socket pair, or -1 */
    pid_t pid;             /* the helper, or -1 */
    int status;            /* its wait status once reaped; -1: unknown */
    long long deadline;    /* CLOCK_MONOTONIC, milliseconds */
    unsigned int messages; /* received so far */
    const char *reason;    /* first failure, for the summary line */
    char nonce[2 * WW_NONCE_BYTES + 1];
};

static const struct {
    const char *word;
    int exit_status, pam, pam_nullok;
} outcomes[] = {
    [WW_OUTCOME_NONE] = {"error", -1, PAM_AUTHINFO_UNAVAIL,
                         PAM_AUTHINFO_UNAVAIL},
#define WW_OUTCOME(word, status, pam, pam_nullok)                              \
    [WW_OUTCOME_##word] = {#word, status, pam, pam_nullok},
#include "outcomes.def"
#undef WW_OUTCOME
};

const char *ww_outcome_name(enum ww_outcome o) { return outcomes[o].word; }

int ww_outcome_pam(enum ww_outcome o, int nullok) {
    return nullok ? outcomes[o].pam_nullok : outcomes[o].pam;
}

/* Record the first failure and log it (after errno's text for call). */
static int fail(struct run *r, const char *call, const char *reason) {
    if (call != NULL)
        pam_syslog(r->pamh, LOG_ERR, "%s: %m", call);
    if (r->reason == NULL)
        r->reason = reason;
    pam_syslog(r->pamh, LOG_ERR, "%s", reason);
    return IO_ERROR;
}

static long long now_ms(void) {
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail */
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Start a new stretch in which the helper must act. */
static void set_deadline(struct run *r) {
    r->deadline = now_ms() + r->opts->timeout * 1000LL;
}

/* What is left of it: at most WW_MAX_TIMEOUT, 600 s, so an int. */
static int remaining_ms(const struct run *r) {
    long long left = r->deadline - now_ms();

    return left > 0 ? (int)left : 0;
}

/* What is wrong with one step of the helper's path, or NULL. */
static const char *bad_step(const struct stat *st, int is_helper) {
    if (S_ISLNK(st->st_mode))
        return "helper path has a symlink";
    if (!is_helper && !S_ISDIR(st->st_mode))
        return "helper directory is not a directory";
    if (is_helper && !S_ISREG(st->st_mode))
        return "helper is not a regular file";
    if (is_helper && (st->st_mode & S_IXUSR) == 0)
        return "helper is not executable";
    if (st->st_uid != 0)
        return is_helper ? "helper is not owned by root"
                         : "helper directory is not owned by root";
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return is_helper ? "helper is writable by group or other"
                         : "helper directory is writable by group or other";
    return NULL;
}

/*
 * Open the helper from "/" down, each component with openat(O_PATH |
 * O_NOFOLLOW) from the directory before and checked by bad_step. NULL with
 * *out the descriptor, else the reason, logged with the path walked so far.
 */
static const char *open_helper(pam_handle_t *pamh, const char *path,
                               int *out) {
    char buf[PATH_MAX];
    char *name = buf + 1; /* the next component; NULL once fd is the helper */
    int shown = 1;        /* path[0..shown) is what fd refers to */
    const char *bad = NULL;
    int fd, dir;

    if (strlen(path) >= sizeof(buf)) /* pam_watchword.c refuses it already */
        return "helper path is too long";
    memcpy(buf, path, strlen(path) + 1);
    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (;;) {
        struct stat st;
        char *slash;

        if (fd < 0 || fstat(fd, &st) != 0) {
            pam_syslog(pamh, LOG_ERR, "cannot open %.*s: %m", shown, path);
            bad = name != NULL ? "helper directory missing" : "helper missing";
        } else if ((bad = bad_step(&st, name == NULL)) != NULL) {
            pam_syslog(pamh, LOG_ERR, "%s: %.*s", bad, shown, path);
        }
        if (bad != NULL || name == NULL)
            break;
        if ((slash = strchr(name, '/')) != NULL)
            *slash = '\0';
        shown = (int)(name - buf + strlen(name));
        if (name[0] == '\0' || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0) {
            bad = "helper path has an empty, . or .. component";
            break;
        }
        dir = fd;
        fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        (void)close(dir); /* O_PATH: cannot fail, so errno stays openat's */
        name = slash != NULL ? slash + 1 : NULL;
    }
    if (bad != NULL && fd >= 0)
        (void)close(fd);
    *out = bad == NULL ? fd : -1;
    return bad;
}

/* A fresh nonce and the header, every control byte in a value as '?'. */
static char *build_header(struct run *r, const struct ww_login *login,
                          size_t *len) {
    const char *keys[] = {"user", "service", "rhost", "state_dir", "config",
                          "account"};
    const char *values[] = {login->user,       login->service,
                            login->rhost,      r->opts->state_dir,
                            r->opts->config,   login->account};
    unsigned char raw[WW_NONCE_BYTES];
    char *text = NULL;
    FILE *f;
    ssize_t n;

    /* Never short for 16 bytes; blocks only until the CSPRNG is seeded. */
    while ((n = getrandom(raw, sizeof(raw), 0)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof(raw)) {
        fail(r, "getrandom", "cannot get random bytes");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(r->nonce + 2 * i, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    if ((f = open_memstream(&text, len)) == NULL) {
        fail(r, "open_memstream", "out of memory");
        return NULL;
    }
    fprintf(f, "WATCHWORD 1\nnonce %s\n", r->nonce);
    for (size_t i = 0; i < WW_COUNT(keys); i++) {
        fprintf(f, "%s ", keys[i]);
        for (const char *p = values[i]; p != NULL && *p != '\0'; p++)
            fputc(ww_is_control((unsigned char)*p) ? '?' : *p, f);
        fputc('\n', f);
    }
    fprintf(f, "config_required %d\ndebug %d\ntimeout %u\n",
            r->opts->config_named != 0, r->opts->debug != 0,
            r->opts->timeout);
    if (r->opts->enroll_at_login)
        fputs("enroll_at_login 1\n", f);
    for (unsigned int i = 0; i < r->opts->n_exempt_group; i++)
        fprintf(f, "exempt_group %s\n", r->opts->exempt_group[i]);
    for (unsigned int i = 0; i < r->opts->n_exempt_from; i++)
        fprintf(f, "exempt_from %s\n", r->opts->exempt_from[i]);
    fputs("end\n", f);
    n = ferror(f); /* a write found no memory */
    if (fclose(f) != 0 || n != 0) {
        free(text);
        fail(r, NULL, "out of memory");
        return NULL;
    }
    return text;
}

/*
 * The helper's limits, whatever the caller had: none, except these (the
 * kernel's defaults, and no core dumps: it holds secrets). Where root may
 * not raise a hard limit (no CAP_SYS_RESOURCE) that caps the soft one, but
 * not for CPU time or file size: their signals would kill the helper while
 * it writes state (`ulimit -f` before su), so then the helper does not run.
 */
static const struct {
    int resource;
    struct rlimit limit;
} helper_limits[] = {
    {RLIMIT_STACK, {8 << 20, RLIM_INFINITY}}, {RLIMIT_CORE, {0, 0}},
    {RLIMIT_NOFILE, {1024, 4096}},         {RLIMIT_MEMLOCK, {8 << 20, 8 << 20}},
    {RLIMIT_MSGQUEUE, {819200, 819200}},   {RLIMIT_NICE, {0, 0}},
    {RLIMIT_RTPRIO, {0, 0}},
};

static int set_limits(void) {
    for (int res = 0; res < RLIMIT_NLIMITS; res++) {
        struct rlimit want = {RLIM_INFINITY, RLIM_INFINITY}, old;

        for (size_t i = 0; i < WW_COUNT(helper_limits); i++) {
            if (helper_limits[i].resource == res)
                want = helper_limits[i].limit;
        }
        if (setrlimit(res, &want) == 0)
            continue;
        if (res == RLIMIT_CPU || res == RLIMIT_FSIZE || res == RLIMIT_CORE ||
            getrlimit(res, &old) != 0)
            return -1;
        want.rlim_cur = want.rlim_cur < old.rlim_max ? want.rlim_cur
                                                     : old.rlim_max;
        want.rlim_max = old.rlim_max;
        if (setrlimit(res, &want) != 0)
            return -1;
    }
    return 0;
}

/*
 * The child of sshd or sudo, which shares their memory until it executes the
 * helper (CLONE_VM | CLONE_VFORK, as posix_spawn): system calls only, on its
 * own stack, with every signal blocked until the dispositions are the
 * defaults; set*id() as raw system calls, as glibc's wrappers would change the
 * ids of every thread of a threaded caller. So not
 * pam_modutil_sanitize_helper_fds (it logs; it would also close exe, and it
 * closes only up to the hard RLIMIT_NOFILE or 65535). Never returns.
 */
static int __attribute__((noreturn)) exec_helper(void *fds) {
    int sock = ((const int *)fds)[0], exe = ((const int *)fds)[1];
    static char arg0[] = "watchword-helper", arg1[] = "--pam";
    static char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char *const argv[] = {arg0, arg1, NULL}, *const envp[] = {path_env, NULL};
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;
    int null_fd;

    /* Default dispositions first, then unblock (the parent blocked all). */
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL); /* EINVAL: KILL, STOP, reserved */
    sigemptyset(&none);
    /*
     * fds 0 and 1 the socket, 2 /dev/null, 3 the helper (close-on-exec),
     * nothing else (close_range: Linux 5.9). sock and exe go above 2 first,
     * so that no dup2 is a no-op that keeps close-on-exec or hits the other.
     */
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0 ||
        (sock = fcntl(sock, F_DUPFD_CLOEXEC, 3)) < 0 ||
        (exe = fcntl(exe, F_DUPFD_CLOEXEC, 3)) < 0 || dup2(sock, 0) < 0 ||
        dup2(sock, 1) < 0 || (null_fd = open("/dev/null", O_WRONLY)) < 0 ||
        (null_fd != 2 && dup2(null_fd, 2) < 0) ||
        (exe != 3 && dup3(exe, 3, O_CLOEXEC) < 0) ||
        close_range(4, ~0U, 0) != 0)
        _exit(127);
    /* Wholly root under a setuid caller (sudo), so the user who ran it can
     * neither signal nor trace the helper, and its own root check holds. */
    if (geteuid() == 0 && (syscall(SYS_setgroups, 0, NULL) != 0 ||
                           syscall(SYS_setresgid, 0, 0, 0) != 0 ||
                           syscall(SYS_setresuid, 0, 0, 0) != 0))
        _exit(127);
    (void)umask(077);
    if (set_limits() != 0 || chdir("/") != 0 || setsid() < 0)
        _exit(127);
    fexecve(3, argv, envp);
    /* ENOENT: a "#!" script (the tests' fake helpers), whose interpreter
     * opens /dev/fd/3. Only then does fd 3 reach the helper. */
    if (errno == ENOENT && fcntl(3, F_SETFD, 0) == 0)
        fexecve(3, argv, envp);
    _exit(127);
}

/*
 * Send all of data without waiting: the helper reads each answer before it
 * prompts again, so only one that misbehaves fills the socket. IO_ERROR,
 * not logged, when the helper is gone or does not read.
 */
static int send_all(struct run *r, const char *data, size_t len) {
    ssize_t n;

    while ((n = send(r->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 &&
           errno == EINTR) {
    }
    return n == (ssize_t)len ? IO_OK : IO_ERROR;
}

/*
 * One message into line, without its '\n'. What has arrived is peeked at and
 * only the line taken, so that nothing after it is consumed: one or two
 * recv() a line, not one a byte. Refuses a NUL byte, a line over WW_MAX_LINE
 * and an unterminated last line; other bytes pass as they came.
 */
static int read_line(struct run *r, char line[WW_MAX_LINE]) {
    size_t len = 0;

    for (;;) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        ssize_t n = recv(r->fd, line + len, WW_MAX_LINE - len,
                         MSG_PEEK | MSG_DONTWAIT);
        char *end = n > 0 ? memchr(line + len, '\n', (size_t)n) : NULL;
        size_t take = end != NULL ? (size_t)(end - (line + len)) + 1 : (size_t)n;
        int ready;

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((ready = poll(&pfd, 1, remaining_ms(r))) == 0)
                return IO_TIMEOUT;
            if (ready < 0 && errno != EINTR)
                return fail(r, "poll", "cannot wait for the helper");
        } else if (n < 0 && errno != EINTR && errno != ECONNRESET) {
            return fail(r, "recv from helper", "cannot read from the helper");
        } else if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return len == 0 ? IO_EOF
                            : fail(r, NULL, "helper sent an unterminated line");
        } else if (n > 0 && memchr(line + len, '\0', take) != NULL) {
            return fail(r, NULL, "helper sent a NUL byte");
        } else if (n > 0 && recv(r->fd, line + len, take, MSG_DONTWAIT) !=
                                (ssize_t)take) {
            return fail(r, "recv from helper", "cannot read from the helper");
        } else if (n > 0 && end != NULL) {
            line[len + take - 1] = '\0';
            return IO_OK;
        } else if (n > 0 && (len += take) == WW_MAX_LINE) {
            return fail(r, NULL, "helper sent a line longer than 1024 bytes");
        }
    }
}

/* prompt <text>: ask with echo off, send the reply, wipe the answer. */
static int relay_prompt(struct run *r, const char *text) {
    char *resp = NULL, head[32];
    int conv = pam_prompt(r->pamh, PAM_PROMPT_ECHO_OFF, &resp, "%s", text);
    size_t len = resp != NULL ? strlen(resp) : 0;
    int rc;

    set_deadline(r); /* the user's typing time does not count */
    if (conv != PAM_SUCCESS || resp == NULL) /* libpam logged why */
        snprintf(head, sizeof(head), "conv-error\n");
    else if (len > WW_MAX_ANSWER)
        snprintf(head, sizeof(head), "too-long\n");
    else
        snprintf(head, sizeof(head), "answer %zu\n", len);
    rc = send_all(r, head, strlen(head));
    if (rc == IO_OK && strncmp(head, "answer ", 7) == 0 && len > 0)
        rc = send_all(r, resp, len); /* nothing to send for "answer 0" */
    if (resp != NULL)
        explicit_bzero(resp, len); /* also after a failed conversation */
    free(resp);
    return rc;
}

/*
 * log <priority> <text>: to pam_syslog, into the service's authpriv log.
 * read_line refuses only NUL; here every other control byte (below 0x20,
 * DEL) becomes '?', so a helper's line can neither forge a log entry nor
 * hide text from a terminal. Debug lines need `debug`.
 */
static void relay_log(struct run *r, char *rest) {
    static const char *const words[] = {"err ", "warning ", "notice ",
                                        "info ", "debug "}; /* LOG_ERR + i */

    _Static_assert(LOG_DEBUG - LOG_ERR == 4, "consecutive priorities");
    for (char *p = rest; *p != '\0'; p++) {
        if (ww_is_control((unsigned char)*p))
            *p = '?';
    }
    for (int i = 0; i < 5; i++) {
        if (strncmp(rest, words[i], strlen(words[i])) != 0)
            continue;
        if (LOG_ERR + i != LOG_DEBUG || r->opts->debug)
            pam_syslog(r->pamh, LOG_ERR + i, "%s", rest + strlen(words[i]));
        return;
    }
    pam_syslog(r->pamh, LOG_WARNING, "helper log line with unknown priority");
}

/* result <nonce> <outcome>: this run's nonce, a known outcome. */
static enum ww_outcome parse_result(struct run *r, const char *rest) {
    size_t hex = 2 * WW_NONCE_BYTES;
    unsigned char diff = 0;

    if (strlen(rest) < hex + 2 || rest[hex] != ' ') {
        fail(r, NULL, "helper sent a malformed result");
        return WW_OUTCOME_NONE;
    }
    for (size_t i = 0; i < hex; i++) /* in constant time */
        diff |= (unsigned char)(rest[i] ^ r->nonce[i]);
    for (size_t i = 1; diff == 0 && i < WW_COUNT(outcomes); i++) {
        if (strcmp(rest + hex + 1, outcomes[i].word) == 0)
            return (enum ww_outcome)i;
    }
    fail(r, NULL,
         diff != 0 ? "helper result carries a wrong nonce"
                   : "helper sent an unknown outcome");
    return WW_OUTCOME_NONE;
}

/* Send the header, relay messages up to the result: IO_OK, ERROR, TIMEOUT. */
static int talk(struct run *r, const char *header, size_t header_len,
                enum ww_outcome *reported) {
    char line[WW_MAX_LINE];
    int rc;

    set_deadline(r);
    if (send_all(r, header, header_len) != IO_OK) {
        fail(r, NULL, "cannot send the header to the helper");
        return IO_OK; /* most likely gone already: wait to learn how */
    }
    while ((rc = read_line(r, line)) == IO_OK) {
        if (++r->messages > WW_MAX_MESSAGES)
            return fail(r, NULL, "helper sent more than 128 messages");
        if (strncmp(line, "prompt ", 7) == 0) {
            if (relay_prompt(r, line + 7) != IO_OK) {
                fail(r, NULL, "cannot send the answer to the helper");
                return IO_OK;
            }
        } else if (strncmp(line, "info ", 5) == 0 ||
                   strncmp(line, "error ", 6) == 0 ||
                   strncmp(line, "show ", 5) == 0) {
            /* pam_info or pam_error, unless PAM_SILENT; show: text the
             * next prompt needs (a token to enroll), shown as it is */
            if (line[0] == 's' || (r->flags & PAM_SILENT) == 0)
                (void)pam_prompt(r->pamh,
                                 line[0] == 'e' ? PAM_ERROR_MSG : PAM_TEXT_INFO,
                                 NULL, "%s", strchr(line, ' ') + 1);
            set_deadline(r); /* showing it may have blocked (a dialog) */
        } else if (strncmp(line, "log ", 4) == 0) {
            relay_log(r, line + 4);
        } else if (strncmp(line, "result ", 7) == 0) {
            set_deadline(r); /* the helper now has to exit */
            *reported = parse_result(r, line + 7);
            return *reported == WW_OUTCOME_NONE ? IO_ERROR : IO_OK;
        } else {
            return fail(r, NULL, "helper sent an unknown message");
        }
    }
    if (rc == IO_EOF)
        fail(r, NULL, "helper closed the connection without a result");
    return rc == IO_EOF ? IO_OK : rc;
}

/* The reported outcome counts only with the matching normal exit. */
static enum ww_outcome verify_exit(struct run *r, enum ww_outcome reported) {
    int exited = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
    char status[64] = "status unknown";

    if (exited >= 0)
        snprintf(status, sizeof(status), "exited with status %d", exited);
    else if (WIFSIGNALED(r->status))
        snprintf(status, sizeof(status), "killed by signal %d",
                 WTERMSIG(r->status));
    if (r->reason == NULL && (reported == WW_OUTCOME_NONE ||
                              exited != outcomes[reported].exit_status)) {
        pam_syslog(r->pamh, LOG_ERR, "helper result %s but helper %s",
                   ww_outcome_name(reported), status);
        fail(r, NULL, "helper exit status does not match its result");
    } else if (r->reason != NULL && exited == 127) {
        pam_syslog(r->pamh, LOG_ERR,
                   "helper %s could not be executed (exit status 127)",
                   r->opts->helper);
    }
    if (r->opts->debug)
        pam_syslog(r->pamh, LOG_DEBUG,
                   "helper pid %d %s after %u messages, result %s", (int)r->pid,
                   status, r->messages, ww_outcome_name(reported));
    return r->reason == NULL ? reported : WW_OUTCOME_NONE;
}

enum ww_outcome ww_run_helper(pam_handle_t *pamh, int flags,
                              const struct ww_options *opts,
                              const struct ww_login *login,
                              const char **reason) {
    struct run r = {
        .pamh = pamh, .flags = flags, .opts = opts, .pid = -1, .status = -1};
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old_chld;
    struct pollfd pidfd = {.fd = -1, .events = POLLIN};
    siginfo_t si = {.si_pid = 0};
    sigset_t all, old_mask;
    enum ww_outcome reported = WW_OUTCOME_NONE, verified = WW_OUTCOME_NONE;
    const char *bad;
    char *header = NULL, extra;
    size_t header_len = 0;
    int sv[2] = {-1, -1}, exe = -1, fork_errno, rc, child_fds[2];
    void *stack;
    int *fds[] = {&sv[0], &sv[1], &exe, &pidfd.fd}; /* closed at the end */

    /* As in pam_exec: no SIGCHLD handler of the caller reaps the helper. */
    if (sigaction(SIGCHLD, &dfl, &old_chld) != 0) {
        fail(&r, "sigaction(SIGCHLD)", "cannot reset SIGCHLD");
        *reason = r.reason;
        return WW_OUTCOME_NONE;
    }
    if ((bad = open_helper(pamh, opts->helper, &exe)) != NULL)
        fail(&r, NULL, bad);
    else if ((header = build_header(&r, login, &header_len)) != NULL &&
             socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        fail(&r, "socketpair", "cannot create a socket pair");
    if (r.reason != NULL)
        goto done;
    /*
     * Not fork(): copying the caller's page tables costs 0.2 ms for 4 MiB of
     * it, 0.6 ms for 20 (BENCHMARKS.md). We wait while the child runs on
     * stack[] until it has executed the helper (or exited).
     */
    sigfillset(&all); /* no handler of the caller's runs in the child */
    (void)pthread_sigmask(SIG_SETMASK, &all, &old_mask);
    child_fds[0] = sv[1];
    child_fds[1] = exe;
    stack = mmap(NULL, WW_CHILD_STACK, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    r.pid = stack == MAP_FAILED
                ? -1
                : clone(exec_helper, (char *)stack + WW_CHILD_STACK,
                        CLONE_VM | CLONE_VFORK | SIGCHLD, child_fds);
    fork_errno = errno;
    if (stack != MAP_FAILED)
        (void)munmap(stack, WW_CHILD_STACK);
    (void)pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    (void)close(sv[1]); /* the helper's end, which only it may hold */
    sv[1] = -1;
    errno = fork_errno;
    if (r.pid < 0) {
        fail(&r, "clone", "cannot start the helper");
        goto done;
    }
    if (opts->debug)
        pam_syslog(pamh, LOG_DEBUG, "started helper %s as pid %d",
                   opts->helper, (int)r.pid);
    r.fd = sv[0];

    /*
     * Then wait, not reaping, until the helper exits or the deadline passes:
     * poll() on a pidfd wakes when it has; where pidfd_open is refused
     * (Linux before 5.3, seccomp), poll() on fd -1 naps 1 ms. Unreaped, its
     * pid cannot have been reused. Then nothing may follow the result.
     */
    rc = talk(&r, header, header_len, &reported);
    pidfd.fd = rc == IO_OK ? (int)syscall(SYS_pidfd_open, r.pid, 0) : -1;
    while (rc == IO_OK && si.si_pid != r.pid) {
        if (waitid(P_PID, (id_t)r.pid, &si, WEXITED | WNOHANG | WNOWAIT) &&
            errno != EINTR)
            rc = fail(&r, "waitid", "cannot wait for the helper");
        else if (si.si_pid != r.pid && remaining_ms(&r) == 0)
            rc = IO_TIMEOUT;
        else if (si.si_pid != r.pid)
            (void)poll(&pidfd, 1, pidfd.fd >= 0 ? remaining_ms(&r) : 1);
    }
    if (rc == IO_OK && reported != WW_OUTCOME_NONE &&
        recv(r.fd, &extra, 1, MSG_DONTWAIT) > 0)
        fail(&r, NULL, "helper sent data after its result");
    if (rc == IO_TIMEOUT)
        fail(&r, NULL, "helper timed out");
    /* SIGKILL what is left of its process group (setsid: pgid = pid). */
    (void)kill(-r.pid, SIGKILL);
    (void)kill(r.pid, SIGKILL); /* in case setsid() has not run yet */
    while (waitpid(r.pid, &r.status, 0) < 0 && errno == EINTR) {
    }
    verified = verify_exit(&r, reported);

done:
    (void)sigaction(SIGCHLD, &old_chld, NULL);
    for (size_t i = 0; i < WW_COUNT(fds); i++) {
        if (*fds[i] >= 0)
            (void)close(*fds[i]);
    }
    free(header);
    *reason = r.reason;
    return verified;
}
