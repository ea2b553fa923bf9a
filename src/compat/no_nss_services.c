/* The static pisecd's service lookups: none.
 *
 * pisecd resolves host names only with c-ares, always with a numeric port.
 * c-ares still links getservbyname (ares_getaddrinfo, for a service given by
 * name) and getservbyport_r (ares_getnameinfo). In a static glibc binary
 * those load NSS modules with dlopen at run time — modules that do not exist
 * on the device — and glibc's link warns about it. Linked into the static
 * pisecd only (CMakeLists.txt), these answer "no such service" instead. */
#include <netdb.h>
#include <stddef.h>

struct servent* getservbyname(const char* name, const char* proto) {
  (void)name;
  (void)proto;
  return NULL;
}

int getservbyport_r(int port, const char* proto, struct servent* result_buf, char* buf, size_t buflen,
                    struct servent** result) {
  (void)port;
  (void)proto;
  (void)result_buf;
  (void)buf;
  (void)buflen;
  *result = NULL;
  return 0;
}
