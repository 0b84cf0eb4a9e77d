// Node-API helpers shared by the addon's engines (see glue.h).

#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

napi_value throw_failed(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, "ERR_ECHOPLEX_NATIVE", info && info->error_message ? info->error_message : what);
  return NULL;
}

napi_value export_functions(napi_env env, napi_value exports, const napi_property_descriptor *functions, size_t count) {
  return napi_define_properties(env, exports, count, functions) == napi_ok ? exports : NULL;
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

napi_value wrap_external(napi_env env, void *data, napi_finalize finalize, const napi_type_tag *tag, bool *held) {
  *held = false;
  napi_value result;
  if (napi_create_external(env, data, finalize, NULL, &result) != napi_ok) return throw_failed(env, "wrap");
  // From here the external owns `data`: its finalizer releases it.
  *held = true;
  if (napi_type_tag_object(env, result, tag) != napi_ok) return throw_failed(env, "wrap");
  return result;
}

napi_status init_async_context(napi_env env, const char *name, napi_async_context *context) {
  napi_value resource_name;
  napi_status status = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  return status != napi_ok ? status : napi_async_init(env, NULL, resource_name, context);
}

#define SLOT_INDEX_RANGE ((double)SLOT_INDEX_LIMIT)

int slots_put(slot_table_t *table, void *item, double *id) {
  if (table->free_count == 0) {
    uint32_t capacity = table->capacity == 0 ? 1024 : table->capacity * 2;
    if (capacity > SLOT_INDEX_LIMIT) return UV_ENOMEM;
    void **items = realloc(table->items, capacity * sizeof *items);
    if (items == NULL) return UV_ENOMEM;
    table->items = items;
    uint32_t *generations = realloc(table->generations, capacity * sizeof *generations);
    if (generations == NULL) return UV_ENOMEM;
    table->generations = generations;
    uint32_t *free_slots = realloc(table->free_slots, capacity * sizeof *free_slots);
    if (free_slots == NULL) return UV_ENOMEM;
    table->free_slots = free_slots;
    // New slots go on the stack highest first, so that the lowest indices are used first.
    for (uint32_t index = capacity; index > table->capacity; index--) {
      items[index - 1] = NULL;
      generations[index - 1] = 0;
      free_slots[table->free_count++] = index - 1;
    }
    table->capacity = capacity;
  }
  uint32_t index = table->free_slots[--table->free_count];
  table->items[index] = item;
  *id = (double)table->generations[index] * SLOT_INDEX_RANGE + index;
  return 0;
}

/** The slot index `id` names, or -1 if `id` is not one this table could have made. */
static int64_t slot_index(const slot_table_t *table, double id, uint32_t *generation) {
  if (!(id >= 0) || id != (double)(uint64_t)id) return -1;
  uint64_t whole = (uint64_t)id;
  uint64_t index = whole % SLOT_INDEX_LIMIT;
  if (index >= table->capacity) return -1;
  *generation = (uint32_t)(whole / SLOT_INDEX_LIMIT);
  return (int64_t)index;
}

void *slots_get(const slot_table_t *table, double id) {
  uint32_t generation;
  int64_t index = slot_index(table, id, &generation);
  if (index < 0 || table->generations[index] != generation) return NULL;
  return table->items[index];
}

void slots_remove(slot_table_t *table, double id) {
  uint32_t generation;
  int64_t index = slot_index(table, id, &generation);
  if (index < 0 || table->generations[index] != generation || table->items[index] == NULL) return;
  table->items[index] = NULL;
  // Generations wrap well past any id still held: 2^29 reuses of one slot.
  table->generations[index] = (generation + 1) % (1u << 29);
  table->free_slots[table->free_count++] = (uint32_t)index;
}

void slots_free(slot_table_t *table) {
  free(table->items);
  free(table->generations);
  free(table->free_slots);
  *table = (slot_table_t){0};
}

void *slot_arg(napi_env env, napi_value value, const slot_table_t *table) {
  double id;
  if (napi_get_value_double(env, value, &id) != napi_ok) {
    clear_pending(env);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a connection id");
    return NULL;
  }
  return slots_get(table, id);
}

int parse_address(const char *ip, int port, struct sockaddr_storage *out) {
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)out) == 0) return 0;
  return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)out);
}

int duplicate_socket(int fd) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return own < 0 ? -errno : own;
}

void *only_tagged_argument(napi_env env, napi_callback_info info, const napi_type_tag *tag, const char *expected) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  return tagged_external(env, argv[0], tag, expected);
}

void call_with_count(napi_env env, napi_async_context context, napi_ref receiver, napi_ref callback, uint32_t count) {
  if (receiver == NULL || callback == NULL) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value self, function, argv[1];
  if (napi_get_reference_value(env, receiver, &self) == napi_ok && napi_get_reference_value(env, callback, &function) == napi_ok &&
      napi_create_uint32(env, count, &argv[0]) == napi_ok) {
    call_from_loop(env, context, self, function, 1, argv);
  }
  napi_close_handle_scope(env, scope);
}

void delete_references(napi_env env, napi_ref *const *refs, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (*refs[i] != NULL) napi_delete_reference(env, *refs[i]);
    *refs[i] = NULL;
  }
}

void start_turn_check(uv_loop_t *loop, uv_check_t *check, void *data, uv_check_cb on_check) {
  uv_check_init(loop, check);
  check->data = data;
  uv_check_start(check, on_check);
  uv_unref((uv_handle_t *)check);
}

void close_turn_check(uv_check_t *check, uv_close_cb on_closed) {
  if (!uv_is_closing((uv_handle_t *)check)) uv_close((uv_handle_t *)check, on_closed);
}
