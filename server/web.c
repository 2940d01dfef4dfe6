/* web.c -- see web.h. */
#include "server/web.h"

#include <string.h>

const struct web_asset *web_find(const char *path) {
    for (int i = 0; i < web_n_assets; i++)
        if (!strcmp(web_assets[i].path, path)) return &web_assets[i];
    return NULL;
}
