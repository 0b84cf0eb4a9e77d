/* UDP echo on io_uring, to measure what it would save echoplex's UDP engine: a multishot RECVMSG
 * into a ring of provided buffers (no message header copied in per datagram) and one SEND with a
 * destination address per reply, blocking in io_uring_enter; datagrams of up to about 2 KB, the
 * size of its buffers. Usage: uring_echo PORT (binds
 * 127.0.0.1; also listens on the same TCP port, only so that bench:peers sees it ready). Exits 1
 * if the kernel refuses io_uring (Docker's default seccomp profile does); `uring_echo --check`
 * only says whether it would. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ENTRIES 512
#define BUFFERS 256
#define BUFFER_BYTES 2048
#define GROUP 1
#define RECV_TAG 0xffffffffULL

static unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static struct io_uring_buf_ring *buffer_ring;
static char *buffers;
static unsigned short buffer_tail;
static unsigned to_submit;
static struct msghdr recv_header;

static struct io_uring_sqe *next_sqe(void) {
  unsigned tail = *sq_tail, index = tail & *sq_mask;
  struct io_uring_sqe *sqe = &sqes[index];
  memset(sqe, 0, sizeof *sqe);
  sq_array[index] = index;
  atomic_store_explicit((_Atomic unsigned *)sq_tail, tail + 1, memory_order_release);
  to_submit++;
  return sqe;
}

static void arm_receive(int fd) {
  struct io_uring_sqe *sqe = next_sqe();
  sqe->opcode = IORING_OP_RECVMSG;
  sqe->fd = fd;
  sqe->addr = (unsigned long)&recv_header;
  sqe->len = 1;
  sqe->ioprio = IORING_RECV_MULTISHOT;
  sqe->flags = IOSQE_BUFFER_SELECT;
  sqe->buf_group = GROUP;
  sqe->user_data = RECV_TAG;
}

/** Hands buffer `id` back to the kernel for the next datagram. */
static void give_back(unsigned short id) {
  struct io_uring_buf *buffer = &buffer_ring->bufs[buffer_tail & (BUFFERS - 1)];
  buffer->addr = (unsigned long)(buffers + (size_t)id * BUFFER_BYTES);
  buffer->len = BUFFER_BYTES;
  buffer->bid = id;
  buffer_tail++;
  atomic_store_explicit((_Atomic unsigned short *)&buffer_ring->tail, buffer_tail, memory_order_release);
}

/** A ring with the flags below and a provided-buffer ring on it (Linux 6.1 and later), or -1. */
static int open_ring(struct io_uring_params *params) {
  *params = (struct io_uring_params){.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
  int ring = (int)syscall(__NR_io_uring_setup, ENTRIES, params);
  if (ring < 0) return -1;
  buffer_ring = mmap(0, BUFFERS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  struct io_uring_buf_reg registration = {.ring_addr = (unsigned long)buffer_ring, .ring_entries = BUFFERS, .bgid = GROUP};
  if (buffer_ring == MAP_FAILED || syscall(__NR_io_uring_register, ring, IORING_REGISTER_PBUF_RING, &registration, 1) < 0) return -1;
  return ring;
}

int main(int argc, char **argv) {
  struct io_uring_params params;
  int ring = open_ring(&params);
  if (ring < 0) { perror("io_uring"); return 1; }
  if (argc > 1 && strcmp(argv[1], "--check") == 0) return 0;
  int port = argc > 1 ? atoi(argv[1]) : 1234;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  int size = 4 * 1024 * 1024;
  setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(udp, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(udp, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind udp"); return 1; }
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(tcp, (struct sockaddr *)&a, sizeof a) != 0 || listen(tcp, 16) != 0) { perror("bind tcp"); return 1; }

  size_t ring_bytes = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  size_t cq_bytes = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
  if (cq_bytes > ring_bytes) ring_bytes = cq_bytes;
  /* One mapping holds both rings (IORING_FEAT_SINGLE_MMAP, since Linux 5.4). */
  char *rings = mmap(0, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
  sqes = mmap(0, params.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
  if (rings == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
  sq_tail = (unsigned *)(rings + params.sq_off.tail);
  sq_mask = (unsigned *)(rings + params.sq_off.ring_mask);
  sq_array = (unsigned *)(rings + params.sq_off.array);
  cq_head = (unsigned *)(rings + params.cq_off.head);
  cq_tail = (unsigned *)(rings + params.cq_off.tail);
  cq_mask = (unsigned *)(rings + params.cq_off.ring_mask);
  cqes = (struct io_uring_cqe *)(rings + params.cq_off.cqes);

  buffers = malloc((size_t)BUFFERS * BUFFER_BYTES);
  if (buffers == NULL) return 1;
  for (unsigned short id = 0; id < BUFFERS; id++) give_back(id);

  recv_header.msg_namelen = sizeof(struct sockaddr_in);
  arm_receive(udp);
  printf("listening %d\n", port);
  fflush(stdout);
  for (;;) {
    if (syscall(__NR_io_uring_enter, ring, to_submit, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) { perror("io_uring_enter"); return 1; }
    to_submit = 0;
    unsigned head = *cq_head;
    unsigned tail = atomic_load_explicit((_Atomic unsigned *)cq_tail, memory_order_acquire);
    /* At most BUFFERS datagrams are out at once, each with one send: the SQ (ENTRIES) has room. */
    for (; head != tail; head++) {
      struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
      if (cqe->user_data != RECV_TAG) {
        /* A reply went (or failed): its buffer is free again. */
        give_back((unsigned short)cqe->user_data);
        continue;
      }
      if (!(cqe->flags & IORING_CQE_F_MORE)) arm_receive(udp);
      if (cqe->res < 0 || !(cqe->flags & IORING_CQE_F_BUFFER)) continue;
      unsigned short id = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      char *buffer = buffers + (size_t)id * BUFFER_BYTES;
      struct io_uring_recvmsg_out *out = (struct io_uring_recvmsg_out *)buffer;
      char *name = buffer + sizeof *out;
      struct io_uring_sqe *sqe = next_sqe();
      sqe->opcode = IORING_OP_SEND;
      sqe->fd = udp;
      sqe->addr = (unsigned long)(name + recv_header.msg_namelen);
      sqe->len = out->payloadlen;
      sqe->addr2 = (unsigned long)name;
      sqe->addr_len = (unsigned short)out->namelen;
      sqe->user_data = id;
    }
    atomic_store_explicit((_Atomic unsigned *)cq_head, head, memory_order_release);
  }
}
