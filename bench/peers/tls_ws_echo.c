/* The C references for TLS and WebSocket: a single-threaded, level-triggered epoll echo server on OpenSSL 3.
 * Usage: tls_ws_echo PORT MODE [CERT KEY]   MODE: tls (bytes over TLS), ws (WebSocket), wss (both)
 * Binds 127.0.0.1. Built with -lssl -lcrypto (Debian's libssl-dev). TLS as a careful C server
 * runs it: SSL_MODE_RELEASE_BUFFERS, so that an idle connection holds no record buffers.
 * WebSocket: the upgrade is read whole (one request, no keep-alive), then each masked frame is
 * echoed back as one unmasked frame of the same opcode (pings answered, a close answered and the
 * connection ended). Every rule a real server needs (fragments, UTF-8) is left out: this is the
 * least a server can do, the floor echoplex's costs are measured against. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAX_EVENTS 512

struct conn {
    int fd;
    SSL *ssl;
    int handshaken, upgraded;
    /* Input not yet a whole request or frame, and output not yet sent. */
    unsigned char *in;
    size_t in_len;
    unsigned char *out;
    size_t out_len, out_off;
};

static SSL_CTX *ctx;
static int websocket;
static unsigned char scratch[BUF];

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static ssize_t c_read(struct conn *c, void *buf, size_t n) {
    if (!c->ssl) {
        ssize_t r = read(c->fd, buf, n);
        return r < 0 && errno == EAGAIN ? -2 : r;
    }
    size_t got;
    if (SSL_read_ex(c->ssl, buf, n, &got)) return (ssize_t)got;
    int e = SSL_get_error(c->ssl, 0);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -2 : e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static ssize_t c_write(struct conn *c, const void *buf, size_t n) {
    if (!c->ssl) {
        ssize_t w = write(c->fd, buf, n);
        return w < 0 && errno == EAGAIN ? -2 : w;
    }
    size_t put;
    if (SSL_write_ex(c->ssl, buf, n, &put)) return (ssize_t)put;
    int e = SSL_get_error(c->ssl, 0);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -2 : -1;
}

/* Queues bytes behind what waits, sending at once what the socket takes. -1 on a dead connection. */
static int send_bytes(struct conn *c, const unsigned char *p, size_t n) {
    if (c->out_len == 0) {
        ssize_t w = c_write(c, p, n);
        if (w == -1) return -1;
        if (w == (ssize_t)n) return 0;
        if (w > 0) { p += w; n -= (size_t)w; }
    }
    c->out = realloc(c->out, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static const char *header_value(const char *request, const char *name) {
    for (const char *line = strstr(request, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, strlen(name)) == 0) {
            const char *v = line + 2 + strlen(name);
            while (*v == ' ') v++;
            return v;
        }
    }
    return NULL;
}

/* Reads the request; answers 101 with the accept key. -1 to drop, 0 for more input, else bytes used. */
static long upgrade(struct conn *c) {
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return c->in_len > 16384 ? -1 : 0;
    *end = 0;
    const char *key = header_value((const char *)c->in, "Sec-WebSocket-Key:");
    if (!key) return -1;
    char source[128];
    int key_len = (int)strcspn(key, "\r\n");
    snprintf(source, sizeof source, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key_len, key);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)source, strlen(source), digest);
    char accept[64];
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
    char response[256];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (send_bytes(c, (unsigned char *)response, (size_t)n) < 0) return -1;
    c->upgraded = 1;
    return end + 4 - c->in;
}

/* Echoes every whole frame in c->in from `at`; returns bytes used, or -1 to drop. */
static long frames(struct conn *c, size_t at) {
    while (c->in_len - at >= 6) {
        unsigned char *f = c->in + at;
        int opcode = f[0] & 0x0f;
        uint64_t len = f[1] & 0x7f;
        size_t h = 2;
        if (len == 126) { if (c->in_len - at < 8) break; len = (uint64_t)f[2] << 8 | f[3]; h = 4; }
        else if (len == 127) { if (c->in_len - at < 14) break; len = 0; for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i]; h = 10; }
        if (!(f[1] & 0x80)) return -1;
        if (c->in_len - at < h + 4 + len) break;
        unsigned char *mask = f + h, *payload = f + h + 4;
        for (uint64_t i = 0; i < len; i++) payload[i] ^= mask[i & 3];
        /* The reply's header goes just before the payload: ours is four bytes shorter (no mask). */
        unsigned char *reply = payload - h;
        reply[0] = 0x80 | (opcode == 0x9 ? 0xA : opcode);
        if (h == 2) reply[1] = (unsigned char)len;
        else if (h == 4) { reply[1] = 126; reply[2] = (unsigned char)(len >> 8); reply[3] = (unsigned char)len; }
        else { reply[1] = 127; for (int i = 0; i < 8; i++) reply[2 + i] = (unsigned char)(len >> (56 - 8 * i)); }
        at += h + 4 + len;
        if (opcode == 0xA) continue;
        if (send_bytes(c, reply, h + len) < 0) return -1;
        if (opcode == 0x8) return -1;
    }
    return (long)at;
}

/* Input arrived: echo it (bytes), or take the request and frames (WebSocket). -1 to drop. */
static int take(struct conn *c, unsigned char *p, size_t n) {
    if (!websocket) return send_bytes(c, p, n);
    c->in = realloc(c->in, c->in_len + n);
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
    size_t at = 0;
    if (!c->upgraded) {
        long used = upgrade(c);
        if (used <= 0) return (int)used;
        at = (size_t)used;
    }
    long used = frames(c, at);
    if (used < 0) return -1;
    memmove(c->in, c->in + used, c->in_len - (size_t)used);
    c->in_len -= (size_t)used;
    if (c->in_len == 0) { free(c->in); c->in = NULL; }
    return 0;
}

static int serve(int ep, struct conn *c) {
    if (c->ssl && !c->handshaken) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        c->handshaken = 1;
    }
    while (c->out_len > c->out_off) {
        ssize_t w = c_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (w == -1) return -1;
        if (w == -2) break;
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) { free(c->out); c->out = NULL; c->out_len = c->out_off = 0; }
    /* Read only while nothing waits to go out: the peer's pace bounds our memory. */
    while (c->out_len == 0) {
        ssize_t r = c_read(c, scratch, BUF);
        if (r == 0 || r == -1) return -1;
        if (r == -2) break;
        if (take(c, scratch, (size_t)r) < 0) return -1;
    }
    struct epoll_event ev = { .events = c->out_len ? EPOLLOUT : EPOLLIN, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: tls_ws_echo PORT tls|ws|wss [CERT KEY]\n"); return 2; }
    int port = atoi(argv[1]);
    int tls = strcmp(argv[2], "tls") == 0 || strcmp(argv[2], "wss") == 0;
    websocket = strcmp(argv[2], "ws") == 0 || strcmp(argv[2], "wss") == 0;
    signal(SIGPIPE, SIG_IGN);
    if (tls) {
        if (argc < 5) { fprintf(stderr, "tls and wss need CERT KEY\n"); return 2; }
        ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 || SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, events[MAX_EVENTS];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c != NULL) {
                if (serve(ep, c) < 0) drop(ep, c);
                continue;
            }
            int fd;
            while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                c->fd = fd;
                if (tls) {
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, fd);
                }
                struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
            }
        }
    }
}
