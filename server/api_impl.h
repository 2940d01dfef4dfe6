/* api_impl.h -- private to the api_*.c files: helpers they share. Not part
 * of the API module's public interface (that is api.h).
 *
 * Thread-safety: like api.h, every function is thread-safe (no shared state).
 */
#ifndef EMB_SERVER_API_IMPL_H
#define EMB_SERVER_API_IMPL_H

#include <stdarg.h>

#include "server/api.h"
#include "util/strbuf.h"

/* Writes "key": / "key":"val" (JSON-escaped) into s. */
void api_put_key(struct strbuf *s, const char *key);
void api_put_str_field(struct strbuf *s, const char *key, const char *val);

/* Adds a 422 field error to e (code becomes API_EVALIDATION; beyond
 * API_MAX_FIELD_ERRORS they are counted in the detail only). input_json is
 * the offending value as JSON text (NULL = omitted). */
void api_field_error(struct api_error *e, const char *field, const char *type,
                     const char *input_json, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void api_field_errorv(struct api_error *e, const char *field, const char *type,
                      const char *input_json, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* Writes the 422 detail from the collected field errors; returns API_EVALIDATION. */
int api_validation_finish(struct api_error *e);

#endif
