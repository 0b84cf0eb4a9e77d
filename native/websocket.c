// RFC 6455 framing, as pure functions on bytes: frame headers of both sides, masking, UTF-8 checks, close codes.

#include "websocket.h"

#include <string.h>

uint16_t ws_close_code_for(ws_error_t error) {
  if (error == WS_ERR_MESSAGE_TOO_BIG || error == WS_ERR_LENGTH_TOO_LARGE) return 1009;
  if (error == WS_ERR_INVALID_UTF8) return 1007;
  return 1002;
}

int ws_read_header(const uint8_t *bytes, size_t length, bool masked, ws_header_t *header) {
  if (length < 2) return 0;
  uint8_t first = bytes[0], second = bytes[1];
  if (first & 0x70) return -WS_ERR_RESERVED_BITS;
  uint8_t opcode = first & 0x0F;
  bool control = opcode & 0x8;
  if (opcode > WS_BINARY && opcode != WS_CLOSE && opcode != WS_PING && opcode != WS_PONG) return -WS_ERR_BAD_OPCODE;
  if ((bool)(second & 0x80) != masked) return masked ? -WS_ERR_UNMASKED : -WS_ERR_MASKED;
  header->fin = first & 0x80;
  header->opcode = opcode;
  uint64_t payload = second & 0x7F;
  if (control && !header->fin) return -WS_ERR_CONTROL_FRAGMENTED;
  if (control && payload > 125) return -WS_ERR_CONTROL_TOO_LONG;
  size_t at = 2;
  if (payload == 126) {
    if (length < at + 2) return 0;
    payload = (uint64_t)bytes[2] << 8 | bytes[3];
    at += 2;
  } else if (payload == 127) {
    if (length < at + 8) return 0;
    payload = 0;
    for (int i = 0; i < 8; i++) payload = payload << 8 | bytes[2 + i];
    if (payload >> 63) return -WS_ERR_LENGTH_TOO_LARGE;
    at += 8;
  }
  header->length = payload;
  if (!masked) return (int)at;
  if (length < at + 4) return 0;
  memcpy(header->mask, bytes + at, 4);
  return (int)(at + 4);
}

int ws_read_client_header(const uint8_t *bytes, size_t length, ws_header_t *header) {
  return ws_read_header(bytes, length, true, header);
}

void ws_unmask(uint8_t *payload, size_t length, const uint8_t mask[4]) {
  uint32_t word;
  memcpy(&word, mask, 4);
  uint64_t wide = (uint64_t)word << 32 | word;
  size_t i = 0;
  // Eight bytes at a time: the mask repeats every four, so a doubled word lines up.
  for (; i + 8 <= length; i += 8) {
    uint64_t chunk;
    memcpy(&chunk, payload + i, 8);
    chunk ^= wide;
    memcpy(payload + i, &chunk, 8);
  }
  for (; i < length; i++) payload[i] ^= mask[i & 3];
}

size_t ws_server_header_length(uint64_t length) {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

void ws_write_server_header(uint8_t *out, uint8_t opcode, uint64_t length) {
  out[0] = 0x80 | opcode;
  if (length < 126) {
    out[1] = (uint8_t)length;
  } else if (length < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(length >> 8);
    out[3] = (uint8_t)length;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(length >> (56 - 8 * i));
  }
}

size_t ws_write_client_header(uint8_t *out, uint8_t opcode, uint64_t length, const uint8_t mask[4]) {
  ws_write_server_header(out, opcode, length);
  size_t at = ws_server_header_length(length);
  out[1] |= 0x80;
  memcpy(out + at, mask, 4);
  return at + 4;
}

// The state packs the continuation bytes still due (low byte) and the range the next one must
// fall in (which rules out overlong forms, surrogates and code points past U+10FFFF).
#define UTF8_STATE(need, low, high) ((uint32_t)(need) | (uint32_t)(low) << 8 | (uint32_t)(high) << 16)

bool ws_utf8_continue(uint32_t *state, const uint8_t *bytes, size_t length) {
  uint32_t s = *state;
  size_t i = 0;
  while (i < length) {
    if (s == 0) {
      // ASCII runs, eight bytes at a time.
      while (i + 8 <= length) {
        uint64_t chunk;
        memcpy(&chunk, bytes + i, 8);
        if (chunk & 0x8080808080808080ULL) break;
        i += 8;
      }
      if (i >= length) break;
      uint8_t b = bytes[i++];
      if (b < 0x80) continue;
      if (b >= 0xC2 && b <= 0xDF) s = UTF8_STATE(1, 0x80, 0xBF);
      else if (b == 0xE0) s = UTF8_STATE(2, 0xA0, 0xBF);
      else if (b == 0xED) s = UTF8_STATE(2, 0x80, 0x9F);
      else if (b >= 0xE1 && b <= 0xEF) s = UTF8_STATE(2, 0x80, 0xBF);
      else if (b == 0xF0) s = UTF8_STATE(3, 0x90, 0xBF);
      else if (b >= 0xF1 && b <= 0xF3) s = UTF8_STATE(3, 0x80, 0xBF);
      else if (b == 0xF4) s = UTF8_STATE(3, 0x80, 0x8F);
      else {
        *state = s;
        return false;
      }
    } else {
      uint8_t b = bytes[i++];
      if (b < ((s >> 8) & 0xFF) || b > ((s >> 16) & 0xFF)) {
        *state = s;
        return false;
      }
      uint32_t need = (s & 0xFF) - 1;
      s = need == 0 ? 0 : UTF8_STATE(need, 0x80, 0xBF);
    }
  }
  *state = s;
  return true;
}

bool ws_close_code_valid(uint16_t code) {
  return (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) || (code >= 3000 && code <= 4999);
}
