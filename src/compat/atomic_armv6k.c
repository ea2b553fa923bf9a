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

#define PISEC_ATOMIC_OP(name, op)                                                  \
  uint64_t __atomic_##name##_8(volatile void* p, uint64_t v, int model) {          \
    (void)model;                                                                   \
    return __atomic_##name((volatile uint64_t*)p, v, __ATOMIC_SEQ_CST);           \
  }

/* ARMv6K has LDREXB/H, LDREX and LDREXD: naturally aligned objects of 1, 2, 4
 * and 8 bytes are lock-free, anything else is not. */
bool __atomic_is_lock_free(size_t size, const volatile void* p) {
  if (size != 1 && size != 2 && size != 4 && size != 8) return false;
  return p == NULL || ((uintptr_t)p & (size - 1)) == 0;
}

uint64_t __atomic_load_8(const volatile void* p, int model) {
  (void)model;
  return __atomic_load_n((const volatile uint64_t*)p, __ATOMIC_SEQ_CST);
}

void __atomic_store_8(volatile void* p, uint64_t v, int model) {
  (void)model;
  __atomic_store_n((volatile uint64_t*)p, v, __ATOMIC_SEQ_CST);
}

uint64_t __atomic_exchange_8(volatile void* p, uint64_t v, int model) {
  (void)model;
  return __atomic_exchange_n((volatile uint64_t*)p, v, __ATOMIC_SEQ_CST);
}

bool __atomic_compare_exchange_8(volatile void* p, void* expected, uint64_t desired,
                                 bool weak, int success, int failure) {
  (void)weak;
  (void)success;
  (void)failure;
  return __atomic_compare_exchange_n((volatile uint64_t*)p, (uint64_t*)expected, desired,
                                     false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

PISEC_ATOMIC_OP(fetch_add, fetch_add)
PISEC_ATOMIC_OP(fetch_sub, fetch_sub)
PISEC_ATOMIC_OP(fetch_and, fetch_and)
PISEC_ATOMIC_OP(fetch_or, fetch_or)
PISEC_ATOMIC_OP(fetch_xor, fetch_xor)
PISEC_ATOMIC_OP(add_fetch, add_fetch)
PISEC_ATOMIC_OP(sub_fetch, sub_fetch)
PISEC_ATOMIC_OP(and_fetch, and_fetch)
PISEC_ATOMIC_OP(or_fetch, or_fetch)
PISEC_ATOMIC_OP(xor_fetch, xor_fetch)
