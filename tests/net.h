/* net.h -- raw-socket helpers shared by the test clients (test_conn.c,
 * test_hostile.c, server_proc.c, loadgen.c). Loopback only, by their
 * callers' choice.
 *
 * Thread-safety: thread-safe (no state); each fd belongs to its caller.
 */
#ifndef EMB_TESTS_NET_H
#define EMB_TESTS_NET_H

#include <stdbool.h>
#include <stddef.h>

/* A connected TCP socket (close-on-exec) to 127.0.0.1:port, bound first to
 * source address `from` when not NULL (e.g. "127.0.0.2"); -1 on failure.
 * The caller closes it. */
int net_connect(int port, const char *from);

/* Sends all n bytes of p on fd (retrying on EINTR and short writes; no
 * SIGPIPE). Returns false when the connection breaks first. */
bool net_send_all(int fd, const char *p, size_t n);

/* Reads what the server sends on fd until it closes, timeout_ms passes, or
 * (framed) one response framed by Content-Length is complete. Returns a
 * NUL-terminated buffer the caller frees (never NULL); *len: its length;
 * *closed: the server closed the connection (EOF or reset). Either may be
 * NULL. */
char *net_read(int fd, int timeout_ms, bool framed, size_t *len, bool *closed);

/* Status of the first non-1xx "HTTP/1.x NNN" in buf, 0 if none. */
int net_final_status(const char *buf);

#endif
