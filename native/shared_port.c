// Sockets bound with SO_REUSEPORT, so that each of several processes accepts (or reads datagrams) on a socket of its own on one port.
//
// Node 20's net.Server cannot set SO_REUSEPORT, and without it `serve --workers` has one
// process accept every connection and hand each over (Node's cluster), which at thousands of
// connections a second overflows its accept queue. Here a socket is only made and bound;
// JavaScript wraps it and listens on it, or reads it, as on any other (src/native/shared-port.ts).

#include <uv.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engines.h"
#include "glue.h"

static socklen_t address_length(const struct sockaddr_storage *address) {
  return address->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/**
 * A socket of `type` bound to `address` (a stream socket with SO_REUSEADDR, as libuv sets for
 * listening; SO_REUSEPORT with `share`), its port written back into `address`. The descriptor,
 * or a negative errno.
 */
static int bind_socket(struct sockaddr_storage *address, int type, int share) {
  int fd = socket(address->ss_family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  socklen_t length = address_length(address);
  if ((type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) ||
      (share && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) ||
      bind(fd, (struct sockaddr *)address, length) < 0 || getsockname(fd, (struct sockaddr *)address, &length) < 0) {
    int status = -errno;
    close(fd);
    return status;
  }
  return fd;
}

/**
 * bindSharedPort(ip, port, claim, datagram): a TCP socket (a UDP one with `datagram`) bound to
 * `ip` and `port` with SO_REUSEPORT, not yet listening, as [fd, port] (the port the system picked
 * where `port` is 0). With `claim`, the port is first bound without SO_REUSEPORT: a port that
 * anything listens on, another group of sharing sockets included, fails with EADDRINUSE instead
 * of being silently shared with it.
 */
static napi_value bind_shared_port(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (get_args(env, info, 4, argv) == NULL) return NULL;
  char ip[64];
  size_t length;
  uint32_t port;
  bool claim, datagram;
  if (napi_get_value_string_utf8(env, argv[0], ip, sizeof ip, &length) != napi_ok || napi_get_value_uint32(env, argv[1], &port) != napi_ok ||
      napi_get_value_bool(env, argv[2], &claim) != napi_ok || napi_get_value_bool(env, argv[3], &datagram) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "bindSharedPort takes an IP address, a port and two booleans");
    return NULL;
  }
  int type = datagram ? SOCK_DGRAM : SOCK_STREAM;
  struct sockaddr_storage address;
  memset(&address, 0, sizeof address);
  if (port > 65535 || parse_address(ip, (int)port, &address) < 0) {
    napi_throw_type_error(env, "ERR_INVALID_IP_ADDRESS", "bindSharedPort takes an IP address and a port from 0 to 65535");
    return NULL;
  }
  if (claim) {
    // Closed at once: a socket that never listened leaves no TIME_WAIT behind, and the port
    // (picked here when 0 was asked) is bound again below, this time to be shared.
    int probe = bind_socket(&address, type, 0);
    if (probe < 0) return throw_status(env, probe, "bind");
    close(probe);
  }
  int fd = bind_socket(&address, type, 1);
  if (fd < 0) return throw_status(env, fd, "bind");
  int bound_port = address.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&address)->sin6_port) : ntohs(((struct sockaddr_in *)&address)->sin_port);
  napi_value result, fd_value, port_value;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_create_int32(env, fd, &fd_value));
  CHECK(napi_create_int32(env, bound_port, &port_value));
  CHECK(napi_set_element(env, result, 0, fd_value));
  CHECK(napi_set_element(env, result, 1, port_value));
  return result;
}

napi_value shared_port_init(napi_env env, napi_value exports) {
  const napi_property_descriptor functions[] = {
      EXPORT_FUNCTION("bindSharedPort", bind_shared_port),
  };
  return export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
