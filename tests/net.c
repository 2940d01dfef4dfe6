/* net.c -- see net.h. */
#include "tests/net.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

bool net_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}
