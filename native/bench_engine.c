// The bench engine: `echoplex bench` connections over plain TCP, read, verified and answered by C callbacks on Node's event loop.
//
// In TypeScript the load generator pays one JavaScript callback per read, as the server did
// before its engine (echo_engine.c), and falls short of a C epoll load generator's message
// rate from one core (BENCHMARKS.md has the figures). A connection opened here is
// read, verified byte by byte, timed and answered in C. JavaScript (src/bench/native-bench.ts)
// keeps every decision about the run: it opens the connections, moves the phases, and records
// each reply's latency in its HDR histogram, from a batch of (sent at, received at) pairs that
// this file hands over once per turn of the event loop instead of once per read.
//
// Semantics mirror src/bench/connection.ts and src/bench/run.ts: every message is unique, built
// as src/bench/message.ts builds it (the connection's number and the sequence number in hex,
// then the run's template rotated by an amount derived from them); replies are framed by the
// expected reply's length and compared with the reply owed next. A frame that is not that
// reply is kept whole and handed to JavaScript, which classifies it (crossed, stale, ...) and
// says which owed message it stands for: the rules live there, not here. Replies read in one
// turn are answered together at the end of it (the check phase, where setImmediate runs),
// while the run is sending in the closed loop and its send budget lasts. In the open loop the
// schedule stays in JavaScript, which sends through benchSend; replies are only verified and timed.
//
// Two layers may sit between the socket and the messages, as in the server's engine: TLS on
// Node's own OpenSSL (tls.c), through memory BIOs on the libuv stream, and WebSocket frames
// (websocket.c), masked on the way out, after an HTTP upgrade whose request and answer
// JavaScript writes and judges. A WebSocket message must be one whole reply of the kind sent;
// one that is not is handed to JavaScript, which counts it.

#include <uv.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <stdio.h>

#include "engines.h"
#include "glue.h"
#include "tls.h"
#include "websocket.h"

#define READ_BUFFER_BYTES (64 * 1024)
/** The longest upgrade response head read, as Node's HTTP parser allows by default. */
#define MAX_RESPONSE_HEAD (16 * 1024)
/** The WebSocket frame header the bench writes before each message: up to 10 bytes, and the mask. */
#define WS_CLIENT_HEADER_MAX 14

/** Where a connection is on its way to carrying messages. */
enum { STAGE_TLS, STAGE_UPGRADE, STAGE_OPEN };
/** What the payload of the WebSocket frame being read goes to. */
enum { FRAME_STREAMED, FRAME_COLLECTED, FRAME_CONTROL };

typedef struct bench_connection bench_connection_t;

typedef struct bench {
  napi_env env;
  /** onReplies(count): `count` pairs are waiting in the batch. */
  napi_ref on_replies;
  /** onClose(id, status, owed, verifyResult, reason): a connection closed; `owed` replies never came. */
  napi_ref on_close;
  /** onWrong(id, frame, head, next, extra) -> what it stands for: a frame that is not the reply owed. */
  napi_ref on_wrong;
  /** onOpen(id, head) -> ok: TLS is up, and over WebSocket the upgrade's answer `head` came. */
  napi_ref on_open;
  /** onWrongMessage(id, start, length) -> what it stands for: a WebSocket message that is not one reply of the kind sent. */
  napi_ref on_wrong_message;
  /** The JavaScript object that is `this` for every callback. */
  napi_ref receiver;
  /** The batch's Float64Array, kept alive while the engine writes into it. */
  napi_ref batch_ref;
  napi_async_context async_context;
  /** (sent at, received at) pairs in performance.now() milliseconds. */
  double *batch;
  size_t batch_pairs;
  size_t batch_count;
  /** The layout of message.ts: [id][template rotated][tail], and replies [prefix][id][reply template rotated][reply tail]. */
  unsigned char *template;
  unsigned char *reply_template;
  size_t filler_length;
  unsigned char *tail;
  unsigned char *reply_tail;
  size_t tail_length;
  size_t reply_tail_length;
  unsigned char *prefix;
  size_t prefix_length;
  unsigned connection_digits;
  unsigned sequence_digits;
  /** Sequence numbers are written modulo 16^sequence_digits. */
  uint64_t sequence_mask;
  size_t message_length;
  size_t reply_length;
  /** The reply owed next on the connection being read, built per frame. */
  unsigned char *expected;
  /** Messages built for a write that the kernel takes at once. */
  char *scratch;
  size_t scratch_length;
  /** Added to uv_hrtime() in milliseconds to read performance.now()'s clock. */
  double clock_offset;
  /** Replies are answered with new messages: the closed loop while the run sends. */
  int answering;
  /** Messages still allowed to be sent; INFINITY unless the run is a fixed number of messages. */
  double send_budget;
  /** Totals for JavaScript to take its deltas from (see totals()). */
  double sent;
  /** Connections with replies read this turn, answered in the check phase. */
  bench_connection_t **to_answer;
  size_t answer_count;
  size_t answer_capacity;
  uv_check_t check;
  /** One buffer for every read: each chunk is verified before the next read. */
  char *read_buffer;
  /** The client context (NULL: plain TCP), the host its certificates must name, and a buffer for what it decrypts. */
  SSL_CTX *tls;
  char *host;
  char *plain_buffer;
  /** Messages go as WebSocket frames of this opcode (text or binary); 0 for a plain stream. */
  uint8_t ws_opcode;
  /** xorshift64 state for the frames' masks. */
  uint64_t mask_state;
  /** Connections by the id JavaScript names them with. */
  slot_table_t connections;
  /** The JavaScript engine object, the check handle, and every connection not yet released. */
  int refs;
} bench_t;

/**
 * What only a connection over TLS or WebSocket needs: allocated for those alone, so that a plain
 * connection, the one held by the thousand, carries none of it.
 */
typedef struct {
  /** Why the TLS handshake failed (NULL: it did not), and the certificate check's result. */
  char *reason;
  long verify_result;
  /** The upgrade request until it is sent, then the answer's head as it comes. */
  char *http_head;
  size_t http_head_length;
  /** A frame header being read, the frame being read, and a message of several frames or a wrong one. */
  uint64_t frame_left;
  uint64_t message_length;
  /** The collected message's first reply_length bytes. */
  unsigned char *message;
  /** A control frame's payload (at most 125 bytes), which may come between a message's frames. */
  unsigned char *control;
  uint8_t ws_header[WS_CLIENT_HEADER_MAX];
  uint8_t ws_header_have;
  uint8_t frame_kind;
  uint8_t frame_opcode;
  uint8_t message_opcode;
  uint8_t control_length;
  unsigned frame_fin : 1;
  unsigned message_open : 1;
} layers_t;

/** Send times kept in the connection itself, before a deeper pipeline needs a ring of its own. */
#define INLINE_SEND_TIMES 2

struct bench_connection {
  uv_tcp_t tcp;
  bench_t *bench;
  /** The id JavaScript names it by (a slot of bench->connections), until it has heard of the close. */
  double id;
  /** The number every message of this connection carries. */
  uint64_t number;
  /** Sequence numbers: the oldest owed (`head_sequence`), and the next to send. */
  uint64_t head_sequence;
  uint64_t next_sequence;
  /** Send times of messages head..next-1 in a ring (NaN: answered out of order), oldest first. */
  double *send_times;
  double inline_send_times[INLINE_SEND_TIMES];
  uint32_t capacity;
  uint32_t head;
  /** Messages in the ring (next - head), and those of them still owed. */
  uint32_t count;
  uint32_t owed;
  /** Bytes of the current reply frame read so far. */
  uint32_t offset_in_reply;
  /** Replies read this turn, not answered yet. */
  uint32_t answer_due;
  /** The first error, as a negative libuv status; 0 for none. */
  int error;
  /** The libuv handle until its close callback, and a place in to_answer. */
  int refs;
  unsigned frame_wrong : 1;
  /** The current frame began with nothing owed. */
  unsigned frame_extra : 1;
  unsigned closing : 1;
  unsigned stage : 2;
  /** The current frame, once it is known not to be the reply owed: kept whole for JavaScript. */
  unsigned char *frame;
  /** TLS (NULL: plain TCP). */
  SSL *ssl;
  /** NULL over plain TCP. */
  layers_t *layers;
};

static double clock_ms(const bench_t *bench) {
  return (double)uv_hrtime() / 1e6 + bench->clock_offset;
}

static void bench_release(bench_t *bench) {
  if (--bench->refs > 0) return;
  free(bench->template);
  free(bench->reply_template);
  free(bench->tail);
  free(bench->reply_tail);
  free(bench->prefix);
  free(bench->expected);
  free(bench->scratch);
  free(bench->to_answer);
  free(bench->read_buffer);
  free(bench->plain_buffer);
  free(bench->host);
  slots_free(&bench->connections);
  tls_free_context(bench->tls);
  free(bench);
}

static void connection_release(bench_connection_t *conn) {
  if (--conn->refs > 0) return;
  bench_t *bench = conn->bench;
  if (conn->send_times != conn->inline_send_times) free(conn->send_times);
  free(conn->frame);
  layers_t *layers = conn->layers;
  if (layers != NULL) {
    free(layers->reason);
    free(layers->http_head);
    free(layers->message);
    free(layers->control);
    free(layers);
  }
  if (conn->ssl != NULL) SSL_free(conn->ssl);
  free(conn);
  bench_release(bench);
}

/** Hands the batch to JavaScript, which records every pair before it returns. */
static void flush_replies(bench_t *bench) {
  if (bench->batch_count == 0 || bench->on_replies == NULL) return;
  size_t count = bench->batch_count;
  bench->batch_count = 0;
  call_with_count(bench->env, bench->async_context, bench->receiver, bench->on_replies, (uint32_t)count);
}

static void record_reply(bench_t *bench, double sent_at, double received_at) {
  // After closeBench nobody records: a late reply is dropped.
  if (bench->batch == NULL) return;
  if (bench->batch_count == bench->batch_pairs) flush_replies(bench);
  bench->batch[2 * bench->batch_count] = sent_at;
  bench->batch[2 * bench->batch_count + 1] = received_at;
  bench->batch_count++;
}

static void on_closed(uv_handle_t *handle);
static void send_goodbye(bench_connection_t *conn);

/** Closes at once; a connection the bench closes itself (status 0) says goodbye first, as far as the kernel takes it. */
static void close_connection(bench_connection_t *conn, int status) {
  if (conn->closing) return;
  conn->closing = 1;
  if (conn->error == 0) conn->error = status;
  if (status == 0) send_goodbye(conn);
  uv_close((uv_handle_t *)&conn->tcp, on_closed);
}

static int push_send_time(bench_connection_t *conn, double stamp) {
  if (conn->count == conn->capacity) {
    if (conn->capacity >= UINT32_MAX / 2) return UV_ENOMEM;
    uint32_t capacity = conn->capacity * 2;
    double *grown = malloc(capacity * sizeof *grown);
    if (grown == NULL) return UV_ENOMEM;
    for (uint32_t i = 0; i < conn->count; i++) grown[i] = conn->send_times[(conn->head + i) % conn->capacity];
    if (conn->send_times != conn->inline_send_times) free(conn->send_times);
    conn->send_times = grown;
    conn->capacity = capacity;
    conn->head = 0;
  }
  conn->send_times[(conn->head + conn->count) % conn->capacity] = stamp;
  conn->count++;
  conn->owed++;
  conn->next_sequence++;
  return 0;
}

/** Takes the oldest owed message off, and any answered out of order right after it; returns its send time. */
static double shift_send_time(bench_connection_t *conn) {
  double stamp = conn->send_times[conn->head];
  conn->head = (conn->head + 1) % conn->capacity;
  conn->count--;
  conn->owed--;
  conn->head_sequence++;
  while (conn->count > 0 && isnan(conn->send_times[conn->head])) {
    conn->head = (conn->head + 1) % conn->capacity;
    conn->count--;
    conn->head_sequence++;
  }
  return stamp;
}

static const char HEX[] = "0123456789ABCDEF";

static void write_hex(unsigned char *into, uint64_t value, unsigned digits) {
  for (unsigned i = digits; i > 0; i--) {
    into[i - 1] = (unsigned char)HEX[value & 15];
    value >>= 4;
  }
}

/** The template's rotation for a message, as message.ts computes it. */
static size_t rotation(const bench_t *bench, uint64_t number, uint64_t sequence) {
  size_t length = bench->filler_length;
  if (length == 0) return 0;
  return (size_t)(((number % length) * 7 + sequence % length) % length);
}

/** Writes [id][template rotated][tail] for (number, sequence) at `into`, as message.ts does. */
static void write_message(const bench_t *bench, unsigned char *into, uint64_t number, uint64_t sequence, const unsigned char *template, const unsigned char *tail, size_t tail_length) {
  write_hex(into, number, bench->connection_digits);
  write_hex(into + bench->connection_digits, sequence & bench->sequence_mask, bench->sequence_digits);
  into += bench->connection_digits + bench->sequence_digits;
  size_t r = rotation(bench, number, sequence);
  memcpy(into, template + r, bench->filler_length - r);
  memcpy(into + bench->filler_length - r, template, r);
  memcpy(into + bench->filler_length, tail, tail_length);
}

/** Builds the reply owed for (number, sequence) in bench->expected. */
static void build_expected(bench_t *bench, uint64_t number, uint64_t sequence) {
  memcpy(bench->expected, bench->prefix, bench->prefix_length);
  write_message(bench, bench->expected + bench->prefix_length, number, sequence, bench->reply_template, bench->reply_tail, bench->reply_tail_length);
}

typedef struct {
  uv_write_t req;
  /** The bytes the kernel did not take at once, owned by the write. */
  char bytes[];
} owned_write_t;

static void on_written(uv_write_t *req, int status) {
  bench_connection_t *conn = req->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED) close_connection(conn, status);
}

/** Writes `length` bytes: what the kernel takes at once, the rest copied into a libuv write. */
static void write_bytes(bench_connection_t *conn, const char *bytes, size_t length) {
  uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned int)length);
  // uv_try_write declines (EAGAIN) while earlier writes are queued, so the order holds.
  int written = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
  if (written == (int)length) return;
  if (written < 0 && written != UV_EAGAIN) {
    close_connection(conn, written);
    return;
  }
  size_t taken = written > 0 ? (size_t)written : 0;
  owned_write_t *write = malloc(sizeof *write + (length - taken));
  if (write == NULL) {
    close_connection(conn, UV_ENOMEM);
    return;
  }
  memcpy(write->bytes, bytes + taken, length - taken);
  write->req.data = conn;
  buf = uv_buf_init(write->bytes, (unsigned int)(length - taken));
  int status = uv_write(&write->req, (uv_stream_t *)&conn->tcp, &buf, 1, on_written);
  if (status < 0) {
    free(write);
    close_connection(conn, status);
  }
}

/** Writes what TLS has queued for the wire. */
static void flush_tls(bench_connection_t *conn) {
  BIO *out = SSL_get_wbio(conn->ssl);
  char *bytes;
  long length = BIO_get_mem_data(out, &bytes);
  if (length <= 0) return;
  write_bytes(conn, bytes, (size_t)length);
  (void)BIO_reset(out);
}

/** Writes application bytes: through TLS where the connection has it. */
static void conn_write(bench_connection_t *conn, const char *bytes, size_t length) {
  if (conn->ssl == NULL) {
    write_bytes(conn, bytes, length);
    return;
  }
  size_t written;
  if (!SSL_write_ex(conn->ssl, bytes, length, &written)) {
    ERR_clear_error();
    close_connection(conn, UV_EPROTO);
    return;
  }
  flush_tls(conn);
}

static void next_mask(bench_t *bench, uint8_t mask[4]) {
  uint64_t x = bench->mask_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  bench->mask_state = x;
  memcpy(mask, &x, 4);
}

/** Writes one masked frame (a client's) with `payload`, through TLS where there is TLS. */
static void write_frame(bench_connection_t *conn, uint8_t opcode, const unsigned char *payload, size_t length) {
  unsigned char frame[WS_CLIENT_HEADER_MAX + 125];
  uint8_t mask[4];
  next_mask(conn->bench, mask);
  if (length > 125) length = 125;
  size_t at = ws_write_client_header(frame, opcode, length, mask);
  memcpy(frame + at, payload, length);
  ws_unmask(frame + at, length, mask);
  conn_write(conn, (const char *)frame, at + length);
}

/** Our side of a clean close: a close frame (1000) over WebSocket, close_notify over TLS. */
static void send_goodbye(bench_connection_t *conn) {
  if (conn->stage != STAGE_OPEN && conn->ssl == NULL) return;
  if (conn->stage == STAGE_OPEN && conn->bench->ws_opcode != 0) {
    static const unsigned char NORMAL[2] = {0x03, 0xE8};
    write_frame(conn, WS_CLOSE, NORMAL, sizeof NORMAL);
  }
  if (conn->ssl != NULL && SSL_is_init_finished(conn->ssl)) {
    (void)SSL_shutdown(conn->ssl);
    ERR_clear_error();
    flush_tls(conn);
  }
}

/** Sends up to `count` messages stamped `stamp`, within the send budget; returns how many. */
static unsigned send_messages(bench_connection_t *conn, unsigned count, double stamp) {
  bench_t *bench = conn->bench;
  if (conn->closing) return 0;
  if ((double)count > bench->send_budget) count = (unsigned)bench->send_budget;
  if (count == 0) return 0;
  size_t header = bench->ws_opcode == 0 ? 0 : ws_server_header_length(bench->message_length) + 4;
  size_t each = header + bench->message_length;
  size_t needed = (size_t)count * each;
  if (needed > bench->scratch_length) {
    char *grown = realloc(bench->scratch, needed);
    if (grown == NULL) {
      close_connection(conn, UV_ENOMEM);
      return 0;
    }
    bench->scratch = grown;
    bench->scratch_length = needed;
  }
  bench->send_budget -= count;
  bench->sent += count;
  for (unsigned i = 0; i < count; i++) {
    unsigned char *at = (unsigned char *)bench->scratch + i * each;
    uint8_t mask[4];
    if (header > 0) {
      next_mask(bench, mask);
      ws_write_client_header(at, bench->ws_opcode, bench->message_length, mask);
    }
    write_message(bench, at + header, conn->number, conn->next_sequence, bench->template, bench->tail, bench->tail_length);
    if (header > 0) ws_unmask(at + header, bench->message_length, mask);
    int status = push_send_time(conn, stamp);
    if (status < 0) {
      close_connection(conn, status);
      return i;
    }
  }
  conn_write(conn, bench->scratch, needed);
  return count;
}

static void queue_answer(bench_connection_t *conn, unsigned replies) {
  bench_t *bench = conn->bench;
  if (conn->answer_due == 0) {
    if (bench->answer_count == bench->answer_capacity) {
      size_t capacity = bench->answer_capacity < 64 ? 64 : bench->answer_capacity * 2;
      bench_connection_t **grown = realloc(bench->to_answer, capacity * sizeof *grown);
      if (grown == NULL) {
        close_connection(conn, UV_ENOMEM);
        return;
      }
      bench->to_answer = grown;
      bench->answer_capacity = capacity;
    }
    bench->to_answer[bench->answer_count++] = conn;
    conn->refs++;
  }
  conn->answer_due += replies;
}

/** The end of a turn: answer every reply read in it, then let JavaScript record them. */
static void on_check(uv_check_t *check) {
  bench_t *bench = check->data;
  if (bench->answer_count > 0) {
    double now = clock_ms(bench);
    for (size_t i = 0; i < bench->answer_count; i++) {
      bench_connection_t *conn = bench->to_answer[i];
      if (bench->answering) send_messages(conn, conn->answer_due, now);
      conn->answer_due = 0;
      connection_release(conn);
    }
    bench->answer_count = 0;
  }
  flush_replies(bench);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  bench_connection_t *conn = handle->data;
  *buf = uv_buf_init(conn->bench->read_buffer, READ_BUFFER_BYTES);
}

/** Calls a JavaScript callback about `conn` (its id the first argument, the receiver `this`); its result in `*out`, or false. */
static bool call_about(bench_connection_t *conn, napi_ref callback_ref, size_t argc, napi_value *argv, napi_value *out) {
  bench_t *bench = conn->bench;
  napi_env env = bench->env;
  napi_value receiver, callback;
  if (bench->receiver == NULL || callback_ref == NULL || napi_get_reference_value(env, bench->receiver, &receiver) != napi_ok ||
      napi_get_reference_value(env, callback_ref, &callback) != napi_ok || napi_create_double(env, conn->id, &argv[0]) != napi_ok)
    return false;
  napi_status status = napi_make_callback(env, bench->async_context, receiver, callback, argc, argv, out);
  if (status == napi_pending_exception) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    return false;
  }
  return status == napi_ok;
}

/**
 * Hands a whole wrong frame to JavaScript, which counts it by its kind and returns what it
 * stands for: -1 nothing (a frame too many), -2 the oldest message owed, or the sequence
 * number of a later one (answered out of order). Returns 1 if an owed message was taken.
 */
static unsigned wrong_frame(bench_connection_t *conn) {
  bench_t *bench = conn->bench;
  // Replies already read are recorded first, in the order they came.
  flush_replies(bench);
  napi_env env = bench->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return 0;
  double takes = -1;
  napi_value argv[5], result;
  void *copy;
  if (napi_create_buffer_copy(env, bench->reply_length, conn->frame, &copy, &argv[1]) != napi_ok || napi_create_double(env, (double)conn->head_sequence, &argv[2]) != napi_ok ||
      napi_create_double(env, (double)conn->next_sequence, &argv[3]) != napi_ok || napi_get_boolean(env, conn->frame_extra, &argv[4]) != napi_ok ||
      !call_about(conn, bench->on_wrong, 5, argv, &result) || napi_get_value_double(env, result, &takes) != napi_ok)
    takes = -1;
  napi_close_handle_scope(env, scope);
  if (conn->closing || takes == -1 || conn->owed == 0) return 0;
  if (takes == -2 || takes == (double)conn->head_sequence) {
    shift_send_time(conn);
    return 1;
  }
  double index = takes - (double)conn->head_sequence;
  if (index <= 0 || index >= (double)conn->count) return 0;
  double *slot = &conn->send_times[(conn->head + (size_t)index) % conn->capacity];
  if (isnan(*slot)) return 0;
  *slot = NAN;
  conn->owed--;
  return 1;
}

/**
 * Verifies `length` bytes of the reply stream: each reply framed by its length, compared with
 * the one owed, timed, and (in the closed loop) answered at the end of the turn.
 */
static void verify_stream(bench_connection_t *conn, const unsigned char *bytes, size_t length, double now) {
  bench_t *bench = conn->bench;
  size_t offset = 0;
  unsigned answered = 0;
  size_t size = bench->reply_length;
  int built = 0;
  while (offset < length) {
    if (conn->offset_in_reply == 0) {
      // With nothing owed, whatever comes is a frame too many: kept whole and classified.
      conn->frame_extra = conn->frame_wrong = conn->owed == 0;
      built = 0;
    }
    size_t at = conn->offset_in_reply;
    size_t take = size - at;
    if (take > length - offset) take = length - offset;
    if (!conn->frame_wrong) {
      if (!built) build_expected(bench, conn->number, conn->head_sequence);
      built = 1;
      if (memcmp(bytes + offset, bench->expected + at, take) != 0) {
        conn->frame_wrong = 1;
        if (conn->frame == NULL && (conn->frame = malloc(size)) == NULL) {
          close_connection(conn, UV_ENOMEM);
          return;
        }
        memcpy(conn->frame, bench->expected, at);
      }
    } else if (conn->frame == NULL && (conn->frame = malloc(size)) == NULL) {
      close_connection(conn, UV_ENOMEM);
      return;
    }
    if (conn->frame_wrong) memcpy(conn->frame + at, bytes + offset, take);
    offset += take;
    conn->offset_in_reply += take;
    if (conn->offset_in_reply < size) continue;
    conn->offset_in_reply = 0;
    if (!conn->frame_wrong) {
      answered++;
      // A full batch goes to JavaScript at once, which may end the run and close this connection.
      record_reply(bench, shift_send_time(conn), now);
    } else {
      answered += wrong_frame(conn);
    }
    if (conn->closing) return;
  }
  if (answered > 0 && bench->answering) queue_answer(conn, answered);
}

/** TLS and any upgrade are done: JavaScript counts the connection open, or (false) refuses the upgrade's answer. */
static bool tell_open(bench_connection_t *conn, const char *head, size_t head_length) {
  napi_env env = conn->bench->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  napi_value argv[2], result;
  void *copy;
  bool ok = false;
  if ((head == NULL ? napi_get_undefined(env, &argv[1]) : napi_create_buffer_copy(env, head_length, head, &copy, &argv[1])) == napi_ok &&
      call_about(conn, conn->bench->on_open, 2, argv, &result))
    napi_get_value_bool(env, result, &ok);
  napi_close_handle_scope(env, scope);
  return ok && !conn->closing;
}

/** A WebSocket message that is not one reply of the kind sent: JavaScript counts it and says what it stands for. */
static void wrong_message(bench_connection_t *conn) {
  layers_t *layers = conn->layers;
  bench_t *bench = conn->bench;
  flush_replies(bench);
  napi_env env = bench->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  size_t kept = layers->message_length < bench->reply_length ? (size_t)layers->message_length : bench->reply_length;
  napi_value argv[3], result;
  void *copy;
  double takes = -1;
  if (napi_create_buffer_copy(env, kept, layers->message != NULL ? (const void *)layers->message : "", &copy, &argv[1]) != napi_ok ||
      napi_create_double(env, (double)layers->message_length, &argv[2]) != napi_ok || !call_about(conn, bench->on_wrong_message, 3, argv, &result) ||
      napi_get_value_double(env, result, &takes) != napi_ok)
    takes = -1;
  napi_close_handle_scope(env, scope);
  if (conn->closing || takes != -2 || conn->owed == 0) return;
  shift_send_time(conn);
  if (bench->answering) queue_answer(conn, 1);
}

static void begin_frame(bench_connection_t *conn, const ws_header_t *frame) {
  layers_t *layers = conn->layers;
  bench_t *bench = conn->bench;
  layers->frame_opcode = frame->opcode;
  layers->frame_fin = frame->fin;
  layers->frame_left = frame->length;
  if (frame->opcode & 0x8) {
    layers->frame_kind = FRAME_CONTROL;
    layers->control_length = 0;
    return;
  }
  bool continuation = frame->opcode == WS_CONTINUATION;
  if (continuation != layers->message_open) {
    close_connection(conn, UV_EPROTO);
    return;
  }
  if (!continuation) {
    layers->message_opcode = frame->opcode;
    layers->message_length = 0;
    // The usual message, one frame of one reply, is verified where it lies.
    if (frame->fin && frame->opcode == bench->ws_opcode && frame->length == bench->reply_length) {
      layers->frame_kind = FRAME_STREAMED;
      return;
    }
    layers->message_open = 1;
  }
  layers->frame_kind = FRAME_COLLECTED;
}

static void end_frame(bench_connection_t *conn, double now) {
  layers_t *layers = conn->layers;
  bench_t *bench = conn->bench;
  if (layers->frame_kind == FRAME_STREAMED) return;
  if (layers->frame_kind == FRAME_COLLECTED) {
    if (!layers->frame_fin) return;
    layers->message_open = 0;
    if (layers->message_opcode == bench->ws_opcode && layers->message_length == bench->reply_length) verify_stream(conn, layers->message, bench->reply_length, now);
    else wrong_message(conn);
    return;
  }
  if (layers->frame_opcode == WS_PING) {
    write_frame(conn, WS_PONG, layers->control, layers->control_length);
  } else if (layers->frame_opcode == WS_CLOSE) {
    // The server closes: its code goes back, as RFC 6455 5.5.1 asks, and the connection ends.
    write_frame(conn, WS_CLOSE, layers->control, layers->control_length >= 2 ? 2 : 0);
    close_connection(conn, UV_EOF);
  }
}

/** Reads WebSocket frames from application bytes; the payload of data frames goes to verify_stream. */
static void receive_frames(bench_connection_t *conn, const unsigned char *bytes, size_t length, double now) {
  layers_t *layers = conn->layers;
  bench_t *bench = conn->bench;
  size_t offset = 0;
  while (offset < length && !conn->closing) {
    if (layers->frame_left == 0) {
      // Between frames: the next header, which may come in pieces.
      size_t have = layers->ws_header_have;
      size_t take = sizeof layers->ws_header - have;
      if (take > length - offset) take = length - offset;
      memcpy(layers->ws_header + have, bytes + offset, take);
      ws_header_t frame;
      int header = ws_read_header(layers->ws_header, have + take, false, &frame);
      if (header < 0) {
        close_connection(conn, UV_EPROTO);
        return;
      }
      if (header == 0) {
        layers->ws_header_have = (uint8_t)(have + take);
        offset += take;
        continue;
      }
      layers->ws_header_have = 0;
      offset += (size_t)header - have;
      begin_frame(conn, &frame);
      if (conn->closing) return;
      if (layers->frame_left == 0) end_frame(conn, now);
      continue;
    }
    size_t take = length - offset;
    if (take > layers->frame_left) take = (size_t)layers->frame_left;
    const unsigned char *payload = bytes + offset;
    if (layers->frame_kind == FRAME_STREAMED) {
      verify_stream(conn, payload, take, now);
    } else if (layers->frame_kind == FRAME_CONTROL) {
      // At most 125 bytes: ws_read_header refuses longer control frames.
      if (layers->control == NULL && (layers->control = malloc(125)) == NULL) {
        close_connection(conn, UV_ENOMEM);
        return;
      }
      memcpy(layers->control + layers->control_length, payload, take);
      layers->control_length += (uint8_t)take;
    } else {
      // A collected message keeps its first reply_length bytes: enough to verify it, or to show what it was.
      if (layers->message == NULL && (layers->message = malloc(bench->reply_length)) == NULL) {
        close_connection(conn, UV_ENOMEM);
        return;
      }
      if (layers->message_length < bench->reply_length) {
        size_t keep = bench->reply_length - (size_t)layers->message_length;
        memcpy(layers->message + layers->message_length, payload, keep < take ? keep : take);
      }
      layers->message_length += take;
    }
    offset += take;
    layers->frame_left -= take;
    if (layers->frame_left == 0 && !conn->closing) end_frame(conn, now);
  }
}

/** Application bytes (decrypted, where there is TLS): the upgrade's answer first, then replies. */
static void receive_application(bench_connection_t *conn, const unsigned char *bytes, size_t length, double now) {
  layers_t *layers = conn->layers;
  bench_t *bench = conn->bench;
  if (conn->stage == STAGE_UPGRADE) {
    size_t take = MAX_RESPONSE_HEAD - layers->http_head_length;
    if (take > length) take = length;
    if (layers->http_head == NULL && (layers->http_head = malloc(MAX_RESPONSE_HEAD)) == NULL) {
      close_connection(conn, UV_ENOMEM);
      return;
    }
    memcpy(layers->http_head + layers->http_head_length, bytes, take);
    size_t before = layers->http_head_length;
    layers->http_head_length += take;
    // The head ends at the first blank line; what follows it is already frames.
    size_t from = before >= 3 ? before - 3 : 0;
    size_t end = 0;
    for (size_t i = from; i + 4 <= layers->http_head_length; i++) {
      if (memcmp(layers->http_head + i, "\r\n\r\n", 4) == 0) {
        end = i + 4;
        break;
      }
    }
    if (end == 0) {
      // Too long to be an answer: JavaScript hears it incomplete and says why.
      if (layers->http_head_length == MAX_RESPONSE_HEAD && !tell_open(conn, layers->http_head, layers->http_head_length)) close_connection(conn, UV_EPROTO);
      return;
    }
    if (!tell_open(conn, layers->http_head, end)) {
      close_connection(conn, UV_EPROTO);
      return;
    }
    free(layers->http_head);
    layers->http_head = NULL;
    layers->http_head_length = 0;
    conn->stage = STAGE_OPEN;
    size_t used = end - before;
    bytes += used;
    length -= used;
  }
  if (length == 0) return;
  if (bench->ws_opcode != 0) receive_frames(conn, bytes, length, now);
  else verify_stream(conn, bytes, length, now);
}

/** TLS is up: over WebSocket the upgrade request goes, else the connection is open. */
static void secured(bench_connection_t *conn) {
  layers_t *layers = conn->layers;
  if (conn->bench->ws_opcode == 0) {
    conn->stage = STAGE_OPEN;
    if (!tell_open(conn, NULL, 0)) close_connection(conn, UV_EPROTO);
    return;
  }
  conn->stage = STAGE_UPGRADE;
  conn_write(conn, layers->http_head, layers->http_head_length);
  free(layers->http_head);
  layers->http_head = NULL;
  layers->http_head_length = 0;
}

/** Records why TLS failed, in OpenSSL's words, for JavaScript to hear with the close. */
static void tls_failed(bench_connection_t *conn) {
  layers_t *layers = conn->layers;
  const char *verify = tls_verify_error(conn->ssl);
  char reason[256];
  if (verify != NULL) snprintf(reason, sizeof reason, "%s", verify);
  else tls_last_error(reason, sizeof reason);
  layers->verify_result = SSL_get_verify_result(conn->ssl);
  free(layers->reason);
  layers->reason = strdup(reason);
  close_connection(conn, UV_EPROTO);
}

/** Bytes from the wire, through TLS: the handshake, then what it decrypts. */
static void receive_tls(bench_connection_t *conn, const unsigned char *bytes, size_t length, double now) {
  bench_t *bench = conn->bench;
  SSL *ssl = conn->ssl;
  if (BIO_write(SSL_get_rbio(ssl), bytes, (int)length) != (int)length) {
    close_connection(conn, UV_ENOMEM);
    return;
  }
  if (conn->stage == STAGE_TLS) {
    int result = SSL_do_handshake(ssl);
    flush_tls(conn);
    if (result != 1) {
      int error = SSL_get_error(ssl, result);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) tls_failed(conn);
      return;
    }
    secured(conn);
  }
  while (!conn->closing) {
    size_t got;
    if (SSL_read_ex(ssl, bench->plain_buffer, READ_BUFFER_BYTES, &got)) {
      receive_application(conn, (const unsigned char *)bench->plain_buffer, got, now);
      continue;
    }
    int error = SSL_get_error(ssl, 0);
    // An alert after the handshake (TLS 1.3 refuses a client certificate only then) has its reason.
    if (error == SSL_ERROR_SSL) tls_failed(conn);
    else if (error == SSL_ERROR_ZERO_RETURN) close_connection(conn, UV_EOF);
    else if (error != SSL_ERROR_WANT_READ) close_connection(conn, UV_EPROTO);
    ERR_clear_error();
    break;
  }
  if (!conn->closing) flush_tls(conn);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  bench_connection_t *conn = stream->data;
  if (nread < 0) {
    // End of stream before the run ends is the server leaving: JavaScript counts it as closed.
    close_connection(conn, (int)nread);
    return;
  }
  double now = clock_ms(conn->bench);
  const unsigned char *bytes = (const unsigned char *)buf->base;
  if (conn->ssl != NULL) receive_tls(conn, bytes, (size_t)nread, now);
  else receive_application(conn, bytes, (size_t)nread, now);
}

/**
 * The handle is closed: JavaScript hears (id, status, replies owed, the certificate check's
 * result, why TLS failed or null) after the replies it has; the id names nothing from then on.
 */
static void on_closed(uv_handle_t *handle) {
  bench_connection_t *conn = handle->data;
  bench_t *bench = conn->bench;
  flush_replies(bench);
  napi_env env = bench->env;
  napi_handle_scope scope;
  if (bench->on_close != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
    const layers_t *layers = conn->layers;
    const char *reason = layers != NULL ? layers->reason : NULL;
    napi_value argv[5], result;
    if (napi_create_int32(env, conn->error, &argv[1]) == napi_ok && napi_create_uint32(env, conn->owed, &argv[2]) == napi_ok &&
        napi_create_int64(env, layers != NULL ? layers->verify_result : 0, &argv[3]) == napi_ok &&
        (reason == NULL ? napi_get_null(env, &argv[4]) : napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &argv[4])) == napi_ok)
      call_about(conn, bench->on_close, 5, argv, &result);
    napi_close_handle_scope(env, scope);
  }
  slots_remove(&bench->connections, conn->id);
  connection_release(conn);
}

static void on_check_closed(uv_handle_t *handle) {
  bench_release(handle->data);
}

// ---- Node-API glue ----

static const napi_type_tag BENCH_TAG = {0x6563686f706c6578ULL, 0x62656e6368000001ULL};

static bench_t *bench_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &BENCH_TAG, "expected a native bench");
}

/**
 * The connection the arguments (bench, id) name, or NULL: with an error thrown (`*failed`) if
 * they are not a bench and a number, quietly if the connection has closed since.
 */
static bench_connection_t *connection_args(napi_env env, const napi_value *argv, bool *failed) {
  bench_t *bench = bench_arg(env, argv[0]);
  *failed = bench == NULL;
  if (bench == NULL) return NULL;
  bench_connection_t *conn = slot_arg(env, argv[1], &bench->connections);
  napi_is_exception_pending(env, failed);
  return conn;
}

/** Drops the references into JavaScript; the engine answers nothing after this. */
static void bench_detach(napi_env env, bench_t *bench) {
  napi_ref *const refs[] = {&bench->on_replies, &bench->on_close, &bench->on_wrong, &bench->on_open, &bench->on_wrong_message, &bench->receiver, &bench->batch_ref};
  delete_references(env, refs, sizeof refs / sizeof refs[0]);
  bench->batch = NULL;
  bench->batch_pairs = 0;
  bench->batch_count = 0;
}

static void bench_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  bench_t *bench = data;
  bench_detach(env, bench);
  napi_async_destroy(env, bench->async_context);
  close_turn_check(&bench->check, on_check_closed);
  bench_release(bench);
}

/** Copies a Buffer's bytes (possibly none) into `*out`, which is never NULL on success. */
static int buffer_copy(napi_env env, napi_value value, unsigned char **out, size_t *length) {
  void *data;
  if (napi_get_buffer_info(env, value, &data, length) != napi_ok) return -1;
  *out = malloc(*length > 0 ? *length : 1);
  if (*out == NULL) return -1;
  if (*length > 0) memcpy(*out, data, *length);
  return 0;
}

/**
 * createBench(receiver, template, replyTemplate, tail, replyTail, prefix: Buffer,
 *             connectionDigits, sequenceDigits: number, batch: Float64Array, clockOffsetMs: number,
 *             onReplies, onClose, onWrong, onOpen, onWrongMessage)
 */
static napi_value create_bench(napi_env env, napi_callback_info info) {
  napi_value argv[15];
  if (get_args(env, info, 15, argv) == NULL) return NULL;
  uint32_t connection_digits, sequence_digits;
  double clock_offset;
  CHECK(napi_get_value_uint32(env, argv[6], &connection_digits));
  CHECK(napi_get_value_uint32(env, argv[7], &sequence_digits));
  CHECK(napi_get_value_double(env, argv[9], &clock_offset));
  size_t batch_values = 0;
  napi_typedarray_type type;
  void *batch_data;
  bool is_typed_array = false;
  CHECK(napi_is_typedarray(env, argv[8], &is_typed_array));
  if (!is_typed_array || napi_get_typedarray_info(env, argv[8], &type, &batch_values, &batch_data, NULL, NULL) != napi_ok || type != napi_float64_array || batch_values < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a Float64Array batch of at least 2");
    return NULL;
  }
  if (connection_digits > 13 || sequence_digits > 13) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "at most 13 hex digits of connection and sequence number");
    return NULL;
  }
  bench_t *bench = calloc(1, sizeof *bench);
  if (bench == NULL) return throw_status(env, UV_ENOMEM, "createBench");
  bench->refs = 1;
  size_t reply_filler_length = 0;
  if (buffer_copy(env, argv[1], &bench->template, &bench->filler_length) < 0 || buffer_copy(env, argv[2], &bench->reply_template, &reply_filler_length) < 0 ||
      buffer_copy(env, argv[3], &bench->tail, &bench->tail_length) < 0 || buffer_copy(env, argv[4], &bench->reply_tail, &bench->reply_tail_length) < 0 ||
      buffer_copy(env, argv[5], &bench->prefix, &bench->prefix_length) < 0 || reply_filler_length != bench->filler_length ||
      (bench->read_buffer = malloc(READ_BUFFER_BYTES)) == NULL) {
    bench_release(bench);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "the message layout must be Buffers, the two templates of one length");
    return NULL;
  }
  bench->connection_digits = connection_digits;
  bench->sequence_digits = sequence_digits;
  bench->sequence_mask = sequence_digits >= 16 ? UINT64_MAX : ((uint64_t)1 << (4 * sequence_digits)) - 1;
  size_t id_length = connection_digits + sequence_digits;
  bench->message_length = id_length + bench->filler_length + bench->tail_length;
  bench->reply_length = bench->prefix_length + id_length + bench->filler_length + bench->reply_tail_length;
  if (bench->message_length == 0 || (bench->expected = malloc(bench->reply_length)) == NULL) {
    bench_release(bench);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "messages must be at least a byte");
    return NULL;
  }
  bench->env = env;
  bench->batch = batch_data;
  bench->batch_pairs = batch_values / 2;
  bench->clock_offset = clock_offset;
  bench->send_budget = INFINITY;
  // Masks need only be unpredictable to whatever sits in the path (RFC 6455 10.3), not secret.
  if (uv_random(NULL, NULL, &bench->mask_state, sizeof bench->mask_state, 0, NULL) < 0 || bench->mask_state == 0) bench->mask_state = uv_hrtime() | 1;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, argv[0], 1, &bench->receiver) != napi_ok ||
      napi_create_reference(env, argv[8], 1, &bench->batch_ref) != napi_ok || napi_create_reference(env, argv[10], 1, &bench->on_replies) != napi_ok ||
      napi_create_reference(env, argv[11], 1, &bench->on_close) != napi_ok || napi_create_reference(env, argv[12], 1, &bench->on_wrong) != napi_ok ||
      napi_create_reference(env, argv[13], 1, &bench->on_open) != napi_ok || napi_create_reference(env, argv[14], 1, &bench->on_wrong_message) != napi_ok ||
      init_async_context(env, "echoplex:bench", &bench->async_context) != napi_ok) {
    bench_detach(env, bench);
    bench_release(bench);
    return throw_failed(env, "createBench");
  }
  bool held;
  napi_value result = wrap_external(env, bench, bench_finalize, &BENCH_TAG, &held);
  if (!held) {
    bench_detach(env, bench);
    napi_async_destroy(env, bench->async_context);
    bench_release(bench);
    return NULL;
  }
  // From here the object owns the engine (its finalizer releases it), even if tagging it failed.
  // The check only does work for connections, which keep the loop alive themselves.
  start_turn_check(loop, &bench->check, bench, on_check);
  bench->refs++;
  return result;
}

/** Connected: reading starts, and the client speaks first (TLS hello, upgrade request) or the connection is open. */
static void start_connection(bench_connection_t *conn) {
  bench_t *bench = conn->bench;
  uv_tcp_nodelay(&conn->tcp, 1);
  int status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
  if (status < 0) {
    close_connection(conn, status);
    return;
  }
  if (bench->tls != NULL) {
    if ((conn->ssl = tls_client_session(bench->tls, bench->host)) == NULL) {
      close_connection(conn, UV_ENOMEM);
      return;
    }
    // Sends the hello; the rest of the handshake comes with the reads.
    (void)SSL_do_handshake(conn->ssl);
    ERR_clear_error();
    flush_tls(conn);
  } else if (bench->ws_opcode != 0) {
    layers_t *layers = conn->layers;
    write_bytes(conn, layers->http_head, layers->http_head_length);
    free(layers->http_head);
    layers->http_head = NULL;
    layers->http_head_length = 0;
  } else if (!tell_open(conn, NULL, 0)) {
    close_connection(conn, UV_ECANCELED);
  }
}

static void on_connected(uv_connect_t *req, int status) {
  bench_connection_t *conn = req->data;
  free(req);
  // Destroyed while connecting: the close callback tells JavaScript.
  if (conn->closing) return;
  if (status < 0) close_connection(conn, status);
  else start_connection(conn);
}

/**
 * benchConnect(bench, number, address, port, source, upgrade?): opens a connection to `address`
 * (an IP address) and `port`, from `source` (an IP address, or null), whose messages carry
 * `number`, and returns the id it goes by. onOpen hears when it is open (after TLS and any
 * upgrade, whose request is `upgrade`); onClose, if it closed first, with the reason.
 */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  size_t argc = 6;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "benchConnect takes a bench, number, address, port and source");
    return NULL;
  }
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  double number;
  uint32_t port;
  char address[64], source[64] = "";
  size_t length;
  napi_valuetype source_type, upgrade_type = napi_undefined;
  CHECK(napi_get_value_double(env, argv[1], &number));
  CHECK(napi_get_value_string_utf8(env, argv[2], address, sizeof address, &length));
  CHECK(napi_get_value_uint32(env, argv[3], &port));
  CHECK(napi_typeof(env, argv[4], &source_type));
  if (source_type == napi_string) CHECK(napi_get_value_string_utf8(env, argv[4], source, sizeof source, &length));
  if (argc >= 6) CHECK(napi_typeof(env, argv[5], &upgrade_type));
  if (!(number >= 0 && number < 9007199254740992.0) || port == 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "the connection number must be a whole number from 0, the port from 1 to 65535");
    return NULL;
  }
  if ((upgrade_type != napi_undefined) != (bench->ws_opcode != 0)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "an upgrade request is given over WebSocket, and only then");
    return NULL;
  }
  struct sockaddr_storage destination, local;
  if (parse_address(address, (int)port, &destination) < 0 || (source[0] != '\0' && parse_address(source, 0, &local) < 0)) {
    napi_throw_type_error(env, "ERR_INVALID_IP_ADDRESS", "the address and source must be IP addresses");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  bench_connection_t *conn = calloc(1, sizeof *conn);
  uv_connect_t *req = malloc(sizeof *req);
  if (conn == NULL || req == NULL) {
    free(conn);
    free(req);
    return throw_status(env, UV_ENOMEM, "benchConnect");
  }
  // The bench's from here: connection_release frees whatever the steps below made.
  conn->bench = bench;
  conn->refs = 1;
  bench->refs++;
  conn->stage = bench->tls != NULL ? STAGE_TLS : bench->ws_opcode != 0 ? STAGE_UPGRADE : STAGE_OPEN;
  conn->number = (uint64_t)number;
  conn->send_times = conn->inline_send_times;
  conn->capacity = INLINE_SEND_TIMES;
  bool layered = bench->tls != NULL || bench->ws_opcode != 0;
  bool slotted = false;
  napi_value result;
  int status = UV_ENOMEM;
  if (!(layered && (conn->layers = calloc(1, sizeof *conn->layers)) == NULL) &&
      !(upgrade_type != napi_undefined && buffer_copy(env, argv[5], (unsigned char **)&conn->layers->http_head, &conn->layers->http_head_length) < 0) &&
      (slotted = slots_put(&bench->connections, conn, &conn->id) == 0) && napi_create_double(env, conn->id, &result) == napi_ok)
    status = uv_tcp_init(loop, &conn->tcp);
  if (status < 0) {
    if (slotted) slots_remove(&bench->connections, conn->id);
    free(req);
    connection_release(conn);
    return throw_status(env, status, "benchConnect");
  }
  // Owned by the handle from here to its close callback, which tells JavaScript.
  conn->tcp.data = conn;
  req->data = conn;
  // A failure to bind or connect reaches JavaScript as the close that follows, as a refused connect does.
  if (source[0] != '\0' && (status = uv_tcp_bind(&conn->tcp, (const struct sockaddr *)&local, 0)) < 0) {
    free(req);
    close_connection(conn, status);
  } else if ((status = uv_tcp_connect(req, &conn->tcp, (const struct sockaddr *)&destination, on_connected)) < 0) {
    free(req);
    close_connection(conn, status);
  }
  return result;
}

/** A Buffer argument's bytes, or NULL (and length 0) for null or undefined. */
static bool optional_buffer(napi_env env, napi_value value, const char **bytes, size_t *length) {
  napi_valuetype type;
  *bytes = NULL;
  *length = 0;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type == napi_null || type == napi_undefined) return true;
  void *data;
  if (napi_get_buffer_info(env, value, &data, length) != napi_ok) return false;
  *bytes = data;
  return true;
}

/**
 * benchUseTls(bench, ca, verify, cert, key, host): connections opened from now speak TLS as a
 * client trusting `ca` (PEM, or null), checking the server's certificate names `host` (or null)
 * if `verify`, presenting `cert` and `key` (or null). Throws with OpenSSL's reason if it cannot.
 */
static napi_value js_use_tls(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (get_args(env, info, 6, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  const char *unavailable = tls_unavailable_reason();
  if (unavailable != NULL) {
    napi_throw_error(env, "ENOTSUP", unavailable);
    return NULL;
  }
  const char *ca, *cert, *key;
  size_t ca_length, cert_length, key_length;
  bool verify;
  CHECK(napi_get_value_bool(env, argv[2], &verify));
  if (!optional_buffer(env, argv[1], &ca, &ca_length) || !optional_buffer(env, argv[3], &cert, &cert_length) || !optional_buffer(env, argv[4], &key, &key_length)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected Buffers or null");
    return NULL;
  }
  char host[256] = "";
  size_t host_length = 0;
  napi_valuetype host_type;
  CHECK(napi_typeof(env, argv[5], &host_type));
  if (host_type == napi_string) CHECK(napi_get_value_string_utf8(env, argv[5], host, sizeof host, &host_length));
  char error[300];
  SSL_CTX *context = tls_client_context(ca, ca_length, verify, cert, cert_length, key, key_length, error, sizeof error);
  if (context == NULL) {
    napi_throw_error(env, "ERR_TLS_CONTEXT", error);
    return NULL;
  }
  char *plain = bench->plain_buffer != NULL ? bench->plain_buffer : malloc(READ_BUFFER_BYTES);
  char *kept_host = host_length > 0 ? strdup(host) : NULL;
  if (plain == NULL || (host_length > 0 && kept_host == NULL)) {
    tls_free_context(context);
    free(kept_host);
    if (plain != bench->plain_buffer) free(plain);
    return throw_status(env, UV_ENOMEM, "benchUseTls");
  }
  tls_free_context(bench->tls);
  free(bench->host);
  bench->tls = context;
  // Kept with --tls-insecure too: SNI still goes, as Node sends it whatever it checks.
  bench->host = kept_host;
  bench->plain_buffer = plain;
  return NULL;
}

/** benchUseWebSocket(bench, binary): connections opened from now carry messages as WebSocket frames, binary or text. */
static napi_value js_use_websocket(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  bool binary;
  CHECK(napi_get_value_bool(env, argv[1], &binary));
  bench->ws_opcode = binary ? WS_BINARY : WS_TEXT;
  return NULL;
}

/** benchSend(bench, id, count, stamp): sends up to `count` messages stamped `stamp`; returns how many the budget allowed (none once closed). */
static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool failed;
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_args(env, argv, &failed);
  if (failed) return NULL;
  uint32_t count;
  double stamp;
  CHECK(napi_get_value_uint32(env, argv[2], &count));
  CHECK(napi_get_value_double(env, argv[3], &stamp));
  napi_value result;
  CHECK(napi_create_uint32(env, conn == NULL ? 0 : send_messages(conn, count, stamp), &result));
  return result;
}

/** benchDestroy(bench, id): closes at once; onClose follows. Nothing once closed. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool failed;
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_args(env, argv, &failed);
  if (conn != NULL) close_connection(conn, 0);
  return NULL;
}

/** benchInFlight(bench, id, out: Float64Array(2)): replies owed, and the oldest one's send time (0 and 0 if none, or closed). */
static napi_value js_in_flight(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_args(env, argv, &failed);
  double *out = failed ? NULL : float64_array(env, argv[2], 2);
  if (out == NULL) return NULL;
  out[0] = conn != NULL ? (double)conn->owed : 0;
  out[1] = conn != NULL && conn->owed > 0 ? conn->send_times[conn->head] : 0;
  return NULL;
}

/** benchOwes(bench, id, sequence): whether the reply to `sequence` is still owed (for classifying a wrong one). */
static napi_value js_owes(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool failed;
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_args(env, argv, &failed);
  if (failed) return NULL;
  double sequence;
  CHECK(napi_get_value_double(env, argv[2], &sequence));
  double index = conn == NULL ? -1 : sequence - (double)conn->head_sequence;
  bool owed = index >= 0 && index < (double)conn->count && !isnan(conn->send_times[(conn->head + (size_t)index) % conn->capacity]);
  napi_value result;
  CHECK(napi_get_boolean(env, owed, &result));
  return result;
}

/** setSending(bench, answering, budget): whether replies are answered, and how many messages may still go (Infinity: no limit). */
static napi_value js_set_sending(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  bool answering;
  double budget;
  CHECK(napi_get_value_bool(env, argv[1], &answering));
  CHECK(napi_get_value_double(env, argv[2], &budget));
  bench->answering = answering;
  bench->send_budget = budget < 0 || isnan(budget) ? 0 : budget;
  return NULL;
}

/** benchTotals(bench, out: Float64Array(2)): messages sent, send budget left. */
static napi_value js_totals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  double *out = bench == NULL ? NULL : float64_array(env, argv[1], 2);
  if (out == NULL) return NULL;
  out[0] = bench->sent;
  out[1] = bench->send_budget;
  return NULL;
}

/** closeBench(bench): no more callbacks into JavaScript (the run has destroyed its connections first). */
static napi_value js_close(napi_env env, napi_callback_info info) {
  bench_t *bench = only_tagged_argument(env, info, &BENCH_TAG, "expected a native bench");
  if (bench == NULL) return NULL;
  bench->answering = 0;
  bench_detach(env, bench);
  close_turn_check(&bench->check, on_check_closed);
  return NULL;
}

napi_value bench_engine_init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("createBench", create_bench),
      EXPORT_FUNCTION("benchConnect", js_connect),
      EXPORT_FUNCTION("benchUseTls", js_use_tls),
      EXPORT_FUNCTION("benchUseWebSocket", js_use_websocket),
      EXPORT_FUNCTION("benchSend", js_send),
      EXPORT_FUNCTION("benchDestroy", js_destroy),
      EXPORT_FUNCTION("benchInFlight", js_in_flight),
      EXPORT_FUNCTION("benchOwes", js_owes),
      EXPORT_FUNCTION("benchSetSending", js_set_sending),
      EXPORT_FUNCTION("benchTotals", js_totals),
      EXPORT_FUNCTION("closeBench", js_close),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
