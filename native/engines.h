// The addon's engines, each adding its functions to the module's exports (see addon.c).

#ifndef ECHOPLEX_ENGINES_H
#define ECHOPLEX_ENGINES_H

#include <node_api.h>

/** The server's echo engine (echo_engine.c): createEngine, adopt, finish, destroy, counters, totals. */
napi_value echo_engine_init(napi_env env, napi_value exports);
/** The bench's closed-loop engine (bench_engine.c): createBench, adoptBench, send, ... */
napi_value bench_engine_init(napi_env env, napi_value exports);

/** The server's UDP engine (udp_engine.c): createUdp, udpTotals, closeUdp. */
napi_value udp_engine_init(napi_env env, napi_value exports);

/** The selectors' native sockets (socket_engine.c): createSockets, adoptSocket, socketRecv, socketSend, ... */
napi_value socket_engine_init(napi_env env, napi_value exports);

/** Sockets several processes accept on, one each, on one port (shared_port.c): bindSharedPort. */
napi_value shared_port_init(napi_env env, napi_value exports);

#endif
