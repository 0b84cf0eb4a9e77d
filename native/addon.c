// The native addon's entry point: one module, two engines (the server's echo, the bench's closed loop).

#include "engines.h"

NAPI_MODULE_INIT() {
  if (echo_engine_init(env, exports) == NULL) return NULL;
  return bench_engine_init(env, exports);
}
