/* The plainest UDP echo in C, the reference for echoplex's UDP engine: one recvfrom and one
 * sendto per datagram on a blocking socket, nothing else. Usage: udp_echo PORT [mmsg]
 * (binds 127.0.0.1; also listens on the same TCP port, only so that bench:peers sees it ready).
 * With mmsg it reads up to 16 datagrams per recvmmsg and answers them with one sendmmsg: the
 * most that batching system calls, which echoplex's UDP engine does, can save a C loop. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 16

static char buffers[BATCH][65536];

static void serve_plain(int udp) {
  for (;;) {
    struct sockaddr_storage from;
    socklen_t length = sizeof from;
    ssize_t n = recvfrom(udp, buffers[0], sizeof buffers[0], 0, (struct sockaddr *)&from, &length);
    if (n < 0) continue;
    sendto(udp, buffers[0], (size_t)n, 0, (struct sockaddr *)&from, length);
  }
}

static void serve_batched(int udp) {
  struct mmsghdr in[BATCH], out[BATCH];
  struct iovec in_iov[BATCH], out_iov[BATCH];
  struct sockaddr_storage addresses[BATCH];
  for (int i = 0; i < BATCH; i++) {
    in_iov[i] = (struct iovec){.iov_base = buffers[i], .iov_len = sizeof buffers[i]};
    out_iov[i] = in_iov[i];
    in[i].msg_hdr = (struct msghdr){.msg_name = &addresses[i], .msg_iov = &in_iov[i], .msg_iovlen = 1};
    out[i].msg_hdr = (struct msghdr){.msg_name = &addresses[i], .msg_iov = &out_iov[i], .msg_iovlen = 1};
  }
  for (;;) {
    for (int i = 0; i < BATCH; i++) in[i].msg_hdr.msg_namelen = sizeof addresses[i];
    // Blocks for the first datagram, then takes what else is waiting.
    int count = recvmmsg(udp, in, BATCH, MSG_WAITFORONE, NULL);
    if (count <= 0) continue;
    for (int i = 0; i < count; i++) {
      out_iov[i].iov_len = in[i].msg_len;
      out[i].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
    }
    for (int sent = 0; sent < count;) {
      int n = sendmmsg(udp, out + sent, (unsigned)(count - sent), 0);
      sent += n > 0 ? n : 1;
    }
  }
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 1234;
  int batched = argc > 2 && strcmp(argv[2], "mmsg") == 0;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  int size = 4 * 1024 * 1024;
  setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(udp, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(udp, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind udp"); return 1; }
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(tcp, (struct sockaddr *)&a, sizeof a) != 0 || listen(tcp, 16) != 0) { perror("bind tcp"); return 1; }
  printf("listening %d\n", port);
  fflush(stdout);
  if (batched) serve_batched(udp);
  else serve_plain(udp);
}
