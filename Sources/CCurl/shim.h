#ifndef WATCHWORD_CCURL_SHIM_H
#define WATCHWORD_CCURL_SHIM_H
/*
 * libcurl's declarations (Debian: libcurl4-openssl-dev), for calling it through function
 * pointers that WatchwordSMS looks up with dlsym() in a dlopen()ed libcurl.so.4.
 *
 * curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call; these
 * wrappers fix one argument type each and call through the looked-up pointer.
 */
#include <curl/curl.h>
#include <dlfcn.h>

typedef CURLcode (*ww_curl_setopt_fn)(CURL *, CURLoption, ...);
typedef CURLcode (*ww_curl_getinfo_fn)(CURL *, CURLINFO, ...);

static inline CURLcode ww_curl_setopt_long(void *fn, CURL *handle, CURLoption option, long value) {
    return ((ww_curl_setopt_fn)fn)(handle, option, value);
}

static inline CURLcode ww_curl_setopt_pointer(void *fn, CURL *handle, CURLoption option, const void *value) {
    return ((ww_curl_setopt_fn)fn)(handle, option, value);
}

static inline CURLcode ww_curl_setopt_write_function(void *fn, CURL *handle, curl_write_callback callback) {
    return ((ww_curl_setopt_fn)fn)(handle, CURLOPT_WRITEFUNCTION, callback);
}

static inline CURLcode ww_curl_getinfo_long(void *fn, CURL *handle, CURLINFO info, long *value) {
    return ((ww_curl_getinfo_fn)fn)(handle, info, value);
}
#endif
