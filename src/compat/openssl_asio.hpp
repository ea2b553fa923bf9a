// Include before <boost/asio/ssl.hpp>.
//
// Boost.Asio 1.74's ssl::context names OpenSSL's deprecated RSA and DH key
// functions in inline members pisecd never calls (use_rsa_private_key*,
// use_tmp_dh*). The ARMv6 OpenSSL is built without them (no-deprecated,
// no-dh: scripts/openssl-armv6.sh). Declared here, never defined: Asio
// compiles, nothing references them, and a call would fail to link rather
// than misbehave. With a full OpenSSL (the host build) this adds nothing.
#pragma once

#include <openssl/pem.h>
#include <openssl/ssl.h>

#if defined(OPENSSL_NO_DEPRECATED_3_0)
extern "C" {
typedef struct rsa_st RSA;
void RSA_free(RSA* r);
RSA* d2i_RSAPrivateKey_bio(BIO* bp, RSA** rsa);
RSA* PEM_read_bio_RSAPrivateKey(BIO* bp, RSA** x, pem_password_cb* cb, void* u);
int SSL_CTX_use_RSAPrivateKey(SSL_CTX* ctx, RSA* rsa);
int SSL_CTX_use_RSAPrivateKey_file(SSL_CTX* ctx, const char* file, int type);
void DH_free(DH* dh);
DH* PEM_read_bio_DHparams(BIO* bp, DH** x, pem_password_cb* cb, void* u);
long SSL_CTX_set_tmp_dh(SSL_CTX* ctx, DH* dh);
}
#endif
