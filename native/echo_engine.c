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
//
// Two layers may sit between the socket and the echo, each chosen per listener: TLS (on Node's
// own OpenSSL, tls.c), and WebSocket frames (websocket.c) after an HTTP upgrade that JavaScript
// answers. A connection is then bytes in, frames out of them, a reply per message, and frames
// back in through the same TLS session.

// accept4()
#define _GNU_SOURCE
#include <uv.h>

#include "engines.h"
#include "glue.h"
#include "tls.h"
#include "websocket.h"

#include <openssl/err.h>

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
#include <time.h>
#include <unistd.h>

#define READ_BUFFER_BYTES (64 * 1024)
/** Reads of a full buffer in a row before other connections get a turn (libuv's figure). */
#define READS_PER_TURN 32
/** Ready connections taken from the epoll set at once. */
#define EVENTS_PER_TURN 256
/** Connections taken per readiness of a listening socket before other work gets a turn. */
#define ACCEPT_BATCH 64

typedef struct connection connection_t;
typedef struct handshake handshake_t;

typedef struct engine {
  napi_env env;
  napi_ref on_close;
  napi_ref on_accept;
  napi_async_context async_context;
  napi_ref on_data;
  napi_ref on_tls_failed;
  int upper;
  size_t max_buffered;
  /** TLS listeners' context (NULL until setTls), and how long a handshake may take. */
  SSL_CTX *tls;
  uint64_t handshake_timeout_ms;
  /** Handshakes under way, oldest first, and the timer that ends those past their time. */
  handshake_t *handshakes;
  handshake_t *last_handshake;
  uv_timer_t handshake_timer;
  /** WebSocket listeners: the largest message taken (longer ones close with 1009). */
  uint64_t max_message;
  /** WebSocket messages echoed, over every connection. */
  uint64_t messages;
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

/** What a connection is in: raw bytes, an HTTP request that JavaScript reads, or WebSocket frames. */
enum { MODE_RAW = 0, MODE_HTTP = 1, MODE_FRAMES = 2 };

/** Bytes that wait for more: a frame not yet whole, or a fragmented message. Made when needed. */
typedef struct {
  size_t start;
  size_t end;
  size_t capacity;
  uint8_t bytes[];
} buffer_t;

/** A TLS handshake under way: who it came from, by which listener, since when. Freed when it ends. */
struct handshake {
  connection_t *conn;
  handshake_t *previous;
  handshake_t *next;
  uint64_t started_ms;
  double listener_id;
  struct sockaddr_storage peer;
};

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
  /** The TLS session; NULL on plain TCP. */
  SSL *ssl;
  /** Until its handshake is done, over TLS. */
  handshake_t *handshake;
  /** WebSocket: input short of a whole frame, and a fragmented message's payload so far (header room first). */
  buffer_t *inbox;
  buffer_t *message;
  /** WebSocket: the UTF-8 check's state across a text message's fragments. */
  uint32_t utf8;
  /** WebSocket: control frames seen, which count as traffic for the idle timeout. */
  uint32_t control_frames;
  /** WebSocket: the close code that ends it (the one sent first, else the peer's); 0 for none yet. */
  uint16_t close_code;
  unsigned reading : 1;
  unsigned peer_ended : 1;
  unsigned write_ended : 1;
  unsigned shutdown_when_flushed : 1;
  unsigned shutdown_done : 1;
  unsigned closing : 1;
  /** TLS asked to write before it can go on (a handshake, or a read): watch for room. */
  unsigned tls_wants_write : 1;
  unsigned mode : 2;
  /** WebSocket: the message being fragmented (its opcode), 0 for none. */
  unsigned message_opcode : 4;
  unsigned close_sent : 1;
  /** WebSocket: no more frames are read (a close came, or the protocol was broken). */
  unsigned frames_done : 1;
  /** WebSocket: why the protocol was broken (ws_error_t), 0 if it was not. */
  unsigned ws_error : 4;
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
  /** What its connections speak: TLS first, then an HTTP upgrade to WebSocket frames. */
  unsigned tls : 1;
  unsigned websocket : 1;
} listener_t;

/** The address in `address` as text in `host`; returns its port (0 for a family other than IP). */
static int format_address(const struct sockaddr_storage *address, char host[INET6_ADDRSTRLEN]) {
  if (address->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)address;
    inet_ntop(AF_INET, &in->sin_addr, host, INET6_ADDRSTRLEN);
    return ntohs(in->sin_port);
  }
  if (address->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, INET6_ADDRSTRLEN);
    return ntohs(in6->sin6_port);
  }
  return 0;
}

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
  tls_free_context(engine->tls);
  engine->tls = NULL;
  uv_close((uv_handle_t *)&engine->poll, on_engine_handle_closed);
  uv_close((uv_handle_t *)&engine->idle, on_engine_handle_closed);
  uv_close((uv_handle_t *)&engine->handshake_timer, on_engine_handle_closed);
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

/**
 * Tells JavaScript of each close (id, error status, final byte counts; for WebSocket, the close
 * code and the protocol error if any), then lets go of the connection.
 */
static void report_closes(engine_t *engine) {
  napi_env env = engine->env;
  while (engine->closed != NULL) {
    connection_t *conn = engine->closed;
    engine->closed = conn->next_closed;
    napi_handle_scope scope;
    if (engine->on_close != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value callback, global, args[6];
      size_t argc = conn->mode == MODE_RAW ? 4 : 6;
      if (napi_get_reference_value(env, engine->on_close, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
          napi_create_double(env, conn->id, &args[0]) == napi_ok && napi_create_int32(env, conn->error, &args[1]) == napi_ok &&
          napi_create_double(env, (double)conn->bytes_received, &args[2]) == napi_ok && napi_create_double(env, (double)conn->bytes_sent, &args[3]) == napi_ok &&
          napi_create_int32(env, conn->close_code, &args[4]) == napi_ok && napi_create_int32(env, conn->ws_error, &args[5]) == napi_ok) {
        call_from_loop(env, engine->async_context, global, callback, argc, args);
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

/** Takes a connection's handshake off the engine's list, and frees it. */
static void forget_handshake(connection_t *conn, engine_t *engine) {
  handshake_t *handshake = conn->handshake;
  if (handshake == NULL) return;
  if (handshake->previous != NULL) handshake->previous->next = handshake->next;
  else engine->handshakes = handshake->next;
  if (handshake->next != NULL) handshake->next->previous = handshake->previous;
  else engine->last_handshake = handshake->previous;
  conn->handshake = NULL;
  free(handshake);
  if (engine->handshakes == NULL) uv_timer_stop(&engine->handshake_timer);
}

/** Closes the socket now; JavaScript hears of it (and the struct is freed) once this turn is over. */
static void close_connection(connection_t *conn, engine_t *engine) {
  if (conn->closing) return;
  // What is still pending never reached the peer (over WebSocket, frame headers included).
  size_t unsent = pending(conn);
  if (unsent > conn->bytes_sent) unsent = (size_t)conn->bytes_sent;
  conn->closing = 1;
  conn->bytes_sent -= unsent;
  engine->bytes_sent -= unsent;
  free(conn->outbox);
  free(conn->inbox);
  free(conn->message);
  conn->inbox = conn->message = NULL;
  forget_handshake(conn, engine);
  if (conn->ssl != NULL) SSL_free(conn->ssl);
  conn->ssl = NULL;
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
  // TLS says the stream ended (close_notify) before TCP does; a short write of it is not waited for.
  if (conn->ssl != NULL) {
    ERR_clear_error();
    SSL_shutdown(conn->ssl);
  }
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

/** Watches for what the connection now waits for: input unless held back, room while replies (or TLS) wait. */
static void update_watch(connection_t *conn, engine_t *engine) {
  if (conn->closing) return;
  uint32_t events = (conn->reading ? EPOLLIN : 0) | (pending(conn) > 0 || conn->tls_wants_write ? EPOLLOUT : 0);
  int status = watch(conn, engine, events);
  if (status < 0) fail(conn, engine, status);
}

/** Reads into `buffer`: bytes read, 0 at the peer's end of stream, -EAGAIN for none yet, or a negative error. */
static ssize_t transport_read(connection_t *conn, char *buffer, size_t size) {
  if (conn->ssl == NULL) {
    ssize_t got = read(conn->fd, buffer, size);
    if (got >= 0) return got;
    return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
  }
  size_t got;
  ERR_clear_error();
  errno = 0;
  if (SSL_read_ex(conn->ssl, buffer, size, &got)) return (ssize_t)got;
  switch (SSL_get_error(conn->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
      return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
      conn->tls_wants_write = 1;
      return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      return errno != 0 ? -errno : -EPROTO;
    default:
      return -EPROTO;
  }
}

/** Writes from `bytes`: how many were taken, -EAGAIN for none yet, or a negative error. */
static ssize_t transport_write(connection_t *conn, const char *bytes, size_t length) {
  if (conn->ssl == NULL) {
    ssize_t written = send(conn->fd, bytes, length, MSG_NOSIGNAL);
    if (written >= 0) return written;
    return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
  }
  // A write TLS could not finish is retried with the same bytes: they are the outbox's first.
  size_t written;
  ERR_clear_error();
  errno = 0;
  if (SSL_write_ex(conn->ssl, bytes, length, &written)) return (ssize_t)written;
  switch (SSL_get_error(conn->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return -EAGAIN;
    case SSL_ERROR_SYSCALL:
      return errno != 0 ? -errno : -EPIPE;
    default:
      return -EPROTO;
  }
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

/**
 * Sends `length` bytes, of which `counted` are echoed data (the rest frame headers, control
 * frames, HTTP): what the socket takes at once, the rest queued in order behind what waits.
 */
static void send_bytes(connection_t *conn, engine_t *engine, const char *bytes, size_t length, size_t counted) {
  conn->bytes_sent += counted;
  engine->bytes_sent += counted;
  size_t taken = 0;
  if (pending(conn) == 0) {
    ssize_t written = transport_write(conn, bytes, length);
    if (written == (ssize_t)length) return;
    if (written < 0 && written != -EAGAIN) {
      conn->bytes_sent -= counted;
      engine->bytes_sent -= counted;
      fail(conn, engine, (int)written);
      return;
    }
    if (written > 0) taken = (size_t)written;
  }
  int status = queue_bytes(conn, bytes + taken, length - taken);
  if (status < 0) {
    conn->bytes_sent -= counted;
    engine->bytes_sent -= counted;
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
    ssize_t written = transport_write(conn, box->bytes + box->start, box->end - box->start);
    if (written == -EAGAIN) break;
    if (written < 0) {
      fail(conn, engine, (int)written);
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

// ---- WebSocket ----

/** Room kept before a fragmented message's payload for the reply's frame header. */
#define MESSAGE_HEADROOM 10

/** Appends to `*buffer` (made with `headroom` bytes before its data). 0, or -ENOMEM. */
static int append(buffer_t **buffer, const uint8_t *bytes, size_t length, size_t headroom) {
  buffer_t *b = *buffer;
  if (b != NULL && b->start > headroom && b->end + length > b->capacity) {
    memmove(b->bytes + headroom, b->bytes + b->start, b->end - b->start);
    b->end -= b->start - headroom;
    b->start = headroom;
  }
  size_t needed = (b == NULL ? headroom : b->end) + length;
  if (b == NULL || needed > b->capacity) {
    size_t capacity = b == NULL ? 256 : b->capacity * 2;
    while (capacity < needed) capacity *= 2;
    buffer_t *grown = realloc(b, sizeof *b + capacity);
    if (grown == NULL) return -ENOMEM;
    if (b == NULL) grown->start = grown->end = headroom;
    grown->capacity = capacity;
    *buffer = b = grown;
  }
  memcpy(b->bytes + b->end, bytes, length);
  b->end += length;
  return 0;
}

/** A control frame (pong, close) of at most 125 bytes; not counted as echoed data. */
static void send_control(connection_t *conn, engine_t *engine, uint8_t opcode, const uint8_t *payload, size_t length) {
  uint8_t frame[2 + 125];
  ws_write_server_header(frame, opcode, length);
  if (length > 0) memcpy(frame + 2, payload, length);
  send_bytes(conn, engine, (const char *)frame, 2 + length, 0);
}

/** Sends a close frame with `code` and `reason` unless one went already; the code is the one counted if first. */
static void send_close(connection_t *conn, engine_t *engine, uint16_t code, const char *reason) {
  if (conn->close_sent) return;
  conn->close_sent = 1;
  if (conn->close_code == 0) conn->close_code = code;
  uint8_t body[125] = {(uint8_t)(code >> 8), (uint8_t)code};
  size_t length = strlen(reason);
  memcpy(body + 2, reason, length);
  send_control(conn, engine, WS_CLOSE, body, 2 + length);
}

/** The peer broke the protocol: a close frame with the code that says how, then FIN; later frames are not read. */
static void ws_fail(connection_t *conn, engine_t *engine, ws_error_t error) {
  if (conn->frames_done || conn->closing) return;
  conn->frames_done = 1;
  conn->ws_error = error;
  send_close(conn, engine, ws_close_code_for(error), "");
  finish(conn, engine);
}

/**
 * Replies to a whole message with one frame of its kind. `payload` has room before it for the
 * header: a client frame's header is four bytes longer (its mask) than ours, and a fragmented
 * message keeps MESSAGE_HEADROOM.
 */
static void ws_reply(connection_t *conn, engine_t *engine, uint8_t opcode, uint8_t *payload, size_t length) {
  engine->messages++;
  // After a close frame, no data frame may follow.
  if (conn->close_sent || conn->write_ended) return;
  if (engine->upper) upper_in_place((char *)payload, length);
  size_t header = ws_server_header_length(length);
  ws_write_server_header(payload - header, opcode, length);
  send_bytes(conn, engine, (const char *)payload - header, header + length, length);
}

/** One whole frame, unmasked, whose header checks passed. */
static void ws_frame(connection_t *conn, engine_t *engine, const ws_header_t *frame, uint8_t *payload) {
  size_t length = (size_t)frame->length;
  switch (frame->opcode) {
    case WS_PING:
      conn->control_frames++;
      if (!conn->close_sent) send_control(conn, engine, WS_PONG, payload, length);
      return;
    case WS_PONG:
      conn->control_frames++;
      return;
    case WS_CLOSE: {
      conn->control_frames++;
      uint16_t code = 1005;
      if (length == 1) { ws_fail(conn, engine, WS_ERR_BAD_CLOSE_PAYLOAD); return; }
      if (length >= 2) {
        code = (uint16_t)(payload[0] << 8 | payload[1]);
        if (!ws_close_code_valid(code)) { ws_fail(conn, engine, WS_ERR_BAD_CLOSE_CODE); return; }
        uint32_t state = 0;
        if (!ws_utf8_continue(&state, payload + 2, length - 2) || state != 0) { ws_fail(conn, engine, WS_ERR_INVALID_UTF8); return; }
      }
      conn->frames_done = 1;
      if (conn->close_code == 0) conn->close_code = code;
      // Answered with the same code and reason (none for none), as ws answers it; then FIN.
      if (!conn->close_sent) {
        conn->close_sent = 1;
        send_control(conn, engine, WS_CLOSE, payload, length);
      }
      finish(conn, engine);
      return;
    }
    default: {
      uint8_t kind = frame->opcode == WS_CONTINUATION ? conn->message_opcode : frame->opcode;
      if (kind == WS_TEXT && (!ws_utf8_continue(&conn->utf8, payload, length) || (frame->fin && conn->utf8 != 0)))
        { ws_fail(conn, engine, WS_ERR_INVALID_UTF8); return; }
      conn->bytes_received += length;
      engine->bytes_received += length;
      if (frame->fin && conn->message == NULL) {
        ws_reply(conn, engine, kind, payload, length);
        return;
      }
      if (append(&conn->message, payload, length, MESSAGE_HEADROOM) < 0) { fail(conn, engine, -ENOMEM); return; }
      if (!frame->fin) {
        conn->message_opcode = kind;
        return;
      }
      buffer_t *message = conn->message;
      conn->message = NULL;
      conn->message_opcode = 0;
      ws_reply(conn, engine, kind, message->bytes + message->start, message->end - message->start);
      free(message);
    }
  }
}

/** Takes every whole frame in `bytes`; returns how many bytes that was (the rest is a frame not yet whole). */
static size_t ws_frames(connection_t *conn, engine_t *engine, uint8_t *bytes, size_t length) {
  size_t at = 0;
  while (!conn->frames_done && !conn->closing) {
    ws_header_t frame;
    int header = ws_read_client_header(bytes + at, length - at, &frame);
    if (header == 0) break;
    if (header < 0) {
      ws_fail(conn, engine, (ws_error_t)-header);
      break;
    }
    // Fragments are checked, and an oversized message refused, before its payload is waited for.
    bool data = !(frame.opcode & 0x8);
    if (data && frame.opcode != WS_CONTINUATION && conn->message_opcode != 0) {
      ws_fail(conn, engine, WS_ERR_EXPECTED_CONTINUATION);
      break;
    }
    if (frame.opcode == WS_CONTINUATION && conn->message_opcode == 0) {
      ws_fail(conn, engine, WS_ERR_UNEXPECTED_CONTINUATION);
      break;
    }
    uint64_t so_far = conn->message == NULL ? 0 : conn->message->end - conn->message->start;
    if (data && so_far + frame.length > engine->max_message) {
      ws_fail(conn, engine, WS_ERR_MESSAGE_TOO_BIG);
      break;
    }
    if (length - at - (size_t)header < frame.length) break;
    uint8_t *payload = bytes + at + header;
    ws_unmask(payload, (size_t)frame.length, frame.mask);
    at += (size_t)header + (size_t)frame.length;
    ws_frame(conn, engine, &frame, payload);
  }
  return at;
}

/** Frame bytes arrived: whole frames are answered, and a partial one kept for the next read. */
static void ws_receive(connection_t *conn, engine_t *engine, uint8_t *bytes, size_t length) {
  if (conn->frames_done) return;
  buffer_t *inbox = conn->inbox;
  if (inbox != NULL) {
    // Four bytes of headroom would do (see ws_reply); the inbox keeps a frame header's worth.
    if (append(&conn->inbox, bytes, length, MESSAGE_HEADROOM) < 0) { fail(conn, engine, -ENOMEM); return; }
    inbox = conn->inbox;
    bytes = inbox->bytes + inbox->start;
    length = inbox->end - inbox->start;
  }
  size_t used = ws_frames(conn, engine, bytes, length);
  // Closing freed the inbox, and a close or a protocol error ends reading frames.
  if (conn->closing || conn->frames_done) {
    free(conn->inbox);
    conn->inbox = NULL;
    return;
  }
  if (inbox != NULL) {
    inbox->start += used;
    if (inbox->start == inbox->end) {
      free(inbox);
      conn->inbox = NULL;
    }
  } else if (used < length && append(&conn->inbox, bytes + used, length - used, MESSAGE_HEADROOM) < 0) {
    fail(conn, engine, -ENOMEM);
  }
}

/** JavaScript reads the HTTP request before the upgrade: each chunk goes to onData(id, bytes). */
static void report_data(engine_t *engine, connection_t *conn, const char *bytes, size_t length) {
  napi_env env = engine->env;
  napi_handle_scope scope;
  if (engine->on_data == NULL || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, args[2];
  void *copy;
  if (napi_get_reference_value(env, engine->on_data, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
      napi_create_double(env, conn->id, &args[0]) == napi_ok && napi_create_buffer_copy(env, length, bytes, &copy, &args[1]) == napi_ok) {
    engine->refs++;
    call_from_loop(env, engine->async_context, global, callback, 2, args);
    engine_release(engine);
  }
  napi_close_handle_scope(env, scope);
}

/** Bytes read from the socket (decrypted, over TLS): echoed, handed to JavaScript, or taken as frames. */
static void deliver(connection_t *conn, engine_t *engine, char *bytes, size_t length) {
  switch (conn->mode) {
    case MODE_RAW:
      conn->bytes_received += length;
      engine->bytes_received += length;
      // After our FIN there is nowhere to echo to: late input is read and dropped.
      if (conn->write_ended) return;
      if (engine->upper) upper_in_place(bytes, length);
      send_bytes(conn, engine, bytes, length, length);
      return;
    case MODE_HTTP:
      report_data(engine, conn, bytes, length);
      return;
    default:
      ws_receive(conn, engine, (uint8_t *)bytes, length);
  }
}

/** Input is ready: reads and answers it, as long as there is more (TLS may hold some already read). */
static void receive(connection_t *conn, engine_t *engine) {
  for (int reads = 0; conn->reading && !conn->closing && (reads < READS_PER_TURN || (conn->ssl != NULL && SSL_has_pending(conn->ssl))); reads++) {
    ssize_t got = transport_read(conn, engine->read_buffer, READ_BUFFER_BYTES);
    if (got > 0) {
      deliver(conn, engine, engine->read_buffer, (size_t)got);
      // A short plain read emptied the socket; TLS reads a record at a time.
      if (got < READ_BUFFER_BYTES && conn->ssl == NULL) return;
    } else if (got == 0) {
      // Half-close: send what is pending, then our FIN; close once both sides are done.
      conn->peer_ended = 1;
      conn->reading = 0;
      if (conn->shutdown_done) close_connection(conn, engine);
      else finish(conn, engine);
      update_watch(conn, engine);
      return;
    } else {
      if (got != -EAGAIN) fail(conn, engine, (int)got);
      else update_watch(conn, engine);
      return;
    }
  }
}

// ---- TLS handshakes ----

/** Tells JavaScript of a failed handshake: onTlsFailed(listenerId, address, port, reason). */
static void report_tls_failure(engine_t *engine, const handshake_t *handshake, const char *reason) {
  napi_env env = engine->env;
  napi_handle_scope scope;
  if (engine->on_tls_failed == NULL || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, args[4];
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0;
  port = format_address(&handshake->peer, host);
  if (napi_get_reference_value(env, engine->on_tls_failed, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
      napi_create_double(env, handshake->listener_id, &args[0]) == napi_ok && napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &args[1]) == napi_ok &&
      napi_create_int32(env, port, &args[2]) == napi_ok && napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &args[3]) == napi_ok) {
    call_from_loop(env, engine->async_context, global, callback, 4, args);
  }
  napi_close_handle_scope(env, scope);
}

static void handshake_failed(connection_t *conn, engine_t *engine, const char *reason) {
  engine->refs++;
  report_tls_failure(engine, conn->handshake, reason);
  // The alert OpenSSL wrote must reach the client: a close with its unread bytes still waiting
  // (a TLS 1.3 client sends data right after its Finished) would reset the connection instead,
  // and the client would see a reset where it should see why.
  while (read(conn->fd, engine->read_buffer, READ_BUFFER_BYTES) > 0) continue;
  shutdown(conn->fd, SHUT_WR);
  // Never a connection to JavaScript: its close is heard of by id only, and matches none.
  close_connection(conn, engine);
  engine_release(engine);
}

static void report_accept(engine_t *engine, listener_t *listener, connection_t *conn, int status, const struct sockaddr_storage *peer);

static void handshake_done(connection_t *conn, engine_t *engine) {
  handshake_t *handshake = conn->handshake;
  struct sockaddr_storage peer = handshake->peer;
  listener_t *listener = slots_get(&engine->listeners, handshake->listener_id);
  forget_handshake(conn, engine);
  conn->tls_wants_write = 0;
  if (listener == NULL) {
    close_connection(conn, engine);
    return;
  }
  if (listener->websocket) conn->mode = MODE_HTTP;
  report_accept(engine, listener, conn, 0, &peer);
  if (conn->closing) return;
  update_watch(conn, engine);
  // The client's first bytes may have come with its Finished, already inside TLS.
  receive(conn, engine);
}

/** Takes the handshake as far as the socket allows. */
static void progress_handshake(connection_t *conn, engine_t *engine) {
  ERR_clear_error();
  errno = 0;
  int result = SSL_do_handshake(conn->ssl);
  if (result == 1) { handshake_done(conn, engine); return; }
  int error = SSL_get_error(conn->ssl, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    conn->tls_wants_write = error == SSL_ERROR_WANT_WRITE;
    update_watch(conn, engine);
    return;
  }
  char reason[256];
  if (error == SSL_ERROR_SSL) tls_last_error(reason, sizeof reason);
  else if (errno != 0 && errno != EPIPE) snprintf(reason, sizeof reason, "%s during the TLS handshake", strerror(errno));
  else snprintf(reason, sizeof reason, "the client left during the TLS handshake");
  handshake_failed(conn, engine, reason);
}

/** Ends every handshake that has run past the engine's timeout, oldest first. */
static void on_handshake_timer(uv_timer_t *timer) {
  engine_t *engine = timer->data;
  uint64_t now = uv_now(timer->loop);
  engine->refs++;
  while (engine->handshakes != NULL && now - engine->handshakes->started_ms >= engine->handshake_timeout_ms)
    handshake_failed(engine->handshakes->conn, engine, "TLS handshake timeout");
  engine_release(engine);
}

/** A TLS client was accepted: its handshake starts, and JavaScript hears of it only once it is done. */
static void start_handshake(connection_t *conn, engine_t *engine, const listener_t *listener, const struct sockaddr_storage *peer) {
  handshake_t *handshake = calloc(1, sizeof *handshake);
  conn->ssl = handshake == NULL ? NULL : tls_session(engine->tls, conn->fd);
  if (conn->ssl == NULL) {
    free(handshake);
    fail(conn, engine, -ENOMEM);
    return;
  }
  handshake->conn = conn;
  handshake->listener_id = listener->id;
  handshake->peer = *peer;
  handshake->started_ms = uv_now(engine->handshake_timer.loop);
  handshake->previous = engine->last_handshake;
  if (engine->last_handshake != NULL) engine->last_handshake->next = handshake;
  else engine->handshakes = handshake;
  engine->last_handshake = handshake;
  conn->handshake = handshake;
  if (!uv_is_active((uv_handle_t *)&engine->handshake_timer)) {
    uint64_t every = engine->handshake_timeout_ms < 1000 ? engine->handshake_timeout_ms : 1000;
    uv_timer_start(&engine->handshake_timer, on_handshake_timer, every, every > 0 ? every : 1);
  }
}

static void on_ready(connection_t *conn, engine_t *engine, uint32_t events) {
  if (conn->handshake != NULL) {
    progress_handshake(conn, engine);
    return;
  }
  if (events & EPOLLOUT) {
    flush(conn, engine);
    // A TLS read that had to write first goes on now.
    if (!conn->closing && conn->tls_wants_write) {
      conn->tls_wants_write = 0;
      receive(conn, engine);
    }
  }
  if (conn->closing) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn->reading) {
    receive(conn, engine);
    return;
  }
  // Reading resumed after backpressure, with input TLS had already taken from the socket.
  if (conn->reading && conn->ssl != NULL && SSL_has_pending(conn->ssl)) {
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
  napi_ref *const refs[] = {&engine->on_close, &engine->on_accept, &engine->on_data, &engine->on_tls_failed};
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
 * createEngine(upper: boolean, maxBuffered: number,
 *              onClose: (id, status, bytesReceived, bytesSent, closeCode?, wsError?) => void,
 *              onAccept: (listenerId, id, address, port, tls?) => void,
 *              onData: (id, bytes) => void, onTlsFailed: (listenerId, address, port, reason) => void)
 */
static napi_value create_engine(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (get_args(env, info, 6, argv) == NULL) return NULL;
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
  engine->handshake_timeout_ms = 10000;
  engine->max_message = 1024 * 1024;
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
  uv_timer_init(loop, &engine->handshake_timer);
  // Handshakes under way do not hold the loop open by themselves; their sockets do.
  uv_unref((uv_handle_t *)&engine->handshake_timer);
  engine->poll.data = engine->idle.data = engine->handshake_timer.data = engine;
  engine->handles = 3;
  // No connection yet: the set keeps the loop open only while one is live.
  uv_poll_start(&engine->poll, UV_READABLE, on_set_ready);
  uv_unref((uv_handle_t *)&engine->poll);
  if (napi_create_reference(env, argv[2], 1, &engine->on_close) != napi_ok || napi_create_reference(env, argv[3], 1, &engine->on_accept) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &engine->on_data) != napi_ok || napi_create_reference(env, argv[5], 1, &engine->on_tls_failed) != napi_ok ||
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

/**
 * Tells JavaScript: onAccept(listenerId, id, address, port[, tls]), with what the handshake
 * settled over TLS (see tls_details), or onAccept(listenerId, status) when accepting failed.
 */
static void report_accept(engine_t *engine, listener_t *listener, connection_t *conn, int status, const struct sockaddr_storage *peer) {
  napi_env env = engine->env;
  napi_handle_scope scope;
  if (engine->on_accept == NULL || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, args[5];
  size_t argc = 2;
  bool made = napi_get_reference_value(env, engine->on_accept, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
              napi_create_double(env, listener->id, &args[0]) == napi_ok;
  if (made && conn == NULL) {
    made = napi_create_int32(env, status, &args[1]) == napi_ok;
  } else if (made) {
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    port = format_address(peer, host);
    argc = conn->ssl != NULL ? 5 : 4;
    made = napi_create_double(env, conn->id, &args[1]) == napi_ok && napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &args[2]) == napi_ok &&
           napi_create_int32(env, port, &args[3]) == napi_ok && (conn->ssl == NULL || (args[4] = tls_details(env, conn->ssl)) != NULL);
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
    if (conn == NULL) {
      report_accept(engine, listener, NULL, made, NULL);
    } else if (listener->tls) {
      start_handshake(conn, engine, listener, &peer);
    } else {
      if (listener->websocket) conn->mode = MODE_HTTP;
      report_accept(engine, listener, conn, 0, &peer);
    }
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
 * acceptOn(engine, fd, tls, websocket): accepts the clients of the listening socket `fd` from
 * here on (on a duplicate: the caller closes its own), telling onAccept of each (over TLS, once
 * its handshake is done). Returns the listener's id.
 */
static napi_value accept_on(napi_env env, napi_callback_info info) {
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  napi_value argv[4];
  bool tls, websocket;
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  CHECK(napi_get_value_bool(env, argv[2], &tls));
  CHECK(napi_get_value_bool(env, argv[3], &websocket));
  engine_t *engine;
  int own_fd = duplicate_argument(env, info, &engine, "acceptOn");
  if (own_fd < 0) return NULL;
  if (tls && engine->tls == NULL) {
    close(own_fd);
    return throw_status(env, UV_EINVAL, "acceptOn (TLS without setTls)");
  }
  listener_t *listener = calloc(1, sizeof *listener);
  if (listener == NULL) {
    close(own_fd);
    return throw_status(env, UV_ENOMEM, "acceptOn");
  }
  listener->fd = own_fd;
  listener->tls = tls;
  listener->websocket = websocket;
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

/** counters(engine, id, out: Float64Array(4)): bytes received, bytes sent, bytes pending, control frames; false once closed. */
static napi_value js_counters(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed) return NULL;
  double *out = float64_array(env, argv[2], 4);
  if (out == NULL) return NULL;
  napi_value live;
  CHECK(napi_get_boolean(env, conn != NULL, &live));
  if (conn == NULL) return live;
  out[0] = (double)conn->bytes_received;
  out[1] = (double)conn->bytes_sent;
  out[2] = (double)pending(conn);
  out[3] = (double)conn->control_frames;
  return live;
}

/** totals(engine, out: Float64Array(4)): bytes received, bytes sent, backpressure pauses, WebSocket messages. */
static napi_value js_totals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine = engine_arg(env, argv[0]);
  double *out = engine == NULL ? NULL : float64_array(env, argv[1], 4);
  if (out == NULL) return NULL;
  out[0] = (double)engine->bytes_received;
  out[1] = (double)engine->bytes_sent;
  out[2] = (double)engine->backpressure_pauses;
  out[3] = (double)engine->messages;
  return NULL;
}

/** localAddress(engine, id): [host, port] the client reached; undefined once closed. */
static napi_value local_address(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool failed;
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed || conn == NULL) return NULL;
  struct sockaddr_storage local;
  socklen_t length = sizeof local;
  if (getsockname(conn->fd, (struct sockaddr *)&local, &length) < 0) return NULL;
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0;
  port = format_address(&local, host);
  napi_value result, value;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &value));
  CHECK(napi_set_element(env, result, 0, value));
  CHECK(napi_create_int32(env, port, &value));
  CHECK(napi_set_element(env, result, 1, value));
  return result;
}

/** tlsUnavailable(): why TLS cannot run in C here (a string), or null when it can. */
static napi_value js_tls_unavailable(napi_env env, napi_callback_info info) {
  (void)info;
  const char *reason = tls_unavailable_reason();
  napi_value result;
  if (reason == NULL) CHECK(napi_get_null(env, &result));
  else CHECK(napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &result));
  return result;
}

/** The bytes of a Buffer argument; false with an error thrown otherwise. */
static bool buffer_arg(napi_env env, napi_value value, void **data, size_t *length) {
  bool is_buffer = false;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, NULL, "expected a Buffer");
    return false;
  }
  return napi_get_buffer_info(env, value, data, length) == napi_ok;
}

/**
 * setTls(engine, cert: Buffer, key: Buffer, ca: Buffer | null, alpn: Buffer | null, handshakeTimeoutMs):
 * the context TLS listeners serve with (PEM text; ALPN in wire format). Throws an Error with
 * code ERR_TLS_CONTEXT and OpenSSL's reason when it cannot be made.
 */
static napi_value set_tls(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (get_args(env, info, 6, argv) == NULL) return NULL;
  engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  if (tls_unavailable_reason() != NULL) return throw_status(env, UV_ENOTSUP, "setTls");
  void *cert, *key, *ca = NULL, *alpn = NULL;
  size_t cert_length, key_length, ca_length = 0, alpn_length = 0;
  napi_valuetype type;
  if (!buffer_arg(env, argv[1], &cert, &cert_length) || !buffer_arg(env, argv[2], &key, &key_length)) return NULL;
  CHECK(napi_typeof(env, argv[3], &type));
  if (type != napi_null && !buffer_arg(env, argv[3], &ca, &ca_length)) return NULL;
  CHECK(napi_typeof(env, argv[4], &type));
  if (type != napi_null && !buffer_arg(env, argv[4], &alpn, &alpn_length)) return NULL;
  double timeout;
  CHECK(napi_get_value_double(env, argv[5], &timeout));
  char error[300];
  SSL_CTX *context = tls_server_context(cert, cert_length, key, key_length, ca, ca_length, alpn, alpn_length, error, sizeof error);
  if (context == NULL) {
    napi_throw_error(env, "ERR_TLS_CONTEXT", error);
    return NULL;
  }
  tls_free_context(engine->tls);
  engine->tls = context;
  engine->handshake_timeout_ms = timeout > 0 ? (uint64_t)timeout : 1;
  return NULL;
}

/** setWebSocket(engine, maxMessage): the largest message WebSocket listeners take. */
static napi_value set_websocket(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  engine_t *engine = engine_arg(env, argv[0]);
  if (engine == NULL) return NULL;
  double max_message;
  CHECK(napi_get_value_double(env, argv[1], &max_message));
  engine->max_message = max_message >= 1 ? (uint64_t)max_message : 1;
  return NULL;
}

/**
 * send(engine, id, bytes: Buffer, kind): 0 the bytes as they are (a hello line, an HTTP
 * response), 1 a text and 2 a binary WebSocket message. Not counted here: JavaScript counts
 * what it sends. Nothing once closed, or once output has ended.
 */
static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool failed;
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed) return NULL;
  void *data;
  size_t length;
  int32_t kind;
  if (!buffer_arg(env, argv[2], &data, &length)) return NULL;
  CHECK(napi_get_value_int32(env, argv[3], &kind));
  if (conn == NULL || conn->closing || conn->write_ended || length == 0) return NULL;
  if (kind == 0) {
    send_bytes(conn, engine, data, length, 0);
    return NULL;
  }
  if (conn->close_sent) return NULL;
  uint8_t header[10];
  size_t header_length = ws_server_header_length(length);
  ws_write_server_header(header, kind == 1 ? WS_TEXT : WS_BINARY, length);
  send_bytes(conn, engine, (const char *)header, header_length, 0);
  if (!conn->closing) send_bytes(conn, engine, data, length, 0);
  return NULL;
}

/**
 * upgrade(engine, id, response: Buffer, rest: Buffer): sends the HTTP response that accepts a
 * WebSocket upgrade; from here on the connection is frames, starting with `rest` (what came
 * after the request).
 */
static napi_value upgrade(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool failed;
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed) return NULL;
  void *response, *rest;
  size_t response_length, rest_length;
  if (!buffer_arg(env, argv[2], &response, &response_length) || !buffer_arg(env, argv[3], &rest, &rest_length)) return NULL;
  if (conn == NULL || conn->closing || conn->mode != MODE_HTTP) return NULL;
  send_bytes(conn, engine, response, response_length, 0);
  if (conn->closing) return NULL;
  conn->mode = MODE_FRAMES;
  // Unmasked in place, and a reply's header written before it: the engine's copy, not JavaScript's.
  if (rest_length > 0 && append(&conn->inbox, rest, rest_length, MESSAGE_HEADROOM) == 0) {
    buffer_t *inbox = conn->inbox;
    conn->inbox = NULL;
    ws_receive(conn, engine, inbox->bytes + inbox->start, inbox->end - inbox->start);
    free(inbox);
  } else if (rest_length > 0) {
    fail(conn, engine, -ENOMEM);
  }
  return NULL;
}

/**
 * closeWebSocket(engine, id, code): a close frame with `code` (1001 going away, 1011 internal
 * error) after every queued reply; FIN once the client answers it. Before the upgrade, FIN.
 */
static napi_value close_websocket(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  engine_t *engine;
  connection_t *conn = connection_args(env, argv, &engine, &failed);
  if (failed) return NULL;
  int32_t code;
  CHECK(napi_get_value_int32(env, argv[2], &code));
  if (conn == NULL || conn->closing) return NULL;
  if (conn->mode != MODE_FRAMES) {
    finish(conn, engine);
    return NULL;
  }
  send_close(conn, engine, (uint16_t)code, code == 1001 ? "going away" : "internal error");
  if (conn->frames_done) finish(conn, engine);
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
      EXPORT_FUNCTION("tlsUnavailable", js_tls_unavailable),
      EXPORT_FUNCTION("localAddress", local_address),
      EXPORT_FUNCTION("setTls", set_tls),
      EXPORT_FUNCTION("setWebSocket", set_websocket),
      EXPORT_FUNCTION("send", js_send),
      EXPORT_FUNCTION("upgrade", upgrade),
      EXPORT_FUNCTION("closeWebSocket", close_websocket),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
