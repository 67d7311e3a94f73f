/*
 * Fake watchword helper that records the process environment the module
 * gave it: argv (including argv[0], which a script cannot see), environ,
 * open descriptors, session, signal mask and ignored signals, umask, working
 * directory, resource limits, and its user and group ids. It writes
 * record.json next to its own executable, then answers the header with
 * "result <nonce> success" and exits 0.
 *
 * Built by the tests with: cc -O2 -o watchword-helper inspect_helper.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* "SigBlk:\t0000000000000000" -> the hex string */
static void status_field(const char *name, char *out, size_t len) {
    char line[256];
    size_t n = strlen(name);
    FILE *f = fopen("/proc/self/status", "r");

    snprintf(out, len, "?");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            char *v = line + n + 1;
            while (*v == '\t' || *v == ' ')
                v++;
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    /* Descriptors first, before stdio opens anything. */
    int fds[256];
    char targets[256][128];
    int nfds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        int self = dirfd(d);
        while ((e = readdir(d)) != NULL && nfds < 256) {
            char path[64];
            ssize_t k;
            if (e->d_name[0] == '.')
                continue;
            int fd = atoi(e->d_name);
            if (fd == self)
                continue;
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            k = readlink(path, targets[nfds], sizeof(targets[nfds]) - 1);
            targets[nfds][k > 0 ? k : 0] = '\0';
            fds[nfds++] = fd;
        }
        closedir(d);
    }

    struct stat st0, st1;
    int same_socket = fstat(0, &st0) == 0 && fstat(1, &st1) == 0 &&
                      S_ISSOCK(st0.st_mode) && st0.st_ino == st1.st_ino &&
                      st0.st_dev == st1.st_dev;
    mode_t mask = umask(0);
    umask(mask);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        snprintf(cwd, sizeof(cwd), "?");
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    gid_t groups[64];
    int ngroups = getgroups(64, groups);
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return 75;
    static const struct {
        const char *name;
        int resource;
    } limits[] = {{"core", RLIMIT_CORE},   {"fsize", RLIMIT_FSIZE},
                  {"cpu", RLIMIT_CPU},     {"nofile", RLIMIT_NOFILE},
                  {"as", RLIMIT_AS},       {"data", RLIMIT_DATA},
                  {"stack", RLIMIT_STACK}, {"nproc", RLIMIT_NPROC}};
    char sigblk[64], sigign[64];
    status_field("SigBlk", sigblk, sizeof(sigblk));
    status_field("SigIgn", sigign, sizeof(sigign));

    /* record.json next to the executable */
    char exe[PATH_MAX], rec[PATH_MAX + 16];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k <= 0)
        return 70;
    exe[k] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(rec, sizeof(rec), "%s/record.json", exe);
    FILE *f = fopen(rec, "w");
    if (f == NULL)
        return 71;
    fprintf(f, "{\"argv\": [");
    for (int i = 0; i < argc; i++) {
        if (i)
            fprintf(f, ", ");
        json_string(f, argv[i]);
    }
    fprintf(f, "], \"env\": [");
    for (char **e = environ; *e != NULL; e++) {
        if (e != environ)
            fprintf(f, ", ");
        json_string(f, *e);
    }
    fprintf(f, "], \"fds\": {");
    for (int i = 0; i < nfds; i++) {
        if (i)
            fprintf(f, ", ");
        fprintf(f, "\"%d\": ", fds[i]);
        json_string(f, targets[i]);
    }
    fprintf(f, "}, \"fd01_same_socket\": %s", same_socket ? "true" : "false");
    fprintf(f, ", \"pid\": %d, \"sid\": %d, \"pgid\": %d", (int)getpid(),
            (int)getsid(0), (int)getpgid(0));
    fprintf(f, ", \"sigblk\": ");
    json_string(f, sigblk);
    fprintf(f, ", \"sigign\": ");
    json_string(f, sigign);
    fprintf(f, ", \"umask\": %d", (int)mask);
    fprintf(f, ", \"cwd\": ");
    json_string(f, cwd);
    fprintf(f, ", \"uids\": [%d, %d, %d], \"gids\": [%d, %d, %d]", (int)ru,
            (int)eu, (int)su, (int)rg, (int)eg, (int)sg);
    fprintf(f, ", \"groups\": [");
    for (int i = 0; i < ngroups; i++)
        fprintf(f, "%s%d", i ? ", " : "", (int)groups[i]);
    fprintf(f, "], \"limits\": {");
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct rlimit rl;
        getrlimit(limits[i].resource, &rl);
        /* -1 for RLIM_INFINITY */
        fprintf(f, "%s\"%s\": [%lld, %lld]", i ? ", " : "", limits[i].name,
                rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long)rl.rlim_cur,
                rl.rlim_max == RLIM_INFINITY ? -1LL : (long long)rl.rlim_max);
    }
    fprintf(f, "}}\n");
    fclose(f);

    /* The protocol: read the header up to "end", report success. */
    char buf[8192];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return 72;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\nend\n") != NULL)
            break;
    }
    char *nonce = strstr(buf, "\nnonce ");
    if (nonce == NULL)
        return 73;
    nonce += strlen("\nnonce ");
    nonce[strcspn(nonce, "\n")] = '\0';
    char out[128];
    int m = snprintf(out, sizeof(out), "result %s success\n", nonce);
    if (write(1, out, (size_t)m) != m)
        return 74;
    return 0;
}
