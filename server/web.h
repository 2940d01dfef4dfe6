/* web.h -- the page at `/`: the files under web/, compiled into the binary
 * by the build (scripts/embed_assets.c writes the table below into
 * build/gen/web_assets.c). The page calls the public API only; the server
 * serves these bytes as they are.
 *
 * Thread-safety: everything here is constant data. */
#ifndef EMB_SERVER_WEB_H
#define EMB_SERVER_WEB_H

#include <stddef.h>

struct web_asset {
    const char *path;  /* "/" or "/ui/<name>" */
    const char *ctype; /* Content-Type */
    const char *etag;  /* quoted hash of the bytes */
    const unsigned char *data;
    size_t len;
};

extern const struct web_asset web_assets[];
extern const int web_n_assets;

/* The asset served at path (a trailing '/' after "/ui/<name>" is not one),
 * or NULL. */
const struct web_asset *web_find(const char *path);

#endif
