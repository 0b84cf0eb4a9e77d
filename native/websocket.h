// RFC 6455 framing, as pure functions on bytes: frame headers, unmasking, UTF-8 checks, close codes.
//
// The engines call these; what to do about a frame (reply, close, which code) is theirs. Shared
// by the server's engine and the bench's, which frames the client side of the same protocol.

#ifndef ECHOPLEX_WEBSOCKET_H
#define ECHOPLEX_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
  WS_CONTINUATION = 0x0,
  WS_TEXT = 0x1,
  WS_BINARY = 0x2,
  WS_CLOSE = 0x8,
  WS_PING = 0x9,
  WS_PONG = 0xA,
};

/**
 * Why a connection was closed for breaking the protocol: JavaScript words each one
 * (src/server/engines/native-websocket.ts). Values are stable: they cross into TypeScript.
 */
typedef enum {
  WS_OK = 0,
  WS_ERR_RESERVED_BITS = 1,
  WS_ERR_UNMASKED = 2,
  WS_ERR_BAD_OPCODE = 3,
  WS_ERR_CONTROL_FRAGMENTED = 4,
  WS_ERR_CONTROL_TOO_LONG = 5,
  WS_ERR_LENGTH_TOO_LARGE = 6,
  WS_ERR_EXPECTED_CONTINUATION = 7,
  WS_ERR_UNEXPECTED_CONTINUATION = 8,
  WS_ERR_MESSAGE_TOO_BIG = 9,
  WS_ERR_INVALID_UTF8 = 10,
  WS_ERR_BAD_CLOSE_PAYLOAD = 11,
  WS_ERR_BAD_CLOSE_CODE = 12,
  /** A server's frame with a mask (the bench's side). */
  WS_ERR_MASKED = 13,
} ws_error_t;

/** The close code each error is answered with: 1009 too big, 1007 bad UTF-8, 1002 the rest. */
uint16_t ws_close_code_for(ws_error_t error);

typedef struct {
  bool fin;
  uint8_t opcode;
  uint8_t mask[4];
  uint64_t length;
} ws_header_t;

/**
 * Reads a client frame's header from `bytes`: its length (the payload follows), 0 while it is
 * incomplete, or a negative ws_error_t for a header no client may send (reserved bits, no mask,
 * an unknown opcode, a fragmented or long control frame, a length with its top bit set).
 */
int ws_read_client_header(const uint8_t *bytes, size_t length, ws_header_t *header);

/** As ws_read_client_header, for either side: a client's frames are `masked`, a server's are not. */
int ws_read_header(const uint8_t *bytes, size_t length, bool masked, ws_header_t *header);

/** XORs `length` bytes with the frame's mask, in place: unmasks, or masks. */
void ws_unmask(uint8_t *payload, size_t length, const uint8_t mask[4]);

/** Bytes a server frame's header takes for a payload of `length`: 2, 4 or 10. */
size_t ws_server_header_length(uint64_t length);

/** Writes a final, unmasked frame's header into `out` (ws_server_header_length bytes). */
void ws_write_server_header(uint8_t *out, uint8_t opcode, uint64_t length);

/** Writes a final, masked frame's header (a client's) into `out`; returns its length: 6, 8 or 14 bytes. */
size_t ws_write_client_header(uint8_t *out, uint8_t opcode, uint64_t length, const uint8_t mask[4]);

/**
 * Checks `length` more bytes of a UTF-8 text, carrying `*state` across fragments (0 at the
 * start of a message; 0 again at a character boundary). False at the first byte that cannot be UTF-8.
 */
bool ws_utf8_continue(uint32_t *state, const uint8_t *bytes, size_t length);

/** A close code a peer may send (RFC 6455 7.4, as the ws library takes it). */
bool ws_close_code_valid(uint16_t code);

#endif
