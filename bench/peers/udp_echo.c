/* The plainest UDP echo in C, the reference for echoplex's UDP engine: one recvfrom and one
 * sendto per datagram on a blocking socket, nothing else. Usage: udp_echo PORT
 * (binds 127.0.0.1; also listens on the same TCP port, only so that bench:peers sees it ready). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 1234;
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
  static char buffer[65536];
  for (;;) {
    struct sockaddr_storage from;
    socklen_t length = sizeof from;
    ssize_t n = recvfrom(udp, buffer, sizeof buffer, 0, (struct sockaddr *)&from, &length);
    if (n < 0) continue;
    sendto(udp, buffer, (size_t)n, 0, (struct sockaddr *)&from, length);
  }
}
