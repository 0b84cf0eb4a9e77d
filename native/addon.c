// The native addon's entry point: one module, three engines (the server's echo, the bench's closed loop, the selectors' sockets).

#include "engines.h"

NAPI_MODULE_INIT() {
  if (echo_engine_init(env, exports) == NULL) return NULL;
  if (bench_engine_init(env, exports) == NULL) return NULL;
  return socket_engine_init(env, exports);
}
