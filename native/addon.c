// The native addon's entry point: one module, three engines (the server's echo, the bench's closed loop, the selectors' sockets) and shared listening ports.

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "engines.h"
#include "glue.h"

/**
 * The platform's values for what JavaScript passes back in (setsockopt levels and options) or
 * compares with (errno values), so that no TypeScript file hard-codes one system's numbers.
 */
static napi_value export_constants(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    int value;
  } constants[] = {
      {"EAGAIN", EAGAIN},         {"EBADF", EBADF},           {"SOL_SOCKET", SOL_SOCKET}, {"SO_REUSEADDR", SO_REUSEADDR},
      {"SO_TYPE", SO_TYPE},       {"SO_ERROR", SO_ERROR},     {"SO_KEEPALIVE", SO_KEEPALIVE}, {"IPPROTO_TCP", IPPROTO_TCP},
      {"TCP_NODELAY", TCP_NODELAY}, {"AF_UNIX", AF_UNIX},     {"AF_INET", AF_INET},       {"AF_INET6", AF_INET6},
      {"SOCK_STREAM", SOCK_STREAM}, {"SLOT_INDEX_LIMIT", (int)SLOT_INDEX_LIMIT},
  };
  napi_value object;
  CHECK(napi_create_object(env, &object));
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    napi_value value;
    CHECK(napi_create_int32(env, constants[i].value, &value));
    CHECK(napi_set_named_property(env, object, constants[i].name, value));
  }
  CHECK(napi_set_named_property(env, exports, "constants", object));
  return exports;
}

/**
 * Raised whenever what the addon exports changes, so that JavaScript can tell an addon built
 * from older sources (a stale build/ in a checkout) from the one it was written for.
 */
#define INTERFACE_VERSION 7

NAPI_MODULE_INIT() {
  napi_value version;
  CHECK(napi_create_int32(env, INTERFACE_VERSION, &version));
  CHECK(napi_set_named_property(env, exports, "interfaceVersion", version));
  if (export_constants(env, exports) == NULL) return NULL;
  if (echo_engine_init(env, exports) == NULL) return NULL;
  if (bench_engine_init(env, exports) == NULL) return NULL;
  if (udp_engine_init(env, exports) == NULL) return NULL;
  if (shared_port_init(env, exports) == NULL) return NULL;
  return socket_engine_init(env, exports);
}
