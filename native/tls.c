// TLS on Node's own OpenSSL: server and client contexts from PEM, and what a handshake tells JavaScript.

// RTLD_DEFAULT
#define _GNU_SOURCE
#include "tls.h"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/**
 * Every OpenSSL function the addon calls (macros such as SSL_CTX_set_mode expand to the *_ctrl
 * ones). Node is loaded with its symbols exported; an embedder or a build without them would
 * crash at the first call, so the engine asks first.
 */
static const char *const REQUIRED[] = {
    "OPENSSL_version_major", "TLS_server_method", "SSL_CTX_new", "SSL_CTX_free", "SSL_CTX_ctrl", "SSL_CTX_set_options",
    "SSL_CTX_use_certificate", "SSL_CTX_use_PrivateKey", "SSL_CTX_check_private_key", "SSL_CTX_get_cert_store",
    "SSL_CTX_add_client_CA", "SSL_CTX_set_verify", "SSL_CTX_set_session_id_context", "SSL_CTX_set_alpn_select_cb",
    "SSL_CTX_set_ex_data", "SSL_CTX_get_ex_data", "SSL_get_SSL_CTX", "SSL_select_next_proto", "SSL_new", "SSL_free",
    "SSL_set_fd", "SSL_set_accept_state", "SSL_do_handshake", "SSL_read_ex", "SSL_write_ex", "SSL_shutdown",
    "SSL_get_error", "SSL_has_pending", "SSL_ctrl", "SSL_get_version", "SSL_get_current_cipher", "SSL_CIPHER_get_name",
    "SSL_get_servername", "SSL_get0_alpn_selected", "SSL_get0_peer_certificate", "SSL_get_verify_result",
    "X509_get_subject_name", "X509_NAME_entry_count", "X509_NAME_get_entry", "X509_NAME_ENTRY_get_object",
    "X509_NAME_ENTRY_get_data", "OBJ_obj2nid", "OBJ_nid2sn", "OBJ_obj2txt", "ASN1_STRING_to_UTF8", "CRYPTO_free",
    "BIO_new_mem_buf", "BIO_free", "PEM_read_bio_X509", "PEM_read_bio_PrivateKey", "X509_free", "EVP_PKEY_free",
    "X509_STORE_add_cert", "ERR_get_error", "ERR_error_string_n", "ERR_clear_error", "CRYPTO_get_ex_new_index",
    // The bench's client side.
    "TLS_client_method", "BIO_new", "BIO_s_mem", "BIO_read", "BIO_write", "BIO_ctrl", "SSL_set_bio", "SSL_set_connect_state",
    "SSL_set1_host", "SSL_get0_param", "X509_VERIFY_PARAM_set1_ip_asc", "X509_verify_cert_error_string",
};

const char *tls_unavailable_reason(void) {
  static char reason[160];
  for (size_t i = 0; i < sizeof REQUIRED / sizeof REQUIRED[0]; i++) {
    if (dlsym(RTLD_DEFAULT, REQUIRED[i]) == NULL) {
      snprintf(reason, sizeof reason, "this Node.js does not export OpenSSL's %s", REQUIRED[i]);
      return reason;
    }
  }
  unsigned major = OPENSSL_version_major();
  if (major != 3) {
    snprintf(reason, sizeof reason, "this Node.js carries OpenSSL %u, not 3", major);
    return reason;
  }
  return NULL;
}

void tls_last_error(char *out, size_t size) {
  unsigned long code = ERR_get_error();
  unsigned long next;
  // The first error queued is the cause; the rest are where it surfaced.
  while ((next = ERR_get_error()) != 0) (void)next;
  if (code == 0) snprintf(out, size, "unknown TLS error");
  else ERR_error_string_n(code, out, size);
}

/** The server's ALPN list (wire format), kept on its context. */
typedef struct {
  size_t length;
  unsigned char bytes[];
} alpn_list_t;

static int alpn_index = -1;

/**
 * Picks the server's first protocol that the client offers. A client that offers only others is
 * refused with no_application_protocol (RFC 7301 3.2), as Node's own TLS server refuses it.
 */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_length, const unsigned char *offered, unsigned int offered_length, void *arg) {
  (void)ssl;
  const alpn_list_t *ours = arg;
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, out_length, ours->bytes, (unsigned)ours->length, offered, offered_length) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

/** Each PEM certificate in `bio`, in order, to `each`; the count, or -1 if `each` failed. */
static int read_certificates(BIO *bio, int (*each)(SSL_CTX *, X509 *, int), SSL_CTX *context) {
  int count = 0;
  X509 *cert;
  while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    int ok = each(context, cert, count);
    X509_free(cert);
    if (!ok) return -1;
    count++;
  }
  // The end of the text reads as "no start line": not an error once something was read.
  ERR_clear_error();
  return count;
}

static int use_identity_certificate(SSL_CTX *context, X509 *cert, int index) {
  // SSL_CTX_add1_chain_cert takes its own reference.
  return index == 0 ? SSL_CTX_use_certificate(context, cert) : (int)SSL_CTX_add1_chain_cert(context, cert);
}

static int trust_client_ca(SSL_CTX *context, X509 *cert, int index) {
  (void)index;
  return X509_STORE_add_cert(SSL_CTX_get_cert_store(context), cert) && SSL_CTX_add_client_CA(context, cert);
}

static int trust_server_ca(SSL_CTX *context, X509 *cert, int index) {
  (void)index;
  return X509_STORE_add_cert(SSL_CTX_get_cert_store(context), cert);
}

/** Loads a certificate (then its chain) and its key; NULL, or what could not be loaded. */
static const char *load_identity(SSL_CTX *context, const char *cert, size_t cert_length, const char *key, size_t key_length) {
  BIO *bio = BIO_new_mem_buf(cert, (int)cert_length);
  bool ok = bio != NULL && read_certificates(bio, use_identity_certificate, context) > 0;
  BIO_free(bio);
  if (!ok) return "the certificate";
  bio = BIO_new_mem_buf(key, (int)key_length);
  EVP_PKEY *pkey = bio == NULL ? NULL : PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  ok = pkey != NULL && SSL_CTX_use_PrivateKey(context, pkey) && SSL_CTX_check_private_key(context);
  EVP_PKEY_free(pkey);
  BIO_free(bio);
  return ok ? NULL : "the private key";
}

static SSL_CTX *context_failed(SSL_CTX *context, const char *failed, char *error, size_t error_size) {
  char reason[200];
  tls_last_error(reason, sizeof reason);
  snprintf(error, error_size, "cannot load %s: %s", failed, reason);
  tls_free_context(context);
  return NULL;
}

SSL_CTX *tls_server_context(const char *cert, size_t cert_length, const char *key, size_t key_length, const char *ca, size_t ca_length,
                            const unsigned char *alpn, size_t alpn_length, char *error, size_t error_size) {
  ERR_clear_error();
  SSL_CTX *context = SSL_CTX_new(TLS_server_method());
  if (context == NULL) {
    tls_last_error(error, error_size);
    return NULL;
  }
  // Node's defaults: TLS 1.2 and up; our own buffers instead of OpenSSL's while a connection is idle.
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // A client that closes without close_notify has ended its stream, as Node reads it.
  SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  // Without an id context, a session with a client certificate cannot be resumed.
  static const unsigned char ID_CONTEXT[] = "echoplex";
  SSL_CTX_set_session_id_context(context, ID_CONTEXT, sizeof ID_CONTEXT - 1);
  const char *failed = load_identity(context, cert, cert_length, key, key_length);
  bool ok = failed == NULL;
  BIO *bio;
  if (ok && ca != NULL) {
    bio = BIO_new_mem_buf(ca, (int)ca_length);
    if (bio == NULL || read_certificates(bio, trust_client_ca, context) <= 0) ok = false, failed = "the CA certificates";
    BIO_free(bio);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  if (ok && alpn != NULL && alpn_length > 0) {
    if (alpn_index < 0) alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    alpn_list_t *list = malloc(sizeof *list + alpn_length);
    if (list == NULL || alpn_index < 0 || !SSL_CTX_set_ex_data(context, alpn_index, list)) {
      free(list);
      ok = false, failed = "the ALPN list";
    } else {
      list->length = alpn_length;
      memcpy(list->bytes, alpn, alpn_length);
      SSL_CTX_set_alpn_select_cb(context, select_alpn, list);
    }
  }
  if (!ok) return context_failed(context, failed, error, error_size);
  return context;
}

SSL_CTX *tls_client_context(const char *ca, size_t ca_length, bool verify, const char *cert, size_t cert_length, const char *key, size_t key_length,
                            char *error, size_t error_size) {
  ERR_clear_error();
  SSL_CTX *context = SSL_CTX_new(TLS_client_method());
  if (context == NULL) {
    tls_last_error(error, error_size);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(context, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  const char *failed = NULL;
  if (ca != NULL && ca_length > 0) {
    BIO *bio = BIO_new_mem_buf(ca, (int)ca_length);
    if (bio == NULL || read_certificates(bio, trust_server_ca, context) <= 0) failed = "the CA certificates";
    BIO_free(bio);
  }
  if (failed == NULL && cert != NULL) failed = load_identity(context, cert, cert_length, key, key_length);
  if (failed != NULL) return context_failed(context, failed, error, error_size);
  return context;
}

SSL *tls_client_session(SSL_CTX *context, const char *host) {
  SSL *ssl = SSL_new(context);
  BIO *in = BIO_new(BIO_s_mem());
  BIO *out = BIO_new(BIO_s_mem());
  if (ssl == NULL || in == NULL || out == NULL) {
    SSL_free(ssl);
    BIO_free(in);
    BIO_free(out);
    return NULL;
  }
  // An empty memory BIO is "try again", not the end of the stream.
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(ssl, in, out);
  SSL_set_connect_state(ssl);
  if (host != NULL) {
    // As Node's tls.connect: SNI for a name (never for an address), and the certificate must name the host.
    bool address = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    if (!address && (!SSL_set_tlsext_host_name(ssl, host) || !SSL_set1_host(ssl, host))) {
      SSL_free(ssl);
      return NULL;
    }
  }
  return ssl;
}

const char *tls_verify_error(SSL *ssl) {
  long result = SSL_get_verify_result(ssl);
  return result == X509_V_OK ? NULL : X509_verify_cert_error_string(result);
}

void tls_free_context(SSL_CTX *context) {
  if (context == NULL) return;
  if (alpn_index >= 0) free(SSL_CTX_get_ex_data(context, alpn_index));
  SSL_CTX_free(context);
}

SSL *tls_session(SSL_CTX *context, int fd) {
  SSL *ssl = SSL_new(context);
  if (ssl == NULL) return NULL;
  if (!SSL_set_fd(ssl, fd)) {
    SSL_free(ssl);
    return NULL;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

static napi_status set_string(napi_env env, napi_value array, uint32_t index, const char *text, size_t length) {
  napi_value value;
  napi_status status = text == NULL ? napi_get_null(env, &value) : napi_create_string_utf8(env, text, length, &value);
  return status != napi_ok ? status : napi_set_element(env, array, index, value);
}

napi_value tls_details(napi_env env, SSL *ssl) {
  napi_value array;
  if (napi_create_array(env, &array) != napi_ok) return NULL;
  const unsigned char *alpn = NULL;
  unsigned alpn_length = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_length);
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
  const char *cipher_name = cipher == NULL ? NULL : SSL_CIPHER_get_name(cipher);
  if (set_string(env, array, 0, SSL_get_version(ssl), NAPI_AUTO_LENGTH) != napi_ok ||
      set_string(env, array, 1, cipher_name, NAPI_AUTO_LENGTH) != napi_ok || set_string(env, array, 2, sni, NAPI_AUTO_LENGTH) != napi_ok ||
      set_string(env, array, 3, alpn_length > 0 ? (const char *)alpn : NULL, alpn_length) != napi_ok)
    return NULL;
  X509 *peer = SSL_get0_peer_certificate(ssl);
  if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK) return array;
  const X509_NAME *name = X509_get_subject_name(peer);
  uint32_t index = 4;
  for (int i = 0; i < X509_NAME_entry_count(name); i++) {
    const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT *object = X509_NAME_ENTRY_get_object(entry);
    int nid = OBJ_obj2nid(object);
    char key[80];
    const char *short_name = nid == NID_undef ? NULL : OBJ_nid2sn(nid);
    if (short_name == NULL) {
      OBJ_obj2txt(key, sizeof key, object, 1);
      short_name = key;
    }
    unsigned char *value = NULL;
    int length = ASN1_STRING_to_UTF8(&value, X509_NAME_ENTRY_get_data(entry));
    if (length < 0) continue;
    napi_status status = set_string(env, array, index++, short_name, NAPI_AUTO_LENGTH);
    if (status == napi_ok) status = set_string(env, array, index++, (const char *)value, (size_t)length);
    OPENSSL_free(value);
    if (status != napi_ok) return NULL;
  }
  return array;
}
