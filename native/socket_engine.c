// The selectors' native sockets: Python's non-blocking recv/send as system calls, with readiness kept in shared memory.
//
// On Node's own streams, every read costs a JavaScript callback that buffers the chunk for a
// later recv(): the ported seed programs paid that on top of their own work per message and
// fell short of issue 3's bar against their Python originals (BENCHMARKS.md). A socket adopted here is what a
// Python socket is: recv() and send() are read() and write() on the descriptor, so partial
// sends, full buffers and resets are the kernel's own. A libuv poll handle per socket watches
// the descriptor on Node's event loop; its callbacks only set bits in a slot of an Int32Array
// that JavaScript reads (src/selectors/native-plane.ts), and list the slots that became ready,
// which JavaScript hears about once per turn of the loop, in the check phase.
//
// Readiness is level-triggered like epoll's default.
//
// READABLE stays set while recv() would not block: data, end of stream or an error. It is
// cleared when a read comes back short or finds nothing, and after a read that filled the
// caller's buffer if the kernel has nothing more; the poll handle sets it again when more comes.
// Once recv() has returned end of stream it stays set for good.
//
// WRITABLE is what the kernel's poll says (room above its low-water mark), confirmed lazily: a
// send() that the kernel took whole leaves it unchecked, and the next question about writing
// asks the kernel (one poll() system call); a send() that finds the buffer full clears it, and
// the poll handle then watches for room. For sockets the program asks about writing (select's
// wlist, a WRITE registration), the sends of a turn are confirmed together at its end with one
// poll() over all of them, so a steady writer pays no system call per message for it.
//
// A socket that is readable and not read across a turn of the loop is no longer polled for
// reading until recv() is called, so that a program that leaves it unread does not keep the
// loop spinning.

#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engines.h"
#include "glue.h"

#define READY_READ 1
#define READY_WRITE 2
#define READY_ERROR 4
/** WRITE was last confirmed before a send(): whether room is left is checked when someone asks. */
#define READY_WRITE_UNCHECKED 8

typedef struct sockets {
  napi_env env;
  /** onChanged(count): the first `count` entries of `changed` are slots that became ready. */
  napi_ref on_changed;
  napi_ref receiver;
  napi_ref flags_ref;
  napi_ref changed_ref;
  /** JavaScript's Buffer that recv() reads into; JavaScript copies out what it needs. */
  napi_ref read_buffer_ref;
  napi_async_context async_context;
  /** Readiness bits per slot, read by JavaScript. */
  int32_t *flags;
  size_t slots;
  int32_t *changed;
  size_t changed_capacity;
  size_t changed_count;
  uv_check_t check;
  char *read_buffer;
  size_t read_buffer_length;
  /** Sockets sent to this turn whose WRITE is to be confirmed at its end, each holding a reference. */
  struct native_socket **unconfirmed;
  struct pollfd *probes;
  size_t unconfirmed_count;
  size_t unconfirmed_capacity;
  /** The JavaScript object, the check handle, and every socket not yet released. */
  int refs;
} sockets_t;

typedef struct native_socket {
  uv_poll_t poll;
  sockets_t *sockets;
  int fd;
  int slot;
  /** The events the poll handle watches now. */
  int watching;
  /** recv() was called since the last poll event: the program reads this socket. */
  unsigned read_since_event : 1;
  unsigned eof : 1;
  /** After shutdown(SHUT_WR) send() only fails at once (EPIPE): WRITE-ready for good, as poll() says. */
  unsigned write_shut : 1;
  unsigned closing : 1;
  /** The program has asked whether this socket can be written: its sends are confirmed at the turn's end. */
  unsigned write_asked : 1;
  unsigned awaiting_confirmation : 1;
  /**
   * The connection has failed (a reset, an error the kernel reported): recv and send return at
   * once from now on. Which error, and to which call, is the kernel's to say: it reports it once,
   * to the first recv, send or getsockopt(SO_ERROR) that asks, as Python sees it.
   */
  unsigned failed : 1;
  /** The poll handle until its close callback, and the JavaScript object. */
  int refs;
} native_socket_t;

static void sockets_release(sockets_t *sockets) {
  if (--sockets->refs > 0) return;
  free(sockets->unconfirmed);
  free(sockets->probes);
  free(sockets);
}

static void socket_release(native_socket_t *sock) {
  if (--sock->refs > 0) return;
  sockets_t *sockets = sock->sockets;
  free(sock);
  sockets_release(sockets);
}

static int32_t *flags_of(native_socket_t *sock) {
  return &sock->sockets->flags[sock->slot];
}

static void on_poll(uv_poll_t *poll, int status, int events);

/**
 * Watches for reading while the socket can still become readable and the program reads it, and
 * for room to write only after a send() found none. Readable sockets stay watched (level-
 * triggered), so a steady connection costs no epoll_ctl per message.
 */
static void update_watch(native_socket_t *sock, int stop_reading) {
  if (sock->closing) return;
  int32_t flags = *flags_of(sock);
  int want = 0;
  if (!sock->eof && !(flags & READY_ERROR) && !stop_reading) want |= UV_READABLE;
  if (!(flags & READY_WRITE) && !sock->write_shut) want |= UV_WRITABLE;
  if (want == sock->watching) return;
  sock->watching = want;
  if (want == 0) uv_poll_stop(&sock->poll);
  else uv_poll_start(&sock->poll, want, on_poll);
}

static void mark_changed(native_socket_t *sock, int32_t before) {
  sockets_t *sockets = sock->sockets;
  // Only a socket that was not ready for something it now is needs telling.
  if ((*flags_of(sock) & ~before) == 0) return;
  if (sockets->changed_count < sockets->changed_capacity) sockets->changed[sockets->changed_count++] = sock->slot;
  else sockets->changed[sockets->changed_capacity - 1] = -1;  // overflow: JavaScript rescans every socket
}

/** The connection failed: both directions are ready for good, as poll() reports them, and calls return at once. */
static void set_failed(native_socket_t *sock) {
  sock->failed = 1;
  int32_t before = *flags_of(sock);
  *flags_of(sock) |= READY_READ | READY_WRITE | READY_ERROR;
  mark_changed(sock, before);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  native_socket_t *sock = poll->data;
  int32_t before = *flags_of(sock);
  if (status < 0) {
    // libuv reports EPOLLERR as EBADF and stops the handle. The socket's error stays with the
    // kernel (reading SO_ERROR here would take it from the program's next call).
    sock->watching = 0;
    set_failed(sock);
    return;
  }
  int stop_reading = 0;
  if (events & UV_READABLE) {
    // Still readable from an earlier turn and not read since: the program is leaving it be.
    if ((before & READY_READ) && !sock->read_since_event) stop_reading = 1;
    *flags_of(sock) |= READY_READ;
    sock->read_since_event = 0;
  }
  if ((events & UV_WRITABLE) && !sock->write_shut) {
    *flags_of(sock) |= READY_WRITE;
    *flags_of(sock) &= ~READY_WRITE_UNCHECKED;
  }
  mark_changed(sock, before);
  update_watch(sock, stop_reading);
}

/** Whether recv() would not block now (data, end of stream or an error): one poll() system call. */
static int still_readable(int fd) {
  struct pollfd probe = {.fd = fd, .events = POLLIN, .revents = 0};
  return poll(&probe, 1, 0) != 0;
}

static void flush_changed(sockets_t *sockets) {
  if (sockets->changed_count == 0 || sockets->on_changed == NULL) return;
  size_t count = sockets->changed_count;
  sockets->changed_count = 0;
  call_with_count(sockets->env, sockets->async_context, sockets->receiver, sockets->on_changed, (uint32_t)count);
}

/** Asks the kernel whether each socket sent to this turn still has room: one poll() for all. */
static void confirm_writes(sockets_t *sockets) {
  size_t count = sockets->unconfirmed_count;
  if (count == 0) return;
  sockets->unconfirmed_count = 0;
  nfds_t probing = 0;
  for (size_t i = 0; i < count; i++) {
    native_socket_t *sock = sockets->unconfirmed[i];
    int unchecked = !sock->closing && (*flags_of(sock) & READY_WRITE_UNCHECKED);
    // A socket closed or asked about since has no probe: fd -1 makes poll() skip it.
    sockets->probes[i] = (struct pollfd){.fd = unchecked ? sock->fd : -1, .events = POLLOUT, .revents = 0};
    probing += unchecked;
  }
  int polled = probing > 0 ? poll(sockets->probes, count, 0) : 0;
  for (size_t i = 0; i < count; i++) {
    native_socket_t *sock = sockets->unconfirmed[i];
    sock->awaiting_confirmation = 0;
    // A failed poll() confirms nothing: each socket is then asked on its own when it matters.
    if (polled >= 0 && sockets->probes[i].fd >= 0) {
      *flags_of(sock) &= ~READY_WRITE_UNCHECKED;
      if (sockets->probes[i].revents == 0) {
        *flags_of(sock) &= ~READY_WRITE;
        update_watch(sock, 0);
      }
    }
    socket_release(sock);
  }
}

/** Notes a socket whose WRITE a send left unconfirmed, to be asked about with the turn's others. */
static void await_confirmation(native_socket_t *sock) {
  sockets_t *sockets = sock->sockets;
  if (sock->awaiting_confirmation) return;
  if (sockets->unconfirmed_count == sockets->unconfirmed_capacity) {
    size_t capacity = sockets->unconfirmed_capacity == 0 ? 64 : sockets->unconfirmed_capacity * 2;
    native_socket_t **unconfirmed = realloc(sockets->unconfirmed, capacity * sizeof *unconfirmed);
    if (unconfirmed == NULL) return;  // then this socket is asked on its own, when it matters
    sockets->unconfirmed = unconfirmed;
    struct pollfd *probes = realloc(sockets->probes, capacity * sizeof *probes);
    if (probes == NULL) return;
    sockets->probes = probes;
    sockets->unconfirmed_capacity = capacity;
  }
  sock->awaiting_confirmation = 1;
  sock->refs++;
  sockets->unconfirmed[sockets->unconfirmed_count++] = sock;
}

/**
 * The end of a turn's polling: the turn's sends are confirmed, then JavaScript hears every
 * socket that became ready in it, at once. This check handle runs before Node's immediates (libuv
 * runs the newest check first), so a select() resumed by setImmediate reads confirmed flags.
 */
static void on_check(uv_check_t *check) {
  confirm_writes(check->data);
  flush_changed(check->data);
}

static void on_poll_closed(uv_handle_t *handle) {
  native_socket_t *sock = handle->data;
  close(sock->fd);
  sock->fd = -1;
  socket_release(sock);
}

static void on_check_closed(uv_handle_t *handle) {
  sockets_release(handle->data);
}

// ---- Node-API glue ----

static const napi_type_tag SOCKETS_TAG = {0x6563686f706c6578ULL, 0x736f636b73000001ULL};
static const napi_type_tag SOCKET_TAG = {0x6563686f706c6578ULL, 0x736f636b00000001ULL};

static sockets_t *sockets_arg(napi_env env, napi_value value) {
  return tagged_external(env, value, &SOCKETS_TAG, "expected native sockets");
}

static native_socket_t *socket_arg(napi_env env, napi_value value) {
  native_socket_t *sock = tagged_external(env, value, &SOCKET_TAG, "expected a native socket");
  if (sock != NULL && sock->closing) {
    napi_throw_error(env, "EBADF", "Bad file descriptor");
    return NULL;
  }
  return sock;
}

static void sockets_detach(napi_env env, sockets_t *sockets) {
  napi_ref *const refs[] = {&sockets->on_changed, &sockets->receiver, &sockets->flags_ref, &sockets->changed_ref, &sockets->read_buffer_ref};
  delete_references(env, refs, sizeof refs / sizeof refs[0]);
}

static void sockets_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  sockets_t *sockets = data;
  sockets_detach(env, sockets);
  napi_async_destroy(env, sockets->async_context);
  // The check that would confirm them is closing: let go of the sockets still waiting for it.
  for (size_t i = 0; i < sockets->unconfirmed_count; i++) socket_release(sockets->unconfirmed[i]);
  sockets->unconfirmed_count = 0;
  close_turn_check(&sockets->check, on_check_closed);
  sockets_release(sockets);
}

static void socket_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  native_socket_t *sock = data;
  // Collected without close(): the descriptor is closed now rather than leaked.
  if (!sock->closing) {
    sock->closing = 1;
    uv_close((uv_handle_t *)&sock->poll, on_poll_closed);
  }
  socket_release(sock);
}

static int32_t *int32_array(napi_env env, napi_value value, size_t *length) {
  napi_typedarray_type type;
  void *data;
  bool is_typed_array = false;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, value, &type, length, &data, NULL, NULL) != napi_ok || type != napi_int32_array || *length == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a non-empty Int32Array");
    return NULL;
  }
  return data;
}

/** createSockets(receiver, flags: Int32Array, changed: Int32Array, readBuffer: Buffer, onChanged: (count) => void) */
static napi_value create_sockets(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (get_args(env, info, 5, argv) == NULL) return NULL;
  size_t slots, changed_capacity;
  int32_t *flags = int32_array(env, argv[1], &slots);
  if (flags == NULL) return NULL;
  int32_t *changed = int32_array(env, argv[2], &changed_capacity);
  if (changed == NULL) return NULL;
  void *read_buffer;
  size_t read_buffer_length;
  if (napi_get_buffer_info(env, argv[3], &read_buffer, &read_buffer_length) != napi_ok || read_buffer_length == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a non-empty Buffer to read into");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  sockets_t *sockets = calloc(1, sizeof *sockets);
  if (sockets == NULL) return throw_status(env, UV_ENOMEM, "createSockets");
  sockets->env = env;
  sockets->refs = 1;
  sockets->read_buffer = read_buffer;
  sockets->read_buffer_length = read_buffer_length;
  sockets->flags = flags;
  sockets->slots = slots;
  sockets->changed = changed;
  sockets->changed_capacity = changed_capacity;
  if (napi_create_reference(env, argv[0], 1, &sockets->receiver) != napi_ok || napi_create_reference(env, argv[1], 1, &sockets->flags_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &sockets->changed_ref) != napi_ok || napi_create_reference(env, argv[3], 1, &sockets->read_buffer_ref) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &sockets->on_changed) != napi_ok || init_async_context(env, "echoplex:selectors", &sockets->async_context) != napi_ok) {
    sockets_detach(env, sockets);
    sockets_release(sockets);
    return throw_failed(env, "createSockets");
  }
  bool held;
  napi_value result = wrap_external(env, sockets, sockets_finalize, &SOCKETS_TAG, &held);
  if (!held) {
    sockets_detach(env, sockets);
    napi_async_destroy(env, sockets->async_context);
    sockets_release(sockets);
    return NULL;
  }
  // From here the object owns the sockets (its finalizer releases them), even if tagging it failed.
  // Sockets keep the loop alive through their poll handles; the check alone must not.
  start_turn_check(loop, &sockets->check, sockets, on_check);
  sockets->refs++;
  return result;
}

/**
 * adoptSocket(sockets, fd, slot): takes over a duplicate of the connected stream socket `fd`
 * (the caller closes its own) with its readiness in `flags[slot]`; returns [socket, its fd].
 */
static napi_value adopt_socket(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  sockets_t *sockets = sockets_arg(env, argv[0]);
  if (sockets == NULL) return NULL;
  int32_t fd, slot;
  uv_loop_t *loop;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  CHECK(napi_get_value_int32(env, argv[2], &slot));
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (slot < 0 || (size_t)slot >= sockets->slots) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "slot out of range");
    return NULL;
  }
  int own_fd = duplicate_socket(fd);
  if (own_fd < 0) return throw_status(env, own_fd, "adoptSocket");
  int status = fcntl(own_fd, F_SETFL, fcntl(own_fd, F_GETFL) | O_NONBLOCK) < 0 ? -errno : 0;
  native_socket_t *sock = status < 0 ? NULL : calloc(1, sizeof *sock);
  if (sock == NULL) {
    close(own_fd);
    return throw_status(env, status < 0 ? status : UV_ENOMEM, "adoptSocket");
  }
  sock->sockets = sockets;
  sock->fd = own_fd;
  sock->slot = slot;
  sock->refs = 1;
  sockets->refs++;
  status = uv_poll_init_socket(loop, &sock->poll, own_fd);
  if (status < 0) {
    close(own_fd);
    socket_release(sock);
    return throw_status(env, status, "adoptSocket");
  }
  sock->poll.data = sock;
  // The poll handle is the second owner, until its close callback closes the descriptor.
  sock->refs++;
  bool held;
  napi_value handle = wrap_external(env, sock, socket_finalize, &SOCKET_TAG, &held), fd_value, result;
  if (handle == NULL) {
    if (!held) {
      sock->closing = 1;
      uv_close((uv_handle_t *)&sock->poll, on_poll_closed);
      socket_release(sock);
    }
    return NULL;
  }
  // A connected socket can be written at once; whether it can be read, the poll handle will say.
  sockets->flags[slot] = READY_WRITE;
  update_watch(sock, 0);
  CHECK(napi_create_int32(env, own_fd, &fd_value));
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_set_element(env, result, 0, handle));
  CHECK(napi_set_element(env, result, 1, fd_value));
  return result;
}

/**
 * socketRecv(socket, n): reads up to n bytes into the start of the read buffer and returns how
 * many (0 at end of stream), or a negative errno (EAGAIN included). JavaScript copies them out
 * with its pooled allocator, which is cheaper than a new Buffer made here.
 */
static napi_value socket_recv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  uint32_t wanted;
  CHECK(napi_get_value_uint32(env, argv[1], &wanted));
  napi_value result;
  sock->read_since_event = 1;
  if (wanted > sock->sockets->read_buffer_length) wanted = (uint32_t)sock->sockets->read_buffer_length;
  ssize_t got = wanted == 0 ? 0 : recv(sock->fd, sock->sockets->read_buffer, wanted, 0);
  if (got < 0) {
    int error = -errno;
    if (error == UV_EAGAIN || error == -EWOULDBLOCK) {
      *flags_of(sock) &= ~READY_READ;
      update_watch(sock, 0);
      CHECK(napi_create_int32(env, UV_EAGAIN, &result));
      return result;
    }
    if (error == UV_EINTR) error = UV_EAGAIN;
    else set_failed(sock);
    CHECK(napi_create_int32(env, error, &result));
    return result;
  }
  if (got == 0 && wanted > 0) {
    // End of stream is readable for good: no need to watch for it any more. A short read just
    // before may have cleared READ with the FIN still queued behind the bytes: set it again.
    int32_t before = *flags_of(sock);
    sock->eof = 1;
    *flags_of(sock) |= READY_READ;
    mark_changed(sock, before);
  } else if ((size_t)got < wanted) {
    // A short read emptied the receive buffer (more may arrive; the poll handle is watching).
    *flags_of(sock) &= ~READY_READ;
  } else if (!still_readable(sock->fd)) {
    // A full read may have taken the last byte: READ must not outlive the data.
    *flags_of(sock) &= ~READY_READ;
  }
  // Reading again: a socket left unread earlier is watched again.
  update_watch(sock, 0);
  CHECK(napi_create_int32(env, (int32_t)got, &result));
  return result;
}

/** socketSend(socket, bytes: Uint8Array): bytes the kernel took (at least 1), or a negative errno (EAGAIN when none fit). */
static napi_value socket_send(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value arraybuffer;
  size_t offset;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &length, &data, &arraybuffer, &offset));
  napi_value result;
  // Zero bytes too: the kernel answers send(b'') after SHUT_WR, or on a broken connection, with the error.
  ssize_t sent = send(sock->fd, data, length, MSG_NOSIGNAL);
  if (sent < 0) {
    int error = -errno;
    if (error == UV_EAGAIN || error == -EWOULDBLOCK || error == UV_EINTR) error = UV_EAGAIN;
    else if (!sock->write_shut) set_failed(sock);
    if (error == UV_EAGAIN) {
      *flags_of(sock) &= ~(READY_WRITE | READY_WRITE_UNCHECKED);
      update_watch(sock, 0);
    }
    CHECK(napi_create_int32(env, error, &result));
    return result;
  }
  if ((size_t)sent < length) {
    // A partial send filled the buffer: watch for room.
    *flags_of(sock) &= ~(READY_WRITE | READY_WRITE_UNCHECKED);
    update_watch(sock, 0);
  } else if (sent > 0) {
    *flags_of(sock) |= READY_WRITE_UNCHECKED;
    if (sock->write_asked) await_confirmation(sock);
  }
  CHECK(napi_create_int32(env, (int32_t)sent, &result));
  return result;
}

/** socketCheckWritable(socket): asks the kernel whether WRITE still holds after a send; returns the flags. */
static napi_value socket_check_writable(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  int32_t *flags = flags_of(sock);
  sock->write_asked = 1;
  if (*flags & READY_WRITE_UNCHECKED) {
    struct pollfd probe = {.fd = sock->fd, .events = POLLOUT, .revents = 0};
    int ready = poll(&probe, 1, 0);
    *flags &= ~READY_WRITE_UNCHECKED;
    if (ready == 0) {
      *flags &= ~READY_WRITE;
      update_watch(sock, 0);
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, *flags, &result));
  return result;
}

/** socketShutdown(socket, how): 0 or a negative errno. */
static napi_value socket_shutdown(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  int32_t how;
  CHECK(napi_get_value_int32(env, argv[1], &how));
  int status = shutdown(sock->fd, how) < 0 ? -errno : 0;
  if (status == 0 && (how == SHUT_WR || how == SHUT_RDWR)) {
    sock->write_shut = 1;
    // A send now fails at once: writable, as poll() reports it.
    *flags_of(sock) |= READY_WRITE;
    *flags_of(sock) &= ~READY_WRITE_UNCHECKED;
    update_watch(sock, 0);
  }
  napi_value result;
  CHECK(napi_create_int32(env, status, &result));
  return result;
}

/** socketSetOption(socket, level, option, value): setsockopt with an int; 0 or a negative errno. */
static napi_value socket_set_option(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  int32_t level, option, value;
  CHECK(napi_get_value_int32(env, argv[1], &level));
  CHECK(napi_get_value_int32(env, argv[2], &option));
  CHECK(napi_get_value_int32(env, argv[3], &value));
  napi_value result;
  CHECK(napi_create_int32(env, setsockopt(sock->fd, level, option, &value, sizeof value) < 0 ? -errno : 0, &result));
  return result;
}

/** socketError(socket): the pending error as a negative errno, or 0. */
static napi_value socket_error(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  native_socket_t *sock = socket_arg(env, argv[0]);
  if (sock == NULL) return NULL;
  // The kernel's getsockopt(SO_ERROR): the pending error, which reading clears, as in Python.
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(sock->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
  napi_value result;
  CHECK(napi_create_int32(env, -error, &result));
  return result;
}

/** socketClose(socket): stops watching and closes the descriptor (the kernel still sends what it holds, then FIN). */
static napi_value socket_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  native_socket_t *sock = tagged_external(env, argv[0], &SOCKET_TAG, "expected a native socket");
  if (sock == NULL || sock->closing) return NULL;
  sock->closing = 1;
  sock->sockets->flags[sock->slot] = 0;
  uv_close((uv_handle_t *)&sock->poll, on_poll_closed);
  return NULL;
}

napi_value socket_engine_init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("createSockets", create_sockets),
      EXPORT_FUNCTION("adoptSocket", adopt_socket),
      EXPORT_FUNCTION("socketRecv", socket_recv),
      EXPORT_FUNCTION("socketSend", socket_send),
      EXPORT_FUNCTION("socketCheckWritable", socket_check_writable),
      EXPORT_FUNCTION("socketShutdown", socket_shutdown),
      EXPORT_FUNCTION("socketSetOption", socket_set_option),
      EXPORT_FUNCTION("socketError", socket_error),
      EXPORT_FUNCTION("socketClose", socket_close),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
