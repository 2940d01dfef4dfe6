/* version.h -- what this binary is: its release and the git commit it was
 * built from (baked in by the Makefile; "unknown" outside a git checkout,
 * e.g. in a source tarball or a Docker build context without .git).
 *
 * Thread-safety: both return static strings; safe from any thread.
 */
#ifndef EMB_UTIL_VERSION_H
#define EMB_UTIL_VERSION_H

/* The release, e.g. "0.1.0". */
const char *emb_version(void);

/* The git commit (short hash, "-dirty" when built from modified files), or
 * "unknown". */
const char *emb_commit(void);

#endif
