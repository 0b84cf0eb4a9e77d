/* The near-the-limit reference: a single-threaded, level-triggered epoll TCP echo server in C.
 * Usage: epoll_echo PORT [upper]   (binds 127.0.0.1; prints "listening PORT" once ready)
 * Each connection keeps what it could not send yet and stops reading until that is flushed,
 * so it is as correct as echoplex (no lost bytes, bounded memory) while doing the least work. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAX_EVENTS 512

struct conn { int fd; size_t pending, off; unsigned char *buf; };

static int upper;

static void upcase(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i] >= 'a' && p[i] <= 'z') p[i] ^= 0x20;
}

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 1234;
    upper = argc > 2 && strcmp(argv[2], "upper") == 0;
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind/listen"); return 1; }
    socklen_t len = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &len);
    printf("listening %d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, events[MAX_EVENTS];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->buf = malloc(BUF);
                    struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->pending == 0) {
                ssize_t r = read(c->fd, c->buf, BUF);
                if (r == 0 || (r < 0 && errno != EAGAIN)) { drop(ep, c); continue; }
                if (r < 0) continue;
                if (upper) upcase(c->buf, (size_t)r);
                c->pending = (size_t)r;
                c->off = 0;
            }
            ssize_t w = write(c->fd, c->buf + c->off, c->pending);
            if (w < 0 && errno != EAGAIN) { drop(ep, c); continue; }
            if (w > 0) { c->off += (size_t)w; c->pending -= (size_t)w; }
            /* Level-triggered: wait for writability while output is pending, readability otherwise. */
            struct epoll_event cev = { .events = c->pending ? EPOLLOUT : EPOLLIN, .data.ptr = c };
            if ((c->pending != 0) != ((events[i].events & EPOLLOUT) != 0)) epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
        }
    }
}
