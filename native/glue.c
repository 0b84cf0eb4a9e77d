// Node-API helpers shared by the addon's engines (see glue.h).

#include "glue.h"

#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

napi_value throw_failed(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, "ERR_ECHOPLEX_NATIVE", info && info->error_message ? info->error_message : what);
  return NULL;
}

napi_value throw_status(napi_env env, int status, const char *what) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, uv_strerror(status));
  napi_throw_error(env, uv_err_name(status), message);
  return NULL;
}

napi_value get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < expected) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "missing arguments");
    return NULL;
  }
  return argv[0];
}

static void clear_pending(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
  }
}

void *tagged_external(napi_env env, napi_value value, const napi_type_tag *tag, const char *expected) {
  bool matches = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, value, tag, &matches) != napi_ok || !matches || napi_get_value_external(env, value, &data) != napi_ok) {
    clear_pending(env);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", expected);
    return NULL;
  }
  return data;
}

double *float64_array(napi_env env, napi_value value, size_t length) {
  napi_typedarray_type type;
  size_t actual;
  void *data;
  bool is_typed_array = false;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, value, &type, &actual, &data, NULL, NULL) != napi_ok || type != napi_float64_array || actual < length) {
    clear_pending(env);
    char message[64];
    snprintf(message, sizeof message, "expected a Float64Array of %zu", length);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return NULL;
  }
  return data;
}

void call_from_loop(napi_env env, napi_async_context context, napi_value receiver, napi_value callback, size_t argc, const napi_value *argv) {
  napi_status status = napi_make_callback(env, context, receiver, callback, argc, argv, NULL);
  if (status == napi_pending_exception) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
}
