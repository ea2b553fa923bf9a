/* The static pisecd's C++ demangler: none (40 kB of libstdc++'s
 * cp-demangle.o on ARMv6).
 *
 * Only libstdc++'s verbose terminate handler calls __cxa_demangle, to name
 * the type of an uncaught exception; pisecd catches every exception in
 * main(), so that message is a last resort. With this definition linked
 * first, the handler prints the mangled name (what it does anyway when
 * demangling fails: status -2, "not a valid name"). Linked into the static
 * pisecd only (CMakeLists.txt). */
#include <stddef.h>

char* __cxa_demangle(const char* mangled, char* out, size_t* length, int* status);

char* __cxa_demangle(const char* mangled, char* out, size_t* length, int* status) {
  (void)mangled;
  (void)out;
  (void)length;
  if (status != NULL) *status = -2;
  return NULL;
}
