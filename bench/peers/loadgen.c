/* An independent closed-loop load generator in C, to check `echoplex bench` against.
 * Usage: loadgen PORT CONNECTIONS SIZE PIPELINE SECONDS [WARMUP_SECONDS] [echo|upper] [udp]
 * Keeps PIPELINE messages of SIZE bytes in flight on each connection to 127.0.0.1:PORT, verifies
 * every returned byte, and prints one JSON line: messages, messagesPerSecond, p50Us, p99Us, errors.
 * With udp, each connection is a connected UDP socket and each message one datagram, which must
 * come back whole; a socket with no reply for a second counts what it had in flight as errors
 * and sends again, so that a lost datagram does not stall it. */
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
#include <time.h>
#include <unistd.h>

struct conn { int fd; size_t got; int inflight; double sent[64]; int head; double last_reply; };

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Latency buckets of 1 us up to 100 ms: enough for p50/p99 to the microsecond. */
#define BUCKETS 100000
static unsigned long hist[BUCKETS];

static double percentile(unsigned long total, double p) {
    unsigned long want = (unsigned long)(total * p / 100.0), seen = 0;
    for (int i = 0; i < BUCKETS; i++) { seen += hist[i]; if (seen > want) return i; }
    return BUCKETS;
}

/* Sends COUNT messages: one write over TCP, one datagram each over UDP. 0, or -1 if any fell short. */
static int send_messages(int fd, int udp, const unsigned char *burst, int size, int count) {
    if (!udp) return write(fd, burst, (size_t)size * count) == (ssize_t)size * count ? 0 : -1;
    int status = 0;
    for (int k = 0; k < count; k++)
        if (send(fd, burst + (size_t)k * size, (size_t)size, 0) != size) status = -1;
    return status;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: loadgen PORT CONNECTIONS SIZE PIPELINE SECONDS [WARMUP] [upper]\n"); return 2; }
    int port = atoi(argv[1]), nconn = atoi(argv[2]), size = atoi(argv[3]), pipeline = atoi(argv[4]);
    double seconds = atof(argv[5]), warmup = argc > 6 ? atof(argv[6]) : 1;
    int upper = 0, udp = 0;
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "upper") == 0) upper = 1;
        else if (strcmp(argv[i], "udp") == 0) udp = 1;
    }
    if (pipeline > 64) pipeline = 64;
    signal(SIGPIPE, SIG_IGN);
    unsigned char *msg = malloc(size), *expect = malloc(size), *burst = malloc((size_t)size * pipeline);
    unsigned char *rbuf = malloc(65536);
    srand(42);
    for (int i = 0; i < size; i++) {
        msg[i] = (unsigned char)(rand() & 0xff);
        expect[i] = upper && msg[i] >= 'a' && msg[i] <= 'z' ? msg[i] ^ 0x20 : msg[i];
    }
    for (int i = 0; i < pipeline; i++) memcpy(burst + (size_t)i * size, msg, size);
    int ep = epoll_create1(0), one = 1;
    struct conn *conns = calloc(nconn, sizeof *conns);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, udp ? SOCK_DGRAM | SOCK_NONBLOCK : SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
        if (!udp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double start = now_us(), measure_from = start + warmup * 1e6, end = measure_from + seconds * 1e6;
    for (int i = 0; i < nconn; i++) {
        if (send_messages(conns[i].fd, udp, burst, size, pipeline) != 0) { perror("write"); return 1; }
        for (int k = 0; k < pipeline; k++) conns[i].sent[k] = start;
        conns[i].inflight = pipeline;
    }
    unsigned long measured = 0, total = 0, errors = 0;
    struct epoll_event events[512];
    double t = start, last_check = start;
    for (int i = 0; i < nconn; i++) conns[i].last_reply = start;
    while (t < end) {
        int n = epoll_wait(ep, events, 512, 100);
        t = now_us();
        if (udp && t - last_check > 100e3) {
            last_check = t;
            for (int i = 0; i < nconn; i++) {
                struct conn *c = &conns[i];
                if (c->inflight == 0 || t - c->last_reply < 1e6) continue;
                errors += (unsigned long)c->inflight;
                c->last_reply = t;
                c->head = 0;
                for (int k = 0; k < pipeline; k++) c->sent[k] = t;
                if (t < end && send_messages(c->fd, udp, burst, size, pipeline) != 0) errors++;
            }
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            ssize_t r = read(c->fd, rbuf, 65536);
            if (udp && r < 0 && errno == EAGAIN) continue;
            if (r <= 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); c->inflight = 0; continue; }
            // A datagram is one whole message or a wrong one.
            if (udp && r != size) { errors++; continue; }
            if (udp) c->last_reply = t;
            int done = 0;
            for (ssize_t off = 0; off < r;) {
                size_t take = (size_t)size - c->got;
                if (take > (size_t)(r - off)) take = (size_t)(r - off);
                if (memcmp(rbuf + off, expect + c->got, take) != 0) errors++;
                off += take;
                c->got += take;
                if (c->got == (size_t)size) {
                    c->got = 0;
                    double sent = c->sent[c->head];
                    c->head = (c->head + 1) % pipeline;
                    if (sent >= measure_from) {
                        long us = (long)(t - sent);
                        hist[us < BUCKETS ? us : BUCKETS - 1]++;
                        measured++;
                    }
                    done++;
                    total++;
                }
            }
            if (done && t < end) {
                if (send_messages(c->fd, udp, burst, size, done) != 0) errors++;
                for (int k = 0; k < done; k++) c->sent[(c->head + pipeline - done + k) % pipeline] = t;
            }
        }
    }
    printf("{\"messages\":%lu,\"messagesTotal\":%lu,\"messagesPerSecond\":%.1f,\"p50Us\":%.0f,\"p99Us\":%.0f,\"errors\":%lu}\n",
           measured, total, measured / seconds, percentile(measured, 50), percentile(measured, 99), errors);
    return errors ? 1 : 0;
}
