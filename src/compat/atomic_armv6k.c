/* 64-bit atomics for ARMv6K, replacing libatomic on the Pi 1B build.
 *
 * Debian's armel libcrypto.a calls __atomic_*_8 helpers. libatomic provides
 * them, but its copies are selected at run time among ARMv7 variants, which
 * marks the whole static binary Tag_CPU_arch v7 (and elfcheck rightly refuses
 * it). The ARM1176JZF-S is ARMv6KZ and has LDREXD/STREXD, so this file, built
 * with -march=armv6kz, lets GCC inline the exclusive-access loops and exports
 * the few entry points libcrypto needs. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__ARM_ARCH_6K__) && !defined(__ARM_ARCH_6KZ__)
#error "build this file with -march=armv6k or -march=armv6kz"
#endif

/* Everything below is explicit LDREXD/STREXD. The __atomic_* builtins must not
 * be used here: where GCC does not inline them it emits a call to the very
 * function being defined, which -Os folded into an endless `b .` (OpenSSL's
 * first __atomic_fetch_or_8 then hung for ever on ARMv6). */
static inline void barrier(void) { __asm__ __volatile__("mcr p15, 0, %0, c7, c10, 5" : : "r"(0) : "memory"); }

static inline uint64_t load_exclusive(const volatile void* p) {
  uint64_t v;
  __asm__ __volatile__("ldrexd %0, %H0, [%1]" : "=&r"(v) : "r"(p) : "memory");
  return v;
}

/* 0 when the store happened, 1 when the reservation was lost. */
static inline uint32_t store_exclusive(volatile void* p, uint64_t v) {
  uint32_t failed;
  __asm__ __volatile__("strexd %0, %2, %H2, [%1]" : "=&r"(failed) : "r"(p), "r"(v) : "memory");
  return failed;
}

static inline void clear_exclusive(void) { __asm__ __volatile__("clrex" : : : "memory"); }

#define PISEC_ATOMIC_OP(name, expr, return_old)                          \
  uint64_t __atomic_##name##_8(volatile void* p, uint64_t v, int model) { \
    uint64_t old, desired;                                               \
    (void)model;                                                         \
    barrier();                                                           \
    do {                                                                 \
      old = load_exclusive(p);                                           \
      desired = (expr);                                                  \
    } while (store_exclusive(p, desired));                               \
    barrier();                                                           \
    return (return_old) ? old : desired;                                 \
  }

/* ARMv6K has LDREXB/H, LDREX and LDREXD: naturally aligned objects of 1, 2, 4
 * and 8 bytes are lock-free, anything else is not. */
bool __atomic_is_lock_free(size_t size, const volatile void* p) {
  if (size != 1 && size != 2 && size != 4 && size != 8) return false;
  return p == NULL || ((uintptr_t)p & (size - 1)) == 0;
}

/* LDREXD is single-copy atomic for 8 bytes; a plain LDRD is not on ARMv6. */
uint64_t __atomic_load_8(const volatile void* p, int model) {
  (void)model;
  barrier();
  uint64_t v = load_exclusive(p);
  clear_exclusive();
  barrier();
  return v;
}

void __atomic_store_8(volatile void* p, uint64_t v, int model) {
  (void)model;
  barrier();
  do {
    (void)load_exclusive(p);
  } while (store_exclusive(p, v));
  barrier();
}

bool __atomic_compare_exchange_8(volatile void* p, void* expected, uint64_t desired,
                                 bool weak, int success, int failure) {
  (void)weak;
  (void)success;
  (void)failure;
  uint64_t want = *(uint64_t*)expected;
  barrier();
  for (;;) {
    uint64_t cur = load_exclusive(p);
    if (cur != want) {
      clear_exclusive();
      barrier();
      *(uint64_t*)expected = cur;
      return false;
    }
    if (!store_exclusive(p, desired)) break;
  }
  barrier();
  return true;
}

PISEC_ATOMIC_OP(exchange, v, 1)
PISEC_ATOMIC_OP(fetch_add, old + v, 1)
PISEC_ATOMIC_OP(fetch_sub, old - v, 1)
PISEC_ATOMIC_OP(fetch_and, old & v, 1)
PISEC_ATOMIC_OP(fetch_or, old | v, 1)
PISEC_ATOMIC_OP(fetch_xor, old ^ v, 1)
PISEC_ATOMIC_OP(add_fetch, old + v, 0)
PISEC_ATOMIC_OP(sub_fetch, old - v, 0)
PISEC_ATOMIC_OP(and_fetch, old & v, 0)
PISEC_ATOMIC_OP(or_fetch, old | v, 0)
PISEC_ATOMIC_OP(xor_fetch, old ^ v, 0)
