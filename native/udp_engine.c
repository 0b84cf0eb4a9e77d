// The server's UDP engine: datagrams echoed in batches (recvmmsg/sendmmsg) by C callbacks on Node's event loop.
//
// Node's dgram calls JavaScript once per datagram. Here one poll callback reads a batch, answers
// it (uppercased in place if asked) with one system call, and JavaScript only reads the counters.
// Replies the socket buffer cannot take wait in order, up to a bound past which they are dropped
// and counted. Everything else (admission, delays, faults, logs) keeps a socket on dgram
// (src/server/udp.ts decides).

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engines.h"
#include "glue.h"

/** Datagrams read (and answered) per system call. */
#define BATCH 16
/** The largest UDP payload: every datagram is read whole. */
#define MAX_DATAGRAM 65536
/**
 * Slots lie this far apart: a line more than a datagram, so that the first lines of a batch's
 * small datagrams fall in different cache sets (at a 64 KiB stride they would all share one),
 * while each slot stays one span of memory: one iovec per datagram, which the kernel takes as a
 * single user buffer.
 */
#define SLOT_STRIDE (MAX_DATAGRAM + 64)
/** Batches per poll callback, so that one busy socket does not hold the loop. */
#define ROUNDS 8
/** Datagrams waiting at a poll's first read from which the socket counts as busy (see `busy`). */
#define BUSY_AFTER (BATCH / 4)

typedef struct pending {
  struct pending *next;
  struct sockaddr_storage address;
  socklen_t address_length;
  size_t length;
  char bytes[];
} pending_t;

typedef struct udp_engine {
  uv_poll_t poll;
  /**
   * Under load (a backlog at a poll's first read) the socket leaves the epoll set and is read
   * once per turn of the loop from this handle, until a read finds nothing waiting. While the socket is in an epoll set,
   * every reply the kernel frees wakes its wait queue (for writability), which calls into epoll:
   * a cost per datagram that a blocking recvfrom loop, busy, does not pay.
   */
  uv_idle_t idle;
  int busy;
  int fd;
  int upper;
  int closing;
  int writable_wanted;
  /** Slots the last read filled, whose address lengths the next read resets. */
  int last_count;
  /** The JavaScript object and the open poll and idle handles: freed when all are gone. */
  int refs;
  size_t max_pending;
  size_t pending_bytes;
  pending_t *head;
  pending_t *tail;
  double datagrams;
  double bytes_received;
  double bytes_sent;
  double drops;
  /** BATCH slots, SLOT_STRIDE apart. */
  char *buffers;
  /** Read and reply headers, pointed at their slots once: a call changes only lengths. */
  struct mmsghdr in[BATCH];
  struct mmsghdr out[BATCH];
  struct iovec in_iov[BATCH];
  struct iovec out_iov[BATCH];
  struct sockaddr_storage addresses[BATCH];
} udp_engine_t;

static const napi_type_tag UDP_TAG = {0x6563686f706c6578ULL, 0x7564702d656e6731ULL};

static void upper_in_place(char *bytes, size_t length) {
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)bytes[i];
    if (c >= 'a' && c <= 'z') bytes[i] = (char)(c - 32);
  }
}

/** Points every slot's read and reply headers at its buffer and address, once. */
static void init_slots(udp_engine_t *engine) {
  for (int i = 0; i < BATCH; i++) {
    engine->in_iov[i] = (struct iovec){.iov_base = engine->buffers + (size_t)i * SLOT_STRIDE, .iov_len = MAX_DATAGRAM};
    engine->out_iov[i].iov_base = engine->in_iov[i].iov_base;
    engine->in[i].msg_hdr = (struct msghdr){.msg_name = &engine->addresses[i], .msg_namelen = sizeof engine->addresses[i], .msg_iov = &engine->in_iov[i], .msg_iovlen = 1};
    engine->out[i].msg_hdr = (struct msghdr){.msg_name = &engine->addresses[i], .msg_iov = &engine->out_iov[i], .msg_iovlen = 1};
  }
}

static void release(udp_engine_t *engine) {
  if (--engine->refs > 0) return;
  for (pending_t *p = engine->head; p != NULL;) {
    pending_t *next = p->next;
    free(p);
    p = next;
  }
  free(engine->buffers);
  free(engine);
}

static void on_poll_closed(uv_handle_t *handle) {
  udp_engine_t *engine = handle->data;
  if (engine->fd >= 0) close(engine->fd);
  release(engine);
}

static void on_idle_closed(uv_handle_t *handle) {
  release(handle->data);
}

static void close_engine(udp_engine_t *engine) {
  if (engine->closing) return;
  engine->closing = 1;
  uv_poll_stop(&engine->poll);
  // The port is free when close() returns, not a turn of the loop later: a server closed and
  // opened again on the same port at once must be able to bind it.
  close(engine->fd);
  engine->fd = -1;
  uv_close((uv_handle_t *)&engine->poll, on_poll_closed);
  uv_close((uv_handle_t *)&engine->idle, on_idle_closed);
}

/** Queues slot `i`'s reply, which the socket could not take, in order; past the bound it is dropped. */
static void queue_reply(udp_engine_t *engine, int i) {
  size_t length = engine->in[i].msg_len;
  pending_t *p = engine->pending_bytes + length > engine->max_pending ? NULL : malloc(sizeof *p + length);
  if (p == NULL) {
    engine->drops++;
    return;
  }
  p->next = NULL;
  p->address_length = engine->in[i].msg_hdr.msg_namelen;
  memcpy(&p->address, &engine->addresses[i], p->address_length);
  p->length = length;
  memcpy(p->bytes, engine->in_iov[i].iov_base, length);
  if (engine->tail == NULL) engine->head = p;
  else engine->tail->next = p;
  engine->tail = p;
  engine->pending_bytes += length;
}

/** Sends queued replies until the socket is full again; returns 1 when the queue is empty. */
static int flush_pending(udp_engine_t *engine) {
  while (engine->head != NULL) {
    pending_t *p = engine->head;
    ssize_t sent = sendto(engine->fd, p->bytes, p->length, MSG_DONTWAIT, (struct sockaddr *)&p->address, p->address_length);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) return 0;
    if (sent < 0) engine->drops++;
    else engine->bytes_sent += (double)sent;
    engine->head = p->next;
    if (engine->head == NULL) engine->tail = NULL;
    engine->pending_bytes -= p->length;
    free(p);
  }
  return 1;
}

static void on_poll(uv_poll_t *handle, int status, int events);

/** Waits in epoll: for readable, and writable too while replies wait for room. */
static void watch(udp_engine_t *engine, int writable) {
  engine->writable_wanted = writable;
  uv_poll_start(&engine->poll, writable ? UV_READABLE | UV_WRITABLE : UV_READABLE, on_poll);
}

static void want_writable(udp_engine_t *engine, int wanted) {
  // A busy socket polls again (for writable too) once it leaves busy mode.
  if (engine->writable_wanted == wanted || engine->closing || engine->busy) return;
  watch(engine, wanted);
}

/** Answers the `count` datagrams read into the batch's slots; what the socket cannot take waits. */
static void answer(udp_engine_t *engine, int count) {
  int first_unsent = 0;
  if (engine->head == NULL) {
    for (int i = 0; i < count; i++) {
      engine->out_iov[i].iov_len = engine->in[i].msg_len;
      engine->out[i].msg_hdr.msg_namelen = engine->in[i].msg_hdr.msg_namelen;
    }
    while (first_unsent < count) {
      int sent = sendmmsg(engine->fd, &engine->out[first_unsent], (unsigned)(count - first_unsent), MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
        // This datagram cannot go (its sender's port is gone, say): drop it, send the rest.
        engine->drops++;
        first_unsent++;
        continue;
      }
      for (int i = first_unsent; i < first_unsent + sent; i++) engine->bytes_sent += (double)engine->in[i].msg_len;
      first_unsent += sent;
    }
  }
  for (int i = first_unsent; i < count; i++) queue_reply(engine, i);
  if (engine->head != NULL) want_writable(engine, 1);
}

/** Reads one batch into the slots; returns how many datagrams it held (0 when none was waiting). */
static int read_batch(udp_engine_t *engine) {
  // The kernel wrote each used slot's address length; the rest are as init_slots left them.
  for (int i = 0; i < engine->last_count; i++) engine->in[i].msg_hdr.msg_namelen = sizeof engine->addresses[i];
  int count = recvmmsg(engine->fd, engine->in, BATCH, MSG_DONTWAIT, NULL);
  engine->last_count = count > 0 ? count : 0;
  return engine->last_count;
}

/**
 * Reads and answers up to `rounds` batches; returns how many datagrams they held, with
 * `*drained` set when a read found none waiting.
 */
static int serve(udp_engine_t *engine, int rounds, int *drained) {
  int total = 0;
  *drained = 0;
  for (int round = 0; round < rounds; round++) {
    int count = read_batch(engine);
    if (count == 0) {
      *drained = 1;
      break;
    }
    for (int i = 0; i < count; i++) {
      size_t length = engine->in[i].msg_len;
      engine->datagrams++;
      engine->bytes_received += (double)length;
      if (engine->upper) upper_in_place(engine->in_iov[i].iov_base, length);
    }
    answer(engine, count);
    total += count;
    // More may have come in while this batch was answered: read again until none is waiting.
  }
  return total;
}

static void on_busy(uv_idle_t *idle);

/** Back to waiting in epoll, for writable too if replies wait. */
static void leave_busy(udp_engine_t *engine) {
  engine->busy = 0;
  uv_idle_stop(&engine->idle);
  watch(engine, engine->head != NULL);
}

static void on_busy(uv_idle_t *idle) {
  udp_engine_t *engine = idle->data;
  if (engine->closing) return;
  int drained;
  serve(engine, ROUNDS, &drained);
  // Replies waiting for room need the poll's writable event.
  if (drained || engine->head != NULL) leave_busy(engine);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  udp_engine_t *engine = handle->data;
  if (engine->closing) return;
  if (status < 0) return;
  if ((events & UV_WRITABLE) && flush_pending(engine)) want_writable(engine, 0);
  if (!(events & UV_READABLE)) return;
  int drained;
  // A backlog at the first read: out of the epoll set before the rest of it is answered.
  if (serve(engine, 1, &drained) >= BUSY_AFTER && engine->head == NULL) {
    // Stopping the poll takes the socket out of the epoll set.
    uv_poll_stop(&engine->poll);
    engine->busy = 1;
    uv_idle_start(&engine->idle, on_busy);
  }
  if (!drained) serve(engine, ROUNDS - 1, &drained);
}

static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  close_engine(data);
  release(data);
}

static udp_engine_t *engine_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &UDP_TAG, "expected a native UDP engine");
}

/**
 * createUdp(fd, upper, maxPending): echoes on a duplicate of the bound UDP socket `fd` (the
 * caller closes its own). Throws (code EMFILE, ...) if it cannot.
 */
static napi_value js_create(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  int32_t fd;
  bool upper;
  double max_pending;
  uv_loop_t *loop;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_bool(env, argv[1], &upper));
  CHECK(napi_get_value_double(env, argv[2], &max_pending));
  CHECK(napi_get_uv_event_loop(env, &loop));
  udp_engine_t *engine = calloc(1, sizeof *engine);
  char *buffers = malloc((size_t)BATCH * SLOT_STRIDE);
  int status = UV_ENOMEM;
  if (engine == NULL || buffers == NULL) goto failed;
  engine->buffers = buffers;
  init_slots(engine);
  engine->upper = upper;
  engine->max_pending = max_pending > 0 ? (size_t)max_pending : 0;
  engine->fd = status = duplicate_socket(fd);
  if (status < 0) goto failed;
  status = uv_poll_init_socket(loop, &engine->poll, engine->fd);
  if (status < 0) {
    close(engine->fd);
    goto failed;
  }
  engine->poll.data = engine;
  uv_idle_init(loop, &engine->idle);
  engine->idle.data = engine;
  // Each handle is one owner until its close callback.
  engine->refs = 2;
  watch(engine, 0);
  bool held;
  napi_value result = wrap_external(env, engine, engine_finalize, &UDP_TAG, &held);
  if (!held) {
    close_engine(engine);
    return NULL;
  }
  // From here the object is the other owner (its finalizer closes and releases), even if tagging it failed.
  engine->refs++;
  return result;

failed:
  free(buffers);
  free(engine);
  return throw_status(env, status, "createUdp");
}

/** udpTotals(engine, out): datagrams, bytes received, bytes sent, drops. */
static napi_value js_totals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  udp_engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  double *out = float64_array(env, argv[1], 4);
  if (out == NULL) return NULL;
  out[0] = engine->datagrams;
  out[1] = engine->bytes_received;
  out[2] = engine->bytes_sent;
  out[3] = engine->drops;
  return NULL;
}

/** closeUdp(engine): stops echoing and closes the duplicate; replies still queued are dropped. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  udp_engine_t *engine = only_tagged_argument(env, info, &UDP_TAG, "expected a native UDP engine");
  if (engine == NULL) return NULL;
  close_engine(engine);
  return NULL;
}

napi_value udp_engine_init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("createUdp", js_create),
      EXPORT_FUNCTION("udpTotals", js_totals),
      EXPORT_FUNCTION("closeUdp", js_close),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
