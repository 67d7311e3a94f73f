#ifndef WATCHWORD_CLIBPQ_SHIM_H
#define WATCHWORD_CLIBPQ_SHIM_H
/*
 * libpq's declarations (Debian: libpq-dev), for calling it through function pointers that
 * WatchwordPostgres looks up with dlsym() in a dlopen()ed libpq.so.5.
 */
#include <postgresql/libpq-fe.h>
#include <dlfcn.h>
#endif
