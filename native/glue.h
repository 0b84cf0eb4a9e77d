// Node-API helpers shared by the addon's engines: argument checks, typed errors, callbacks into JavaScript.

#ifndef ECHOPLEX_GLUE_H
#define ECHOPLEX_GLUE_H

#include <node_api.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Returns NULL from the calling function, with an error thrown, when a Node-API call fails. */
#define CHECK(call)                                             \
  do {                                                          \
    if ((call) != napi_ok) return throw_failed(env, #call);     \
  } while (0)

/** One entry of an engine's table of exported functions (see export_functions). */
#define EXPORT_FUNCTION(name, function) {name, NULL, function, NULL, NULL, NULL, napi_enumerable, NULL}

/** Adds an engine's table of functions to the module's exports; returns exports, or NULL. */
napi_value export_functions(napi_env env, napi_value exports, const napi_property_descriptor *functions, size_t count);
/** Throws (unless an exception is already pending) the last Node-API error; returns NULL. */
napi_value throw_failed(napi_env env, const char *what);
/** Throws an Error whose code is the libuv error's name (EMFILE...); returns NULL. */
napi_value throw_status(napi_env env, int status, const char *what);
/** Fills `argv` with `expected` arguments; NULL with a TypeError thrown if there are fewer. */
napi_value get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv);
/** The C data of an external carrying `tag`; NULL with a TypeError thrown for anything else. */
void *tagged_external(napi_env env, napi_value value, const napi_type_tag *tag, const char *expected);
/** The C data of a function's only argument, an external carrying `tag`; NULL with an error thrown otherwise. */
void *only_tagged_argument(napi_env env, napi_callback_info info, const napi_type_tag *tag, const char *expected);
/** The data of a Float64Array of at least `length`; NULL with a TypeError thrown otherwise. */
double *float64_array(napi_env env, napi_value value, size_t length);
/**
 * The object JavaScript holds for `data`: an external tagged `tag`, released by `finalize`. NULL
 * with an error thrown on failure; `*held` then says whether the finalizer already owns `data`
 * (if not, the caller releases it).
 */
napi_value wrap_external(napi_env env, void *data, napi_finalize finalize, const napi_type_tag *tag, bool *held);
/** Makes the async context, named `name`, that an engine's calls into JavaScript run in. */
napi_status init_async_context(napi_env env, const char *name, napi_async_context *context);
/**
 * Connections JavaScript names by number rather than by an object: no external, reference or
 * tag per connection, which an idle connection would otherwise keep. An id is a slot's index
 * plus its generation times 2^24, a whole number a double holds exactly; a slot's generation
 * moves on when it is emptied, so an id that outlived its connection finds nothing.
 */
/** An id modulo this is its slot's index: JavaScript may keep its own table by index. */
#define SLOT_INDEX_LIMIT 16777216u
typedef struct {
  void **items;
  uint32_t *generations;
  /** Empty slots, as a stack of indices. */
  uint32_t *free_slots;
  uint32_t free_count;
  uint32_t capacity;
} slot_table_t;
/** Puts `item` in an empty slot (growing the table as needed); its id in `*id`. 0, or UV_ENOMEM. */
int slots_put(slot_table_t *table, void *item, double *id);
/** The item `id` names, or NULL if that slot has been emptied since (or never held it). */
void *slots_get(const slot_table_t *table, double id);
/** Empties the slot `id` names, if it still holds its item. */
void slots_remove(slot_table_t *table, double id);
/** Frees the table's own memory (not the items). */
void slots_free(slot_table_t *table);
/** The item a function argument names by id in `table`; NULL with a TypeError thrown if it is not a number. */
void *slot_arg(napi_env env, napi_value value, const slot_table_t *table);

/** An IPv4 or IPv6 address and port as a sockaddr; 0, or UV_EINVAL for text that is neither. */
int parse_address(const char *ip, int port, struct sockaddr_storage *out);

/** A close-on-exec duplicate of the socket `fd`, or a negative errno. */
int duplicate_socket(int fd);
/**
 * Calls `callback` with `receiver` as `this`, from a libuv callback (outside any JavaScript
 * frame): microtasks run afterwards, and a throw is reported as an uncaught exception, as from
 * any event handler.
 */
void call_from_loop(napi_env env, napi_async_context context, napi_value receiver, napi_value callback, size_t argc, const napi_value *argv);

/**
 * From the loop: calls the function `callback` refers to with `receiver`'s object as `this` and
 * `count` as its argument (see call_from_loop). Nothing happens if either reference is gone.
 */
void call_with_count(napi_env env, napi_async_context context, napi_ref receiver, napi_ref callback, uint32_t count);
/** Deletes each non-NULL reference and sets it to NULL. */
void delete_references(napi_env env, napi_ref *const *refs, size_t count);
/**
 * Starts `check` on `loop`, calling `on_check` at the end of every turn's polling, without
 * keeping the loop alive (the handles it serves do that).
 */
void start_turn_check(uv_loop_t *loop, uv_check_t *check, void *data, uv_check_cb on_check);
/** Closes `check` (its close callback lets go of what it served) unless it is closing already. */
void close_turn_check(uv_check_t *check, uv_close_cb on_closed);

#endif
