/* net.h -- socket helpers shared by the raw-socket test clients
 * (test_hostile.c, loadgen.c). Loopback only, by their callers' choice.
 *
 * Thread-safety: thread-safe (no state); each fd belongs to its caller.
 */
#ifndef EMB_TESTS_NET_H
#define EMB_TESTS_NET_H

#include <stdbool.h>
#include <stddef.h>

/* Sends all n bytes of p on fd (retrying on EINTR and short writes; no
 * SIGPIPE). Returns false when the connection breaks first. */
bool net_send_all(int fd, const char *p, size_t n);

#endif
