// The native engine: echoes TCP connections inside libuv, with no call into JavaScript per message.
//
// Node's own TCP path costs one JavaScript callback per read, several times the whole
// per-message user time of a C epoll server (BENCHMARKS.md has the figures). A connection
// accepted (or adopted) here is read, transformed and written back by C on Node's own event
// loop; JavaScript hears about it when it arrives and when it closes. Everything that needs a
// decision per connection (admission, limits, logs, metrics, shutdown) stays in TypeScript
// (src/server/engines/native.ts), which calls into this file through Node-API.
//
// The engine's connections share one epoll set of its own, which libuv polls as a single
// descriptor: an idle connection is then a descriptor and a small struct, where a libuv handle
// each would cost several times that (docs/architecture.md, "Memory per connection").
//
// Semantics mirror the portable engine (src/server/engines/portable.ts): replies are queued in order; past
// max_buffered unsent bytes the connection is not read until half of them are gone; the
// peer's FIN is answered, after every pending byte, by ours; the connection closes when both
// directions are done, or at the first error.

// accept4()
#define _GNU_SOURCE
#include <uv.h>

#include "engines.h"
#include "glue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUFFER_BYTES (64 * 1024)
/** Reads of a full buffer in a row before other connections get a turn (libuv's figure). */
#define READS_PER_TURN 32
/** Ready connections taken from the epoll set at once. */
#define EVENTS_PER_TURN 256
/** Connections taken per readiness of a listening socket before other work gets a turn. */
#define ACCEPT_BATCH 64

typedef struct connection connection_t;

typedef struct engine {
  napi_env env;
  napi_ref on_close;
  napi_ref on_accept;
  napi_async_context async_context;
  int upper;
  size_t max_buffered;
  /** Totals over every connection this engine has served, open or closed. */
  uint64_t bytes_received;
  uint64_t bytes_sent;
  uint64_t backpressure_pauses;
  /** One buffer for every read: each chunk is answered (or copied) before the next read. */
  char *read_buffer;
  /** The connections' epoll set, and libuv's watch on it (holding the loop open while any is live). */
  int epoll_fd;
  uv_poll_t poll;
  /** Connections not yet closed. */
  size_t live;
  /**
   * Closed connections whose close JavaScript has not heard of yet, newest first. They are freed
   * only then, so that an event already taken from the epoll set never finds freed memory.
   */
  connection_t *closed;
  /** Runs once the current turn is over, to tell of closes (see `closed`). */
  uv_idle_t idle;
  /** Live connections by id: what JavaScript names them by. */
  slot_table_t connections;
  /** Listening sockets this engine accepts on, by id. */
  slot_table_t listeners;
  /**
   * A descriptor held in reserve: when descriptors run out, it is closed to accept and at once
   * close each waiting client, so that the listener does not stay readable and spin (as libuv
   * does for Node's own listeners). -1 until the first listener, or while it is in use.
   */
  int spare_fd;
  /** The JavaScript engine object, plus every connection and listener not yet released. */
  int refs;
  /** libuv handles (poll, idle) not yet closed: the engine is freed after the last. */
  int handles;
  struct epoll_event events[EVENTS_PER_TURN];
} engine_t;

/**
 * Replies the kernel has not taken yet, in order: made when a write falls short, freed when it
 * is empty again, so that an idle connection carries none.
 */
typedef struct outbox {
  size_t start;
  size_t end;
  size_t capacity;
  char bytes[];
} outbox_t;

struct connection {
  int fd;
  /** What the epoll set watches for: EPOLLIN while reading, EPOLLOUT while replies wait. */
  uint32_t watching;
  /** The connection's id in engine->connections. */
  double id;
  uint64_t bytes_received;
  /** Bytes accepted for sending, less those still unsent when the connection closed. */
  uint64_t bytes_sent;
  union {
    outbox_t *outbox;
    /** Once closed: the next in engine->closed. */
    connection_t *next_closed;
  };
  unsigned reading : 1;
  unsigned peer_ended : 1;
  unsigned write_ended : 1;
  unsigned shutdown_when_flushed : 1;
  unsigned shutdown_done : 1;
  unsigned closing : 1;
  /** The first error, as a negative errno; 0 for none. */
  int error;
};

/** A listening socket whose clients the engine accepts itself: no net.Socket is made for them. */
typedef struct listener {
  uv_poll_t poll;
  engine_t *engine;
  /** Our duplicate of the listening socket, closed with the listener. */
  int fd;
  double id;
} listener_t;

static void on_engine_handle_closed(uv_handle_t *handle) {
  engine_t *engine = handle->data;
  if (--engine->handles > 0) return;
  slots_free(&engine->connections);
  slots_free(&engine->listeners);
  free(engine->read_buffer);
  free(engine);
}

static void engine_release(engine_t *engine) {
  if (--engine->refs > 0) return;
  if (engine->spare_fd >= 0) close(engine->spare_fd);
  if (engine->epoll_fd >= 0) close(engine->epoll_fd);
  uv_close((uv_handle_t *)&engine->poll, on_engine_handle_closed);
  uv_close((uv_handle_t *)&engine->idle, on_engine_handle_closed);
}

/** Bytes the kernel has not taken yet (none once closed: they were dropped). */
static size_t pending(const connection_t *conn) {
  return conn->closing || conn->outbox == NULL ? 0 : conn->outbox->end - conn->outbox->start;
}

/** Watches for `events` (EPOLLIN, EPOLLOUT), if that is a change. */
static int watch(connection_t *conn, engine_t *engine, uint32_t events) {
  if (events == conn->watching) return 0;
  struct epoll_event event = {.events = events, .data.ptr = conn};
  if (epoll_ctl(engine->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event) < 0) return -errno;
  conn->watching = events;
  return 0;
}

/** Tells JavaScript of each close (id, error status, final byte counts), then lets go of the connection. */
static void report_closes(engine_t *engine) {
  napi_env env = engine->env;
  while (engine->closed != NULL) {
    connection_t *conn = engine->closed;
    engine->closed = conn->next_closed;
    napi_handle_scope scope;
    if (engine->on_close != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value callback, global, args[4];
      if (napi_get_reference_value(env, engine->on_close, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
          napi_create_double(env, conn->id, &args[0]) == napi_ok && napi_create_int32(env, conn->error, &args[1]) == napi_ok &&
          napi_create_double(env, (double)conn->bytes_received, &args[2]) == napi_ok && napi_create_double(env, (double)conn->bytes_sent, &args[3]) == napi_ok) {
        call_from_loop(env, engine->async_context, global, callback, 4, args);
      }
      napi_close_handle_scope(env, scope);
    }
    slots_remove(&engine->connections, conn->id);
    free(conn);
    engine_release(engine);
  }
}

static void on_idle(uv_idle_t *idle) {
  engine_t *engine = idle->data;
  uv_idle_stop(idle);
  // Holds the engine across the calls into JavaScript, which may release the rest.
  engine->refs++;
  report_closes(engine);
  engine_release(engine);
}

/** Closes the socket now; JavaScript hears of it (and the struct is freed) once this turn is over. */
static void close_connection(connection_t *conn, engine_t *engine) {
  if (conn->closing) return;
  // What is still pending never reached the peer.
  size_t unsent = pending(conn);
  conn->closing = 1;
  conn->bytes_sent -= unsent;
  engine->bytes_sent -= unsent;
  free(conn->outbox);
  // Removed explicitly: a descriptor Node still holds (an adopted socket's) would keep it in the set.
  epoll_ctl(engine->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
  close(conn->fd);
  conn->next_closed = engine->closed;
  engine->closed = conn;
  if (--engine->live == 0) uv_unref((uv_handle_t *)&engine->poll);
  uv_idle_start(&engine->idle, on_idle);
}

static void fail(connection_t *conn, engine_t *engine, int status) {
  if (conn->closing) return;
  if (conn->error == 0) conn->error = status;
  close_connection(conn, engine);
}

static void shut_down(connection_t *conn, engine_t *engine) {
  if (shutdown(conn->fd, SHUT_WR) < 0) {
    close_connection(conn, engine);
    return;
  }
  conn->shutdown_done = 1;
  if (conn->peer_ended) close_connection(conn, engine);
}

/** Sends every pending byte, then FIN. */
static void finish(connection_t *conn, engine_t *engine) {
  if (conn->write_ended || conn->closing) return;
  conn->write_ended = 1;
  if (pending(conn) == 0) shut_down(conn, engine);
  else conn->shutdown_when_flushed = 1;
}

/** Watches for what the connection now waits for: input unless held back, room while replies wait. */
static void update_watch(connection_t *conn, engine_t *engine) {
  if (conn->closing) return;
  uint32_t events = (conn->reading ? EPOLLIN : 0) | (pending(conn) > 0 ? EPOLLOUT : 0);
  int status = watch(conn, engine, events);
  if (status < 0) fail(conn, engine, status);
}

/** Appends bytes the kernel did not take, behind any already waiting. 0, or -ENOMEM. */
static int queue_bytes(connection_t *conn, const char *bytes, size_t length) {
  outbox_t *box = conn->outbox;
  size_t waiting = box == NULL ? 0 : box->end - box->start;
  if (box != NULL && box->start > 0) {
    memmove(box->bytes, box->bytes + box->start, waiting);
    box->start = 0;
    box->end = waiting;
  }
  size_t needed = waiting + length;
  if (box == NULL || needed > box->capacity) {
    size_t capacity = box == NULL || box->capacity < 4096 ? 4096 : box->capacity * 2;
    while (capacity < needed) capacity *= 2;
    outbox_t *grown = realloc(box, sizeof *box + capacity);
    if (grown == NULL) return -ENOMEM;
    if (box == NULL) grown->start = grown->end = 0;
    grown->capacity = capacity;
    conn->outbox = box = grown;
  }
  memcpy(box->bytes + box->end, bytes, length);
  box->end += length;
  return 0;
}

/** Sends `length` bytes: what the kernel takes at once, the rest queued in order behind what waits. */
static void send_bytes(connection_t *conn, engine_t *engine, const char *bytes, size_t length) {
  conn->bytes_sent += length;
  engine->bytes_sent += length;
  size_t taken = 0;
  if (pending(conn) == 0) {
    ssize_t written = send(conn->fd, bytes, length, MSG_NOSIGNAL);
    if (written == (ssize_t)length) return;
    if (written < 0 && errno != EAGAIN && errno != EINTR) {
      conn->bytes_sent -= length;
      engine->bytes_sent -= length;
      fail(conn, engine, -errno);
      return;
    }
    if (written > 0) taken = (size_t)written;
  }
  int status = queue_bytes(conn, bytes + taken, length - taken);
  if (status < 0) {
    conn->bytes_sent -= length - taken;
    engine->bytes_sent -= length - taken;
    fail(conn, engine, status);
    return;
  }
  if (pending(conn) >= engine->max_buffered && conn->reading) {
    conn->reading = 0;
    engine->backpressure_pauses++;
  }
  update_watch(conn, engine);
}

/** The socket has room: sends what waits, then what was held for it (FIN, more input). */
static void flush(connection_t *conn, engine_t *engine) {
  outbox_t *box = conn->outbox;
  while (box != NULL && box->start < box->end) {
    ssize_t written = send(conn->fd, box->bytes + box->start, box->end - box->start, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      fail(conn, engine, -errno);
      return;
    }
    box->start += (size_t)written;
  }
  if (box != NULL && box->start == box->end) {
    free(box);
    conn->outbox = NULL;
  }
  // Resume halfway down, like a high-water mark with hysteresis, so the pipe never idles.
  if (!conn->reading && !conn->peer_ended && pending(conn) <= engine->max_buffered / 2) conn->reading = 1;
  if (conn->shutdown_when_flushed && pending(conn) == 0) {
    conn->shutdown_when_flushed = 0;
    shut_down(conn, engine);
  }
  update_watch(conn, engine);
}

/** Python's bytes.upper(): ASCII a-z to A-Z, every other byte unchanged (UTF-8 sequences included). */
static void upper_in_place(char *bytes, size_t length) {
  unsigned char *b = (unsigned char *)bytes;
  for (size_t i = 0; i < length; i++) b[i] ^= (unsigned char)(((unsigned char)(b[i] - 'a') < 26) << 5);
}

/** Input is ready: reads and answers it, as long as the buffer comes back full. */
static void receive(connection_t *conn, engine_t *engine) {
  for (int reads = 0; reads < READS_PER_TURN && conn->reading && !conn->closing; reads++) {
    ssize_t got = read(conn->fd, engine->read_buffer, READ_BUFFER_BYTES);
    if (got > 0) {
      conn->bytes_received += (uint64_t)got;
      engine->bytes_received += (uint64_t)got;
      // After our FIN there is nowhere to echo to: late input is read and dropped.
      if (!conn->write_ended) {
        if (engine->upper) upper_in_place(engine->read_buffer, (size_t)got);
        send_bytes(conn, engine, engine->read_buffer, (size_t)got);
      }
      if (got < READ_BUFFER_BYTES) return;
    } else if (got == 0) {
      // Half-close: send what is pending, then our FIN; close once both sides are done.
      conn->peer_ended = 1;
      conn->reading = 0;
      if (conn->shutdown_done) close_connection(conn, engine);
      else finish(conn, engine);
      update_watch(conn, engine);
      return;
    } else {
      if (errno != EAGAIN && errno != EINTR) fail(conn, engine, -errno);
      return;
    }
  }
}

static void on_ready(connection_t *conn, engine_t *engine, uint32_t events) {
  if (events & EPOLLOUT) flush(conn, engine);
  if (conn->closing) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn->reading) {
    receive(conn, engine);
    return;
  }
  if (events & (EPOLLHUP | EPOLLERR)) {
    // Not reading, so no read reports it: take the socket's error, or else the end of both directions.
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) fail(conn, engine, -error);
    else if (pending(conn) > 0) fail(conn, engine, -EPIPE);
    else close_connection(conn, engine);
  }
}

/** The epoll set has ready connections: serves them, then tells JavaScript of any that closed. */
static void on_set_ready(uv_poll_t *poll, int status, int events) {
  (void)events;
  engine_t *engine = poll->data;
  if (status < 0) return;
  int count = epoll_wait(engine->epoll_fd, engine->events, EVENTS_PER_TURN, 0);
  for (int i = 0; i < count; i++) {
    connection_t *conn = engine->events[i].data.ptr;
    if (!conn->closing) on_ready(conn, engine, engine->events[i].events);
  }
  if (engine->closed != NULL) on_idle(&engine->idle);
}

/**
 * Makes a connection of the connected socket `fd` (which it owns from here, and closes on
 * failure) and starts echoing on it. NULL, with a negative errno in `*status`, when none could
 * be made.
 */
static connection_t *attach(engine_t *engine, int fd, int *status) {
  connection_t *conn = calloc(1, sizeof *conn);
  if (conn == NULL || (*status = slots_put(&engine->connections, conn, &conn->id)) < 0) {
    free(conn);
    close(fd);
    *status = -ENOMEM;
    return NULL;
  }
  conn->fd = fd;
  conn->reading = 1;
  conn->watching = EPOLLIN;
  struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};
  if (epoll_ctl(engine->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
    *status = -errno;
    slots_remove(&engine->connections, conn->id);
    free(conn);
    close(fd);
    return NULL;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  engine->refs++;
  if (engine->live++ == 0) uv_ref((uv_handle_t *)&engine->poll);
  return conn;
}

// ---- Node-API glue ----

// The tag on the engine object handed to JavaScript, so that one passed in the wrong place is an
// error, not a crash. Connections are named by id in their engine (see slot_table_t).
static const napi_type_tag ENGINE_TAG = {0x6563686f706c6578ULL, 0x656e67696e650001ULL};

/** Drops the references into JavaScript; the engine calls nothing after this. */
static void delete_engine_references(napi_env env, engine_t *engine) {
  napi_ref *const refs[] = {&engine->on_close, &engine->on_accept};
  delete_references(env, refs, sizeof refs / sizeof refs[0]);
}

static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  engine_t *engine = data;
  delete_engine_references(env, engine);
  napi_async_destroy(env, engine->async_context);
  engine_release(engine);
}

static engine_t *engine_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &ENGINE_TAG, "expected a native engine");
}

/**
 * createEngine(upper: boolean, maxBuffered: number, onClose: (id, status, bytesReceived, bytesSent) => void,
 *              onAccept: (listenerId, id, address, port) => void)
 */
static napi_value create_engine(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  bool upper;
  double max_buffered;
  CHECK(napi_get_value_bool(env, argv[0], &upper));
  CHECK(napi_get_value_double(env, argv[1], &max_buffered));
  engine_t *engine = calloc(1, sizeof *engine);
  char *read_buffer = malloc(READ_BUFFER_BYTES);
  if (engine == NULL || read_buffer == NULL) {
    free(engine);
    free(read_buffer);
    return throw_status(env, UV_ENOMEM, "createEngine");
  }
  engine->env = env;
  engine->upper = upper;
  engine->max_buffered = max_buffered > 0 ? (size_t)max_buffered : 1;
  engine->read_buffer = read_buffer;
  engine->refs = 1;
  engine->spare_fd = -1;
  uv_loop_t *loop;
  engine->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (engine->epoll_fd < 0 || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &engine->poll, engine->epoll_fd) < 0) {
    int error = engine->epoll_fd < 0 ? -errno : UV_EINVAL;
    if (engine->epoll_fd >= 0) close(engine->epoll_fd);
    free(read_buffer);
    free(engine);
    return throw_status(env, error, "createEngine");
  }
  uv_idle_init(loop, &engine->idle);
  engine->poll.data = engine->idle.data = engine;
  engine->handles = 2;
  // No connection yet: the set keeps the loop open only while one is live.
  uv_poll_start(&engine->poll, UV_READABLE, on_set_ready);
  uv_unref((uv_handle_t *)&engine->poll);
  if (napi_create_reference(env, argv[2], 1, &engine->on_close) != napi_ok || napi_create_reference(env, argv[3], 1, &engine->on_accept) != napi_ok ||
      init_async_context(env, "echoplex:native", &engine->async_context) != napi_ok) {
    delete_engine_references(env, engine);
    engine_release(engine);
    return throw_failed(env, "createEngine");
  }
  bool held;
  napi_value result = wrap_external(env, engine, engine_finalize, &ENGINE_TAG, &held);
  if (!held) {
    delete_engine_references(env, engine);
    napi_async_destroy(env, engine->async_context);
    engine_release(engine);
  }
  // Otherwise the object owns the engine (its finalizer releases it), even if tagging it failed.
  return result;
}

/**
 * The engine and a close-on-exec duplicate of the descriptor that a call's arguments
 * (engine, fd) name; -1, with an error thrown, if either cannot be had.
 */
static int duplicate_argument(napi_env env, napi_callback_info info, engine_t **engine, const char *what) {
  napi_value argv[2];
  int32_t fd;
  if (get_args(env, info, 2, argv) == NULL || (*engine = engine_arg(env, argv[0])) == NULL) return -1;
  if (napi_get_value_int32(env, argv[1], &fd) != napi_ok) {
    throw_failed(env, what);
    return -1;
  }
  int own_fd = duplicate_socket(fd);
  if (own_fd >= 0) return own_fd;
  throw_status(env, own_fd, what);
  return -1;
}

/**
 * adopt(engine, fd): takes over a duplicate of the connected socket `fd` (the caller closes its
 * own), starts echoing, and returns the connection's id, which onClose is called with once it
 * has closed.
 */
static napi_value adopt(napi_env env, napi_callback_info info) {
  engine_t *engine;
  int own_fd = duplicate_argument(env, info, &engine, "adopt");
  if (own_fd < 0) return NULL;
  int status;
  connection_t *conn = attach(engine, own_fd, &status);
  if (conn == NULL) return throw_status(env, status, "adopt");
  napi_value result;
  CHECK(napi_create_double(env, conn->id, &result));
  return result;
}

// ---- Accepting ----

/**
 * Descriptors ran out: accept each waiting client on the spare descriptor and close it at once,
 * so that the listener is not readable again at the next turn. False if there is no spare.
 */
static bool refuse_waiting(listener_t *listener) {
  engine_t *engine = listener->engine;
  if (engine->spare_fd < 0) return false;
  close(engine->spare_fd);
  for (;;) {
    int fd = accept4(listener->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR) continue;
    if (fd < 0) break;
    close(fd);
  }
  engine->spare_fd = open("/", O_RDONLY | O_CLOEXEC);
  return true;
}

/** Tells JavaScript: onAccept(listenerId, id, address, port), or onAccept(listenerId, status) when accepting failed. */
static void report_accept(engine_t *engine, listener_t *listener, connection_t *conn, int status, const struct sockaddr_storage *peer) {
  napi_env env = engine->env;
  napi_handle_scope scope;
  if (engine->on_accept == NULL || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, args[4];
  size_t argc = 2;
  bool made = napi_get_reference_value(env, engine->on_accept, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
              napi_create_double(env, listener->id, &args[0]) == napi_ok;
  if (made && conn == NULL) {
    made = napi_create_int32(env, status, &args[1]) == napi_ok;
  } else if (made) {
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (peer->ss_family == AF_INET) {
      const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
      inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      port = ntohs(in->sin_port);
    } else if (peer->ss_family == AF_INET6) {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      port = ntohs(in6->sin6_port);
    }
    argc = 4;
    made = napi_create_double(env, conn->id, &args[1]) == napi_ok && napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &args[2]) == napi_ok &&
           napi_create_int32(env, port, &args[3]) == napi_ok;
  }
  if (made) call_from_loop(env, engine->async_context, global, callback, argc, args);
  napi_close_handle_scope(env, scope);
}

static void on_listener_readable(uv_poll_t *poll, int status, int events) {
  (void)events;
  listener_t *listener = poll->data;
  engine_t *engine = listener->engine;
  if (status < 0) {
    report_accept(engine, listener, NULL, status, NULL);
    return;
  }
  for (int taken = 0; taken < ACCEPT_BATCH; taken++) {
    struct sockaddr_storage peer;
    socklen_t length = sizeof peer;
    int fd = accept4(listener->fd, (struct sockaddr *)&peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int error = errno;
      // A client that reset while waiting is simply gone.
      if (error == EINTR || error == ECONNABORTED) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) return;
      if ((error == EMFILE || error == ENFILE) && refuse_waiting(listener)) return;
      report_accept(engine, listener, NULL, -error, NULL);
      return;
    }
    int made;
    connection_t *conn = attach(engine, fd, &made);
    if (conn == NULL) report_accept(engine, listener, NULL, made, NULL);
    else report_accept(engine, listener, conn, 0, &peer);
    // JavaScript may have stopped this listener meanwhile.
    if (uv_is_closing((uv_handle_t *)poll)) return;
  }
}

static void on_listener_closed(uv_handle_t *handle) {
  listener_t *listener = handle->data;
  engine_t *engine = listener->engine;
  if (listener->fd >= 0) close(listener->fd);
  free(listener);
  engine_release(engine);
}

/**
 * acceptOn(engine, fd): accepts the clients of the listening socket `fd` from here on (on a
 * duplicate: the caller closes its own), telling onAccept of each. Returns the listener's id.
 */
static napi_value accept_on(napi_env env, napi_callback_info info) {
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  engine_t *engine;
  int own_fd = duplicate_argument(env, info, &engine, "acceptOn");
  if (own_fd < 0) return NULL;
  listener_t *listener = calloc(1, sizeof *listener);
  if (listener == NULL) {
    close(own_fd);
    return throw_status(env, UV_ENOMEM, "acceptOn");
  }
  listener->fd = own_fd;
  if (engine->spare_fd < 0) engine->spare_fd = open("/", O_RDONLY | O_CLOEXEC);
  // Non-blocking already: the flag belongs to the socket, which Node's descriptor shares.
  int status = slots_put(&engine->listeners, listener, &listener->id);
  if (status == 0) {
    status = uv_poll_init(loop, &listener->poll, listener->fd);
    // Only a slot that was given is emptied: an id never set would name slot 0.
    if (status < 0) slots_remove(&engine->listeners, listener->id);
  }
  if (status < 0) {
    close(listener->fd);
    free(listener);
    return throw_status(env, status, "acceptOn");
  }
  listener->engine = engine;
  listener->poll.data = listener;
  engine->refs++;
  status = uv_poll_start(&listener->poll, UV_READABLE, on_listener_readable);
  if (status < 0) {
    slots_remove(&engine->listeners, listener->id);
    uv_close((uv_handle_t *)&listener->poll, on_listener_closed);
    return throw_status(env, status, "acceptOn");
  }
  napi_value result;
  CHECK(napi_create_double(env, listener->id, &result));
  return result;
}

/** stopAccepting(engine, listenerId): closes the listening socket; its live connections go on. Nothing if already stopped. */
static napi_value stop_accepting(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  listener_t *listener = slot_arg(env, argv[1], &engine->listeners);
  if (listener == NULL) return NULL;
  slots_remove(&engine->listeners, listener->id);
  // The port is free when this returns, not a turn of the loop later (when the handle's close
  // callback runs): `await server.close()` then listening on the same port at once must work.
  uv_poll_stop(&listener->poll);
  close(listener->fd);
  listener->fd = -1;
  uv_close((uv_handle_t *)&listener->poll, on_listener_closed);
  return NULL;
}

/** The live connection `engine, id` names (NULL if it has closed), or NULL with an error thrown. */
static connection_t *connection_args(napi_env env, napi_value *argv, engine_t **engine_out, bool *failed) {
  engine_t *engine = engine_arg(env, argv[0]);
  *engine_out = engine;
  *failed = engine == NULL;
  if (engine == NULL) return NULL;
  connection_t *conn = slot_arg(env, argv[1], &engine->connections);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  *failed = pending;
  return conn;
}

/** Does `action` to the connection the arguments (engine, id) name; nothing once it has closed. */
static napi_value act_on_connection(napi_env env, napi_callback_info info, void (*action)(connection_t *, engine_t *)) {
  napi_value argv[2];
  bool failed;
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (conn != NULL) action(conn, engine);
  return NULL;
}

/** finish(engine, id): send what is pending, then FIN. */
static napi_value js_finish(napi_env env, napi_callback_info info) {
  return act_on_connection(env, info, finish);
}

/** destroy(engine, id): close at once, dropping what is pending. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  return act_on_connection(env, info, close_connection);
}

/** counters(engine, id, out: Float64Array(3)): bytes received, bytes sent, bytes pending; false once closed. */
static napi_value js_counters(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed) return NULL;
  double *out = float64_array(env, argv[2], 3);
  if (out == NULL) return NULL;
  napi_value live;
  CHECK(napi_get_boolean(env, conn != NULL, &live));
  if (conn == NULL) return live;
  out[0] = (double)conn->bytes_received;
  out[1] = (double)conn->bytes_sent;
  out[2] = (double)pending(conn);
  return live;
}

/** totals(engine, out: Float64Array(3)): bytes received, bytes sent, backpressure pauses. */
static napi_value js_totals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine = engine_arg(env, argv[0]);
  double *out = engine == NULL ? NULL : float64_array(env, argv[1], 3);
  if (out == NULL) return NULL;
  out[0] = (double)engine->bytes_received;
  out[1] = (double)engine->bytes_sent;
  out[2] = (double)engine->backpressure_pauses;
  return NULL;
}

napi_value echo_engine_init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("createEngine", create_engine),
      EXPORT_FUNCTION("adopt", adopt),
      EXPORT_FUNCTION("acceptOn", accept_on),
      EXPORT_FUNCTION("stopAccepting", stop_accepting),
      EXPORT_FUNCTION("finish", js_finish),
      EXPORT_FUNCTION("destroy", js_destroy),
      EXPORT_FUNCTION("counters", js_counters),
      EXPORT_FUNCTION("totals", js_totals),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
