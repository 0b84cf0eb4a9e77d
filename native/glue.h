// Node-API helpers shared by the addon's engines: argument checks, typed errors, callbacks into JavaScript.

#ifndef ECHOPLEX_GLUE_H
#define ECHOPLEX_GLUE_H

#include <node_api.h>
#include <stddef.h>

/** Returns NULL from the calling function, with an error thrown, when a Node-API call fails. */
#define CHECK(call)                                             \
  do {                                                          \
    if ((call) != napi_ok) return throw_failed(env, #call);     \
  } while (0)

/** Throws (unless an exception is already pending) the last Node-API error; returns NULL. */
napi_value throw_failed(napi_env env, const char *what);
/** Throws an Error whose code is the libuv error's name (EMFILE...); returns NULL. */
napi_value throw_status(napi_env env, int status, const char *what);
/** Fills `argv` with `expected` arguments; NULL with a TypeError thrown if there are fewer. */
napi_value get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv);
/** The C data of an external carrying `tag`; NULL with a TypeError thrown for anything else. */
void *tagged_external(napi_env env, napi_value value, const napi_type_tag *tag, const char *expected);
/** The data of a Float64Array of at least `length`; NULL with a TypeError thrown otherwise. */
double *float64_array(napi_env env, napi_value value, size_t length);
/**
 * Calls `callback` with `receiver` as `this`, from a libuv callback (outside any JavaScript
 * frame): microtasks run afterwards, and a throw is reported as an uncaught exception, as from
 * any event handler.
 */
void call_from_loop(napi_env env, napi_async_context context, napi_value receiver, napi_value callback, size_t argc, const napi_value *argv);

#endif
