// The native engine: echoes adopted TCP connections inside libuv, with no call into JavaScript per message.
//
// Node's own TCP path costs one JavaScript callback per read, several times the whole
// per-message user time of a C epoll server (BENCHMARKS.md has the figures). A connection
// adopted here is read, transformed and written back by C callbacks on Node's own event loop;
// JavaScript hears about it when it is adopted and when it closes. Everything that needs a
// decision per connection (admission, limits, logs, metrics, shutdown) stays in TypeScript
// (src/server/engines/native.ts), which calls into this file through Node-API.
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
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUFFER_BYTES (64 * 1024)
/** Connections taken per readiness of a listening socket before other work gets a turn. */
#define ACCEPT_BATCH 64

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
  /** The JavaScript engine object, plus every connection not yet released. */
  int refs;
} engine_t;

typedef struct connection {
  uv_tcp_t tcp;
  engine_t *engine;
  /** The JavaScript object told about the close; released then. */
  /** The connection's id in engine->connections. */
  double id;
  uint64_t bytes_received;
  /** Bytes accepted for sending, less those still unsent when the connection closed. */
  uint64_t bytes_sent;
  /** Bytes not yet taken by the kernel: the write in flight plus those queued behind it. */
  size_t pending;
  /**
   * Replies waiting for the write in flight to finish, in one growing buffer: one libuv write
   * at a time, so a client that sends one byte per segment and never reads costs its bytes,
   * not a write request per byte.
   */
  char *queued;
  size_t queued_length;
  size_t queued_capacity;
  unsigned writing : 1;
  unsigned reading : 1;
  unsigned peer_ended : 1;
  unsigned write_ended : 1;
  unsigned shutdown_when_flushed : 1;
  unsigned shutdown_done : 1;
  unsigned closing : 1;
  /** The first error, as a negative libuv status; 0 for none. */
  int error;
} connection_t;

/** A listening socket whose clients the engine accepts itself: no net.Socket is made for them. */
typedef struct listener {
  uv_poll_t poll;
  engine_t *engine;
  /** Our duplicate of the listening socket, closed with the listener. */
  int fd;
  double id;
} listener_t;

typedef struct write_request {
  uv_write_t req;
  size_t length;
  char *bytes;
} write_request_t;

static void engine_release(engine_t *engine) {
  if (--engine->refs > 0) return;
  slots_free(&engine->connections);
  slots_free(&engine->listeners);
  if (engine->spare_fd >= 0) close(engine->spare_fd);
  free(engine->read_buffer);
  free(engine);
}

static void on_closed(uv_handle_t *handle);
static void on_shutdown(uv_shutdown_t *req, int status);
static void on_written(uv_write_t *req, int status);
static void start_reading(connection_t *conn);

static void close_connection(connection_t *conn) {
  if (conn->closing) return;
  conn->closing = 1;
  uv_close((uv_handle_t *)&conn->tcp, on_closed);
}

static void fail(connection_t *conn, int status) {
  if (conn->closing) return;
  if (conn->error == 0) conn->error = status;
  close_connection(conn);
}

static void shut_down(connection_t *conn) {
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL) {
    fail(conn, UV_ENOMEM);
    return;
  }
  req->data = conn;
  int status = uv_shutdown(req, (uv_stream_t *)&conn->tcp, on_shutdown);
  if (status < 0) {
    free(req);
    close_connection(conn);
  }
}

static void stop_reading(connection_t *conn) {
  if (!conn->reading) return;
  uv_read_stop((uv_stream_t *)&conn->tcp);
  conn->reading = 0;
}

/** Reading is stopped, and no reason to keep it stopped holds. */
static int can_resume(const connection_t *conn) {
  return !conn->reading && !conn->closing && !conn->peer_ended && conn->pending <= conn->engine->max_buffered / 2;
}

/** Hands the queued bytes to libuv as the one write in flight. */
static void submit_queued(connection_t *conn) {
  write_request_t *req = malloc(sizeof *req);
  if (req == NULL) {
    fail(conn, UV_ENOMEM);
    return;
  }
  req->bytes = conn->queued;
  req->length = conn->queued_length;
  req->req.data = conn;
  conn->queued = NULL;
  conn->queued_length = conn->queued_capacity = 0;
  uv_buf_t buf = uv_buf_init(req->bytes, (unsigned int)req->length);
  int status = uv_write(&req->req, (uv_stream_t *)&conn->tcp, &buf, 1, on_written);
  if (status < 0) {
    // Never sent: the bytes stay counted in pending, and on_closed takes them off.
    free(req->bytes);
    free(req);
    fail(conn, status);
    return;
  }
  conn->writing = 1;
}

static int queue_bytes(connection_t *conn, const char *bytes, size_t length) {
  size_t needed = conn->queued_length + length;
  if (needed > conn->queued_capacity) {
    size_t capacity = conn->queued_capacity < 4096 ? 4096 : conn->queued_capacity * 2;
    while (capacity < needed) capacity *= 2;
    char *grown = realloc(conn->queued, capacity);
    if (grown == NULL) return UV_ENOMEM;
    conn->queued = grown;
    conn->queued_capacity = capacity;
  }
  memcpy(conn->queued + conn->queued_length, bytes, length);
  conn->queued_length = needed;
  return 0;
}

/** Sends `length` bytes: what the kernel takes at once, the rest queued in order behind any write in flight. */
static void send_bytes(connection_t *conn, const char *bytes, size_t length) {
  conn->bytes_sent += length;
  conn->engine->bytes_sent += length;
  size_t taken = 0;
  if (!conn->writing) {
    uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned int)length);
    int written = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
    if (written == (int)length) return;
    if (written < 0 && written != UV_EAGAIN) {
      conn->pending += length;
      fail(conn, written);
      return;
    }
    if (written > 0) taken = (size_t)written;
  }
  size_t rest = length - taken;
  conn->pending += rest;
  int status = queue_bytes(conn, bytes + taken, rest);
  if (status < 0) {
    fail(conn, status);
    return;
  }
  if (!conn->writing) submit_queued(conn);
  if (conn->pending >= conn->engine->max_buffered && conn->reading) {
    stop_reading(conn);
    conn->engine->backpressure_pauses++;
  }
}

/** Python's bytes.upper(): ASCII a-z to A-Z, every other byte unchanged (UTF-8 sequences included). */
static void upper_in_place(char *bytes, size_t length) {
  unsigned char *b = (unsigned char *)bytes;
  for (size_t i = 0; i < length; i++) b[i] ^= (unsigned char)(((unsigned char)(b[i] - 'a') < 26) << 5);
}

/** Sends every pending byte, then FIN. */
static void finish(connection_t *conn) {
  if (conn->write_ended || conn->closing) return;
  conn->write_ended = 1;
  if (conn->pending == 0) shut_down(conn);
  else conn->shutdown_when_flushed = 1;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  connection_t *conn = handle->data;
  *buf = uv_buf_init(conn->engine->read_buffer, READ_BUFFER_BYTES);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  connection_t *conn = stream->data;
  if (nread > 0) {
    conn->bytes_received += (uint64_t)nread;
    conn->engine->bytes_received += (uint64_t)nread;
    // After our FIN there is nowhere to echo to: late input is read and dropped.
    if (conn->write_ended) return;
    if (conn->engine->upper) upper_in_place(buf->base, (size_t)nread);
    send_bytes(conn, buf->base, (size_t)nread);
  } else if (nread == UV_EOF) {
    // Half-close: send what is pending, then our FIN; close once both sides are done.
    conn->peer_ended = 1;
    conn->reading = 0;
    if (conn->shutdown_done) close_connection(conn);
    else finish(conn);
  } else if (nread < 0) {
    fail(conn, (int)nread);
  }
}

static void on_written(uv_write_t *req, int status) {
  write_request_t *request = (write_request_t *)req;
  connection_t *conn = req->data;
  conn->writing = 0;
  if (status == 0) conn->pending -= request->length;
  free(request->bytes);
  free(request);
  if (conn->closing) return;
  if (status < 0) {
    fail(conn, status);
    return;
  }
  if (conn->queued_length > 0) submit_queued(conn);
  // Resume halfway down, like a high-water mark with hysteresis, so the pipe never idles.
  if (can_resume(conn)) start_reading(conn);
  if (conn->shutdown_when_flushed && conn->pending == 0) {
    conn->shutdown_when_flushed = 0;
    shut_down(conn);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  connection_t *conn = req->data;
  free(req);
  if (conn->closing) return;
  conn->shutdown_done = 1;
  if (status < 0 || conn->peer_ended) close_connection(conn);
}

static void start_reading(connection_t *conn) {
  int status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
  if (status < 0) fail(conn, status);
  else conn->reading = 1;
}

/**
 * The handle is closed: tell JavaScript (id, error status, final byte counts), then let go of
 * it. The id names nothing once this returns.
 */
static void on_closed(uv_handle_t *handle) {
  connection_t *conn = handle->data;
  engine_t *engine = conn->engine;
  // Every write callback has run by now: what is still pending never reached the peer.
  conn->bytes_sent -= conn->pending;
  engine->bytes_sent -= conn->pending;
  conn->pending = 0;
  napi_env env = engine->env;
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
  free(conn->queued);
  free(conn);
  engine_release(engine);
}

// ---- Node-API glue ----

// The tag on the engine object handed to JavaScript, so that one passed in the wrong place is an
// error, not a crash. Connections are named by id in their engine (see slot_table_t).
static const napi_type_tag ENGINE_TAG = {0x6563686f706c6578ULL, 0x656e67696e650001ULL};

static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  engine_t *engine = data;
  napi_delete_reference(env, engine->on_close);
  napi_delete_reference(env, engine->on_accept);
  napi_async_destroy(env, engine->async_context);
  engine->on_close = NULL;
  engine->on_accept = NULL;
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
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  engine->env = env;
  engine->upper = upper;
  engine->max_buffered = max_buffered > 0 ? (size_t)max_buffered : 1;
  engine->read_buffer = read_buffer;
  engine->refs = 1;
  engine->spare_fd = -1;
  napi_value resource_name, result;
  if (napi_create_reference(env, argv[2], 1, &engine->on_close) != napi_ok || napi_create_reference(env, argv[3], 1, &engine->on_accept) != napi_ok ||
      napi_create_string_utf8(env, "echoplex:native", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, NULL, resource_name, &engine->async_context) != napi_ok ||
      napi_create_external(env, engine, engine_finalize, NULL, &result) != napi_ok || napi_type_tag_object(env, result, &ENGINE_TAG) != napi_ok) {
    // Only the first steps can fail here, before anything but the reference exists.
    if (engine->on_close) napi_delete_reference(env, engine->on_close);
    if (engine->on_accept) napi_delete_reference(env, engine->on_accept);
    free(read_buffer);
    free(engine);
    return throw_failed(env, "createEngine");
  }
  return result;
}

/**
 * Makes a connection of the connected socket `fd` (which it owns from here, and closes on
 * failure) and starts echoing on it. NULL, with a negative libuv status in `*status`, when none
 * could be made; otherwise the connection, which its open handle owns (on_closed frees it).
 */
static connection_t *attach(engine_t *engine, uv_loop_t *loop, int fd, int *status) {
  connection_t *conn = calloc(1, sizeof *conn);
  if (conn == NULL || (*status = slots_put(&engine->connections, conn, &conn->id)) < 0) {
    free(conn);
    close(fd);
    *status = UV_ENOMEM;
    return NULL;
  }
  *status = uv_tcp_init(loop, &conn->tcp);
  if (*status < 0) {
    slots_remove(&engine->connections, conn->id);
    free(conn);
    close(fd);
    return NULL;
  }
  // The open handle owns the connection, and the connection holds its engine.
  conn->engine = engine;
  engine->refs++;
  conn->tcp.data = conn;
  int opened = uv_tcp_open(&conn->tcp, fd);
  if (opened < 0) {
    close(fd);
    fail(conn, opened);
    return conn;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  start_reading(conn);
  return conn;
}

/**
 * adopt(engine, fd): takes over a duplicate of the connected socket `fd` (the caller closes its
 * own), starts echoing, and returns the connection's id, which onClose is called with once it
 * has closed.
 */
static napi_value adopt(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  int32_t fd;
  engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int own_fd = duplicate_socket(fd);
  if (own_fd < 0) return throw_status(env, own_fd, "adopt");
  int status;
  connection_t *conn = attach(engine, loop, own_fd, &status);
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
    uv_loop_t *loop = poll->loop;
    int made;
    connection_t *conn = attach(engine, loop, fd, &made);
    if (conn == NULL) report_accept(engine, listener, NULL, made, NULL);
    else report_accept(engine, listener, conn, 0, &peer);
    // JavaScript may have stopped this listener meanwhile.
    if (uv_is_closing((uv_handle_t *)poll)) return;
  }
}

static void on_listener_closed(uv_handle_t *handle) {
  listener_t *listener = handle->data;
  engine_t *engine = listener->engine;
  close(listener->fd);
  free(listener);
  engine_release(engine);
}

/**
 * acceptOn(engine, fd): accepts the clients of the listening socket `fd` from here on (on a
 * duplicate: the caller closes its own), telling onAccept of each. Returns the listener's id.
 */
static napi_value accept_on(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  int32_t fd;
  engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (engine->spare_fd < 0) engine->spare_fd = open("/", O_RDONLY | O_CLOEXEC);
  listener_t *listener = calloc(1, sizeof *listener);
  if (listener == NULL) return throw_status(env, UV_ENOMEM, "acceptOn");
  listener->fd = duplicate_socket(fd);
  if (listener->fd < 0) {
    int error = listener->fd;
    free(listener);
    return throw_status(env, error, "acceptOn");
  }
  // Non-blocking already: the flag belongs to the socket, which Node's descriptor shares.
  int status = slots_put(&engine->listeners, listener, &listener->id);
  if (status == 0) status = uv_poll_init(loop, &listener->poll, listener->fd);
  if (status < 0) {
    slots_remove(&engine->listeners, listener->id);
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
  uv_close((uv_handle_t *)&listener->poll, on_listener_closed);
  return NULL;
}

/** The live connection `engine, id` names (NULL if it has closed), or NULL with an error thrown. */
static connection_t *connection_args(napi_env env, napi_value *argv, bool *failed) {
  engine_t *engine = engine_arg(env, argv[0]);
  *failed = engine == NULL;
  if (engine == NULL) return NULL;
  connection_t *conn = slot_arg(env, argv[1], &engine->connections);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  *failed = pending;
  return conn;
}

/** finish(engine, id): send what is pending, then FIN. Nothing once the connection has closed. */
static napi_value js_finish(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool failed;
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  connection_t *conn = connection_args(env, argv, &failed);
  if (conn != NULL) finish(conn);
  return NULL;
}

/** destroy(engine, id): close at once, dropping what is pending. Nothing once the connection has closed. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool failed;
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  connection_t *conn = connection_args(env, argv, &failed);
  if (conn != NULL) close_connection(conn);
  return NULL;
}

/** counters(engine, id, out: Float64Array(3)): bytes received, bytes sent, bytes pending; false once closed. */
static napi_value js_counters(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  connection_t *conn = connection_args(env, argv, &failed);
  if (failed) return NULL;
  double *out = float64_array(env, argv[2], 3);
  if (out == NULL) return NULL;
  napi_value live;
  CHECK(napi_get_boolean(env, conn != NULL, &live));
  if (conn == NULL) return live;
  out[0] = (double)conn->bytes_received;
  out[1] = (double)conn->bytes_sent;
  out[2] = (double)conn->pending;
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
      {"createEngine", NULL, create_engine, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adopt", NULL, adopt, NULL, NULL, NULL, napi_enumerable, NULL},
      {"acceptOn", NULL, accept_on, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stopAccepting", NULL, stop_accepting, NULL, NULL, NULL, napi_enumerable, NULL},
      {"finish", NULL, js_finish, NULL, NULL, NULL, napi_enumerable, NULL},
      {"destroy", NULL, js_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"counters", NULL, js_counters, NULL, NULL, NULL, napi_enumerable, NULL},
      {"totals", NULL, js_totals, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
