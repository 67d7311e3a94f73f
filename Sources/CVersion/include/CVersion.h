#ifndef WATCHWORD_CVERSION_H
#define WATCHWORD_CVERSION_H

/* The version in the repository's top-level VERSION file (its one source), compiled in
 * with #embed: the CLI's --version and install/build-deb.sh read the same file. */
const char *watchword_version(void);

#endif
