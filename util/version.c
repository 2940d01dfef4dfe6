/* version.c -- see version.h. EMB_GIT_COMMIT comes from build_commit.h,
 * which the Makefile regenerates when the checkout's commit changes. */
#include "util/version.h"

#include "config/config.h"

#if defined(__has_include)
#if __has_include("build_commit.h")
#include "build_commit.h"
#endif
#endif

#ifndef EMB_GIT_COMMIT
#define EMB_GIT_COMMIT "unknown"
#endif

const char *emb_version(void) {
    return CFG_VERSION;
}

const char *emb_commit(void) {
    return EMB_GIT_COMMIT[0] ? EMB_GIT_COMMIT : "unknown";
}
