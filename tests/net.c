/* net.c -- see net.h. */
#include "tests/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/clock.h"

int net_connect(int port, const char *from) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (from) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, from, &b.sin_addr);
        if (bind(fd, (struct sockaddr *)&b, sizeof(b))) return close(fd), -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) return close(fd), -1;
    return fd;
}

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

char *net_read(int fd, int timeout_ms, bool framed, size_t *len, bool *closed) {
    size_t cap = 1 << 16, n = 0, want = (size_t)-1, hdr = 0;
    char *buf = malloc(cap);
    double end = clock_now() + timeout_ms / 1e3;
    bool eof = false;
    while (n < want) {
        int left = (int)((end - clock_now()) * 1e3);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) {
            eof = true;
            break;
        }
        n += (size_t)k;
        buf[n] = '\0';
        char *e;
        if (framed && !hdr && (e = strstr(buf, "\r\n\r\n"))) {
            hdr = (size_t)(e - buf) + 4;
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl && cl < e) want = hdr + strtoul(cl + 17, NULL, 10);
        }
    }
    buf[n] = '\0';
    if (len) *len = n;
    if (closed) *closed = eof;
    return buf;
}

int net_final_status(const char *buf) {
    for (const char *p = buf; (p = strstr(p, "HTTP/1.")); p++) {
        int st = atoi(p + 9);
        if (st >= 200) return st;
    }
    return 0;
}
