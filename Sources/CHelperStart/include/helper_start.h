#ifndef WATCHWORD_HELPER_START_H
#define WATCHWORD_HELPER_START_H

/* Nothing to call: arguments.c defines the Swift runtime's _swift_stdlib_getUnsafeArgvArgc
 * for the helper and fills it from an .init_array function. */

#endif
