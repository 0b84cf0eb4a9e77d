// The bench engine: the closed loop of `echoplex bench` over plain TCP, run by C callbacks on Node's event loop.
//
// In TypeScript the load generator pays one JavaScript callback per read, as the server did
// before its engine (echo_engine.c), and falls short of a C epoll load generator's message
// rate from one core (BENCHMARKS.md has the figures). A connection adopted here is
// read, verified byte by byte, timed and answered in C. JavaScript (src/bench/native-bench.ts)
// keeps every decision about the run: it opens the connections, moves the phases, and records
// each reply's latency in its HDR histogram, from a batch of (sent at, received at) pairs that
// this file hands over once per turn of the event loop instead of once per read.
//
// Semantics mirror src/bench/connection.ts and src/bench/run.ts: replies are framed by the
// expected reply's length and compared with it; bytes that arrive when nothing is owed are all
// mismatched; replies read in one turn are answered together at the end of it (the check
// phase, where setImmediate runs), while the run is sending and its send budget lasts.

#include <uv.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines.h"
#include "glue.h"

#define READ_BUFFER_BYTES (64 * 1024)

typedef struct bench_connection bench_connection_t;

typedef struct bench {
  napi_env env;
  /** onReplies(count): `count` pairs are waiting in the batch. */
  napi_ref on_replies;
  /** onClose(token, status, owed): a connection closed; `owed` replies never came. */
  napi_ref on_close;
  /** The JavaScript object that is `this` for onReplies. */
  napi_ref receiver;
  /** The batch's Float64Array, kept alive while the engine writes into it. */
  napi_ref batch_ref;
  napi_async_context async_context;
  /** (sent at, received at) pairs in performance.now() milliseconds. */
  double *batch;
  size_t batch_pairs;
  size_t batch_count;
  /** The reply each message must come back as (length may differ from the payload's, with a prefix). */
  unsigned char *expected;
  size_t expected_length;
  /** `burst_messages` copies of the payload back to back: any count of messages is a prefix of it. */
  char *burst;
  size_t payload_length;
  size_t burst_messages;
  /** Added to uv_hrtime() in milliseconds to read performance.now()'s clock. */
  double clock_offset;
  int sending;
  /** Messages still allowed to be sent; INFINITY unless the run is a fixed number of messages. */
  double send_budget;
  /** Totals for JavaScript to take its deltas from (see totals()). */
  double sent;
  double mismatched_bytes;
  double mismatches;
  /** Connections with replies read this turn, answered in the check phase. */
  bench_connection_t **to_answer;
  size_t answer_count;
  size_t answer_capacity;
  uv_check_t check;
  /** One buffer for every read: each chunk is verified before the next read. */
  char *read_buffer;
  /** The JavaScript engine object, the check handle, and every connection not yet released. */
  int refs;
} bench_t;

struct bench_connection {
  uv_tcp_t tcp;
  bench_t *bench;
  /** The JavaScript object told about the close; released then. */
  napi_ref token;
  /** Send times of the messages in flight, oldest first, in a ring. */
  double *send_times;
  size_t capacity;
  size_t head;
  size_t count;
  /** Bytes of the current reply verified so far. */
  size_t offset_in_reply;
  /** Replies read this turn, not answered yet. */
  unsigned answer_due;
  unsigned closing : 1;
  /** The first error, as a negative libuv status; 0 for none. */
  int error;
  /** The libuv handle until its close callback, the JavaScript object, and a place in to_answer. */
  int refs;
};

static double clock_ms(const bench_t *bench) {
  return (double)uv_hrtime() / 1e6 + bench->clock_offset;
}

static void bench_release(bench_t *bench) {
  if (--bench->refs > 0) return;
  free(bench->expected);
  free(bench->burst);
  free(bench->to_answer);
  free(bench->read_buffer);
  free(bench);
}

static void connection_release(bench_connection_t *conn) {
  if (--conn->refs > 0) return;
  bench_t *bench = conn->bench;
  free(conn->send_times);
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

static void close_connection(bench_connection_t *conn, int status) {
  if (conn->closing) return;
  conn->closing = 1;
  if (conn->error == 0) conn->error = status;
  uv_close((uv_handle_t *)&conn->tcp, on_closed);
}

static int push_send_time(bench_connection_t *conn, double stamp) {
  if (conn->count == conn->capacity) {
    size_t capacity = conn->capacity * 2;
    double *grown = malloc(capacity * sizeof *grown);
    if (grown == NULL) return UV_ENOMEM;
    for (size_t i = 0; i < conn->count; i++) grown[i] = conn->send_times[(conn->head + i) % conn->capacity];
    free(conn->send_times);
    conn->send_times = grown;
    conn->capacity = capacity;
    conn->head = 0;
  }
  conn->send_times[(conn->head + conn->count) % conn->capacity] = stamp;
  conn->count++;
  return 0;
}

static double shift_send_time(bench_connection_t *conn) {
  double stamp = conn->send_times[conn->head];
  conn->head = (conn->head + 1) % conn->capacity;
  conn->count--;
  return stamp;
}

static void on_written(uv_write_t *req, int status) {
  bench_connection_t *conn = req->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED) close_connection(conn, status);
}

/** Writes bytes of the immutable burst: what the kernel takes at once, the rest as a libuv write. */
static void write_burst(bench_connection_t *conn, const char *bytes, size_t length) {
  uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned int)length);
  // uv_try_write declines (EAGAIN) while earlier writes are queued, so the order holds.
  int written = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
  if (written == (int)length) return;
  if (written < 0 && written != UV_EAGAIN) {
    close_connection(conn, written);
    return;
  }
  size_t taken = written > 0 ? (size_t)written : 0;
  uv_write_t *req = malloc(sizeof *req);
  if (req == NULL) {
    close_connection(conn, UV_ENOMEM);
    return;
  }
  req->data = conn;
  buf = uv_buf_init((char *)bytes + taken, (unsigned int)(length - taken));
  // The burst lives as long as the engine, which outlives the handle's pending writes.
  int status = uv_write(req, (uv_stream_t *)&conn->tcp, &buf, 1, on_written);
  if (status < 0) {
    free(req);
    close_connection(conn, status);
  }
}

/** Sends up to `count` messages stamped `stamp`, within the send budget; returns how many. */
static unsigned send_messages(bench_connection_t *conn, unsigned count, double stamp) {
  bench_t *bench = conn->bench;
  if (conn->closing) return 0;
  if ((double)count > bench->send_budget) count = (unsigned)bench->send_budget;
  if (count == 0) return 0;
  bench->send_budget -= count;
  bench->sent += count;
  for (unsigned i = 0; i < count; i++) {
    int status = push_send_time(conn, stamp);
    if (status < 0) {
      close_connection(conn, status);
      return i;
    }
  }
  for (size_t left = count; left > 0 && !conn->closing;) {
    size_t messages = left < bench->burst_messages ? left : bench->burst_messages;
    write_burst(conn, bench->burst, messages * bench->payload_length);
    left -= messages;
  }
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
      if (bench->sending) send_messages(conn, conn->answer_due, now);
      conn->answer_due = 0;
      connection_release(conn);
    }
    bench->answer_count = 0;
  }
  flush_replies(bench);
}

/** Bytes that differ from the expected reply, counted one by one (rare: only after memcmp found some). */
static void count_mismatch(bench_t *bench, const unsigned char *bytes, const unsigned char *expected, size_t length) {
  size_t differing = 0;
  for (size_t i = 0; i < length; i++) differing += bytes[i] != expected[i];
  if (differing == 0) return;
  bench->mismatched_bytes += (double)differing;
  bench->mismatches++;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  bench_connection_t *conn = handle->data;
  *buf = uv_buf_init(conn->bench->read_buffer, READ_BUFFER_BYTES);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  bench_connection_t *conn = stream->data;
  bench_t *bench = conn->bench;
  if (nread < 0) {
    // End of stream before the run ends is the server leaving: JavaScript counts it as closed.
    close_connection(conn, (int)nread);
    return;
  }
  const unsigned char *bytes = (const unsigned char *)buf->base;
  size_t length = (size_t)nread;
  size_t offset = 0;
  unsigned completed = 0;
  double now = clock_ms(bench);
  while (offset < length) {
    if (conn->count == 0) {
      // Bytes nobody asked for: the server sent more than it was sent.
      bench->mismatched_bytes += (double)(length - offset);
      bench->mismatches++;
      break;
    }
    size_t take = bench->expected_length - conn->offset_in_reply;
    if (take > length - offset) take = length - offset;
    const unsigned char *expected = bench->expected + conn->offset_in_reply;
    if (memcmp(bytes + offset, expected, take) != 0) count_mismatch(bench, bytes + offset, expected, take);
    offset += take;
    conn->offset_in_reply += take;
    if (conn->offset_in_reply == bench->expected_length) {
      conn->offset_in_reply = 0;
      completed++;
      // A full batch goes to JavaScript at once, which may end the run and close this connection.
      record_reply(bench, shift_send_time(conn), now);
      if (conn->closing) return;
    }
  }
  if (completed > 0 && bench->sending) queue_answer(conn, completed);
}

/** The handle is closed: JavaScript hears (token, status, replies owed) after the replies it has. */
static void on_closed(uv_handle_t *handle) {
  bench_connection_t *conn = handle->data;
  bench_t *bench = conn->bench;
  flush_replies(bench);
  napi_env env = bench->env;
  napi_handle_scope scope;
  if (conn->token != NULL && bench->on_close != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value token, callback, argv[3];
    if (napi_get_reference_value(env, conn->token, &token) == napi_ok && napi_get_reference_value(env, bench->on_close, &callback) == napi_ok &&
        napi_create_int32(env, conn->error, &argv[1]) == napi_ok && napi_create_uint32(env, (uint32_t)conn->count, &argv[2]) == napi_ok) {
      argv[0] = token;
      call_from_loop(env, bench->async_context, token, callback, 3, argv);
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, conn->token);
  conn->token = NULL;
  connection_release(conn);
}

static void on_check_closed(uv_handle_t *handle) {
  bench_release(handle->data);
}

// ---- Node-API glue ----

static const napi_type_tag BENCH_TAG = {0x6563686f706c6578ULL, 0x62656e6368000001ULL};
static const napi_type_tag BENCH_CONNECTION_TAG = {0x6563686f706c6578ULL, 0x62636f6e6e000001ULL};

static bench_t *bench_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &BENCH_TAG, "expected a native bench");
}

static bench_connection_t *connection_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &BENCH_CONNECTION_TAG, "expected a native bench connection");
}

/** Drops the references into JavaScript; the engine answers nothing after this. */
static void bench_detach(napi_env env, bench_t *bench) {
  napi_ref *const refs[] = {&bench->on_replies, &bench->on_close, &bench->receiver, &bench->batch_ref};
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

static void connection_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  connection_release(data);
}

static int buffer_copy(napi_env env, napi_value value, void **out, size_t *length) {
  void *data;
  if (napi_get_buffer_info(env, value, &data, length) != napi_ok || *length == 0) return -1;
  *out = malloc(*length);
  if (*out == NULL) return -1;
  memcpy(*out, data, *length);
  return 0;
}

/**
 * createBench(receiver, payload: Buffer, expected: Buffer, burstMessages: number,
 *             batch: Float64Array, clockOffsetMs: number, onReplies, onClose)
 */
static napi_value create_bench(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (get_args(env, info, 8, argv) == NULL) return NULL;
  uint32_t burst_messages;
  double clock_offset;
  CHECK(napi_get_value_uint32(env, argv[3], &burst_messages));
  CHECK(napi_get_value_double(env, argv[5], &clock_offset));
  size_t batch_values = 0;
  napi_typedarray_type type;
  void *batch_data;
  bool is_typed_array = false;
  CHECK(napi_is_typedarray(env, argv[4], &is_typed_array));
  if (!is_typed_array || napi_get_typedarray_info(env, argv[4], &type, &batch_values, &batch_data, NULL, NULL) != napi_ok || type != napi_float64_array || batch_values < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a Float64Array batch of at least 2");
    return NULL;
  }
  if (burst_messages == 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "burstMessages must be at least 1");
    return NULL;
  }
  bench_t *bench = calloc(1, sizeof *bench);
  if (bench == NULL) return throw_status(env, UV_ENOMEM, "createBench");
  bench->refs = 1;
  void *payload = NULL;
  size_t payload_length = 0;
  if (buffer_copy(env, argv[1], &payload, &payload_length) < 0 || buffer_copy(env, argv[2], (void **)&bench->expected, &bench->expected_length) < 0 ||
      (bench->burst = malloc(payload_length * burst_messages)) == NULL || (bench->read_buffer = malloc(READ_BUFFER_BYTES)) == NULL) {
    free(payload);
    bench_release(bench);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "payload and expected must be non-empty Buffers");
    return NULL;
  }
  for (uint32_t i = 0; i < burst_messages; i++) memcpy(bench->burst + i * payload_length, payload, payload_length);
  free(payload);
  bench->payload_length = payload_length;
  bench->burst_messages = burst_messages;
  bench->env = env;
  bench->batch = batch_data;
  bench->batch_pairs = batch_values / 2;
  bench->clock_offset = clock_offset;
  bench->send_budget = INFINITY;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, argv[0], 1, &bench->receiver) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &bench->batch_ref) != napi_ok || napi_create_reference(env, argv[6], 1, &bench->on_replies) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &bench->on_close) != napi_ok || init_async_context(env, "echoplex:bench", &bench->async_context) != napi_ok) {
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

static void release_connection(void *conn) {
  connection_release(conn);
}

static const adoption_t ADOPTION = {&BENCH_CONNECTION_TAG, connection_finalize, release_connection, "adoptBench"};

/** adoptBench(bench, fd, token): takes over a duplicate of the connected socket `fd` (the caller closes its own). */
static napi_value adopt_bench(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  bench_connection_t *conn = calloc(1, sizeof *conn);
  double *send_times = malloc(4 * sizeof *send_times);
  if (conn == NULL || send_times == NULL) {
    free(conn);
    free(send_times);
    return throw_status(env, UV_ENOMEM, "adoptBench");
  }
  conn->bench = bench;
  conn->send_times = send_times;
  conn->capacity = 4;
  conn->refs = 1;
  bench->refs++;
  int opened;
  napi_value result = adopt_connection(env, &ADOPTION, conn, &conn->tcp, &conn->refs, &conn->token, argv[2], fd, &opened);
  if (result == NULL) return NULL;
  if (opened < 0) {
    close_connection(conn, opened);
    return result;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  int status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
  if (status < 0) close_connection(conn, status);
  return result;
}

/** send(conn, count, stamp): sends up to `count` messages stamped `stamp`; returns how many the budget allowed. */
static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_arg(env, argv[0]);
  if (conn == NULL) return NULL;
  uint32_t count;
  double stamp;
  CHECK(napi_get_value_uint32(env, argv[1], &count));
  CHECK(napi_get_value_double(env, argv[2], &stamp));
  napi_value result;
  CHECK(napi_create_uint32(env, send_messages(conn, count, stamp), &result));
  return result;
}

/** destroy(conn): closes at once; onClose follows. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  bench_connection_t *conn = only_tagged_argument(env, info, &BENCH_CONNECTION_TAG, "expected a native bench connection");
  if (conn != NULL) close_connection(conn, 0);
  return NULL;
}

/** inFlight(conn, out: Float64Array(2)): replies owed, and the oldest one's send time (0 if none). */
static napi_value js_in_flight(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  bench_connection_t *conn = connection_arg(env, argv[0]);
  double *out = conn == NULL ? NULL : float64_array(env, argv[1], 2);
  if (out == NULL) return NULL;
  out[0] = (double)conn->count;
  out[1] = conn->count > 0 ? conn->send_times[conn->head] : 0;
  return NULL;
}

/** setSending(bench, sending, budget): whether replies are answered, and how many messages may still go (Infinity: no limit). */
static napi_value js_set_sending(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  if (bench == NULL) return NULL;
  bool sending;
  double budget;
  CHECK(napi_get_value_bool(env, argv[1], &sending));
  CHECK(napi_get_value_double(env, argv[2], &budget));
  bench->sending = sending;
  bench->send_budget = budget < 0 || isnan(budget) ? 0 : budget;
  return NULL;
}

/** benchTotals(bench, out: Float64Array(4)): messages sent, send budget left, mismatched bytes, mismatches. */
static napi_value js_totals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  bench_t *bench = bench_arg(env, argv[0]);
  double *out = bench == NULL ? NULL : float64_array(env, argv[1], 4);
  if (out == NULL) return NULL;
  out[0] = bench->sent;
  out[1] = bench->send_budget;
  out[2] = bench->mismatched_bytes;
  out[3] = bench->mismatches;
  return NULL;
}

/** closeBench(bench): no more callbacks into JavaScript (the run has destroyed its connections first). */
static napi_value js_close(napi_env env, napi_callback_info info) {
  bench_t *bench = only_tagged_argument(env, info, &BENCH_TAG, "expected a native bench");
  if (bench == NULL) return NULL;
  bench->sending = 0;
  bench_detach(env, bench);
  close_turn_check(&bench->check, on_check_closed);
  return NULL;
}

napi_value bench_engine_init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("createBench", create_bench),
      EXPORT_FUNCTION("adoptBench", adopt_bench),
      EXPORT_FUNCTION("benchSend", js_send),
      EXPORT_FUNCTION("benchDestroy", js_destroy),
      EXPORT_FUNCTION("benchInFlight", js_in_flight),
      EXPORT_FUNCTION("benchSetSending", js_set_sending),
      EXPORT_FUNCTION("benchTotals", js_totals),
      EXPORT_FUNCTION("closeBench", js_close),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
