#include "CVersion.h"

#pragma clang diagnostic ignored "-Wc23-extensions" /* #embed: C23, which clang has */

/* VERSION's bytes, then a NUL (the CLI cuts the trailing newline). */
static const char version[] = {
#embed "../../VERSION"
    , 0};

const char *watchword_version(void) { return version; }
