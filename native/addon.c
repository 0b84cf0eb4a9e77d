// The native addon's entry point: one module for every engine.

#include "engines.h"

NAPI_MODULE_INIT() {
  return echo_engine_init(env, exports);
}
