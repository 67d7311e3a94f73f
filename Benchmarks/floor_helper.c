/*
 * The design's floor, for Benchmarks/pam_bench.py: a helper in C that does only what
 * every watchword login must do, so that the bench shows what the architecture itself
 * costs (a helper process run by pam_watchword.so, and a durable state write).
 *
 * It speaks the helper protocol (docs/helper-protocol.md): reads the module's header,
 * sends one prompt, reads the answer, then does the contract's read-modify-write of the
 * user's state (../shared/DESIGN.md): an exclusive flock on STATE_DIR/locks/USER, a read
 * of STATE_DIR/users/USER, and its atomic replacement (a temporary file in the same
 * directory, fsync, rename, fsync the directory), and reports success. It checks no code,
 * no ownership and no config: never install it. Any failure exits 13 (the module denies).
 *
 * Built by the bench with `cc -O2 -static`, like the static helper.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static char header[8192], record[8192];

/* The value of header line "key value", copied into out (at most size - 1 bytes). */
static int field(const char *key, char *out, size_t size) {
    size_t k = strlen(key);
    for (const char *p = header; (p = strstr(p, key)) != NULL; p += k) {
        if ((p != header && p[-1] != '\n') || p[k] != ' ') continue;
        const char *v = p + k + 1, *end = strchr(v, '\n');
        if (end == NULL || (size_t)(end - v) >= size) return -1;
        memcpy(out, v, end - v);
        out[end - v] = 0;
        return 0;
    }
    return -1;
}

static int write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w <= 0) return -1;
        buf += w;
        n -= w;
    }
    return 0;
}

int main(void) {
    size_t n = 0;
    while (strstr(header, "\nend\n") == NULL) {
        ssize_t r = read(0, header + n, sizeof header - 1 - n);
        if (r <= 0) return 13;
        n += r;
        header[n] = 0;
    }
    char nonce[40], user[260], state[1024], path[1400], temp[1400];
    if (field("nonce", nonce, sizeof nonce) || field("user", user, sizeof user) ||
        field("state_dir", state, sizeof state) || strchr(user, '/') || user[0] == '.')
        return 13;
    const char prompt[] = "prompt Verification code: \n";
    if (write_all(1, prompt, sizeof prompt - 1)) return 13;
    char answer[64];
    n = 0;
    for (;;) { /* "answer N\n" and N bytes */
        ssize_t r = read(0, answer + n, sizeof answer - 1 - n);
        if (r <= 0) return 13;
        n += r;
        answer[n] = 0;
        char *nl = strchr(answer, '\n');
        if (nl && strncmp(answer, "answer ", 7) == 0 && n - (size_t)(nl + 1 - answer) >= (size_t)atoi(answer + 7))
            break;
    }

    snprintf(path, sizeof path, "%s/locks/%s", state, user);
    int lock = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX)) return 13;
    snprintf(path, sizeof path, "%s/users", state);
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return 13;
    int fd = openat(dir, user, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t size = fd < 0 ? -1 : read(fd, record, sizeof record - 64);
    if (size < 0) return 13;
    close(fd);
    size += snprintf(record + size, 64, "floor-login %ld\n", (long)getpid()); /* the "modified" record */
    snprintf(temp, sizeof temp, ".%s.tmp", user);
    unlinkat(dir, temp, 0);
    fd = openat(dir, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, record, size) || fsync(fd) || close(fd) || renameat(dir, temp, dir, user) ||
        fsync(dir))
        return 13;

    char result[96];
    int len = snprintf(result, sizeof result, "result %s success\n", nonce);
    return write_all(1, result, len) ? 13 : 0;
}
