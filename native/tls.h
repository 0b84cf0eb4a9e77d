// TLS on Node's own OpenSSL: server and client contexts from PEM, and what a handshake tells JavaScript.
//
// The addon links no OpenSSL of its own: the OpenSSL 3 that Node's binary carries and exports
// resolves these calls, as it does for Node's own TLS. tls_available() says whether it can.

#ifndef ECHOPLEX_TLS_H
#define ECHOPLEX_TLS_H

#include <node_api.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

/** NULL when every OpenSSL function the addon calls is in the process, at major version 3; else why not. */
const char *tls_unavailable_reason(void);

/**
 * A server context from PEM text: `cert` (the leaf, then its chain), `key`, and `ca` (NULL, or
 * the CAs whose client certificates are required: mTLS). `alpn` is the protocols to select from,
 * in ALPN wire format (NULL for none). NULL with a reason in `error` on failure.
 */
SSL_CTX *tls_server_context(const char *cert, size_t cert_length, const char *key, size_t key_length, const char *ca, size_t ca_length,
                            const unsigned char *alpn, size_t alpn_length, char *error, size_t error_size);

/** Frees a context made by tls_server_context (its ALPN list with it). */
void tls_free_context(SSL_CTX *context);

/** A server-side session on the connected socket `fd`; NULL if OpenSSL could not make one. */
SSL *tls_session(SSL_CTX *context, int fd);

/**
 * A client context (the bench's): trusting the PEM certificates in `ca` (NULL: none), checking
 * the server's certificate if `verify`, presenting `cert` and `key` if `cert` is not NULL. NULL
 * with a reason in `error` on failure.
 */
SSL_CTX *tls_client_context(const char *ca, size_t ca_length, bool verify, const char *cert, size_t cert_length, const char *key, size_t key_length,
                            char *error, size_t error_size);

/**
 * A client session that speaks through memory BIOs (SSL_get_rbio takes what the socket read,
 * SSL_get_wbio holds what to write). `host` (NULL: none) is sent as SNI when it is a name, and
 * the certificate must match it, name or address, when the context verifies. NULL on failure.
 */
SSL *tls_client_session(SSL_CTX *context, const char *host);

/** Why the server's certificate was refused, in OpenSSL's words; NULL if it was not. */
const char *tls_verify_error(SSL *ssl);

/** OpenSSL's reason for the last failure on this thread, in `out` (cleared from its queue). */
void tls_last_error(char *out, size_t size);

/**
 * What a finished handshake tells JavaScript, as an array: protocol, cipher, SNI (or null),
 * ALPN (or null), then the verified client certificate's subject as key, value pairs in its order.
 */
napi_value tls_details(napi_env env, SSL *ssl);

#endif
