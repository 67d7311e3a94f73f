/*
 * The command line for the Swift runtime, without reading /proc/self/maps.
 *
 * On Linux the Swift runtime finds argv in a static constructor of its own (CommandLine.cpp
 * in libswiftCore.a): it opens /proc/self/maps, parses every line with sscanf to find the
 * stack, and walks back from environ. That is about 49,000 instructions and five system calls
 * at the start of every login (BENCHMARKS.md). glibc hands argc and argv to every
 * .init_array function, so the helper keeps them here, and defines the one function
 * through which the standard library asks for them (`CommandLine.arguments`). With the
 * symbol defined, the linker never pulls CommandLine.cpp's object out of the archive, and
 * its constructor never runs. Were it pulled in anyway (a toolchain that defines more there),
 * the link fails on the duplicate symbol: it cannot silently fall back.
 */
#include <stddef.h>

static char **saved_argv;
static int saved_argc;

static void save_arguments(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

__attribute__((section(".init_array"), used))
static void (*const save_arguments_entry)(int, char **, char **) = save_arguments;

/* SWIFT_CC(swift) char **_swift_stdlib_getUnsafeArgvArgc(int *outArgLen), as the
 * standard library declares it (stdlib/public/SwiftShims/swift/shims/RuntimeStubs.h). */
__attribute__((swiftcall, visibility("hidden")))
char **_swift_stdlib_getUnsafeArgvArgc(int *outArgLen) {
    static char *empty[] = {NULL};
    if (saved_argv == NULL) {
        *outArgLen = 0;
        return empty;
    }
    *outArgLen = saved_argc;
    return saved_argv;
}
