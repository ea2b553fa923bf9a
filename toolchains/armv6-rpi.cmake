# Raspberry Pi 1B (ARM1176JZF-S, ARMv6KZ + VFPv2), fully static.
#
# Expects Debian's arm-linux-gnueabi cross compiler (package g++-arm-linux-gnueabi,
# the armel ABI: soft-float calling convention, ARMv5TE baseline libraries), a
# sysroot of armel -dev packages unpacked by scripts/setup.sh into
# build/sysroot-armel, and OpenSSL built from Debian's source with only what
# pisecd uses by scripts/openssl-armv6.sh into build/openssl-armv6 (setup.sh
# runs it). Debian's armhf libraries target ARMv7 and are never used.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv6)

set(PISEC_CROSS arm-linux-gnueabi)
set(CMAKE_C_COMPILER ${PISEC_CROSS}-gcc)
set(CMAKE_CXX_COMPILER ${PISEC_CROSS}-g++)

get_filename_component(_pisec_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT DEFINED PISEC_ARMEL_SYSROOT)
  set(PISEC_ARMEL_SYSROOT "${_pisec_root}/build/sysroot-armel")
endif()
if(NOT DEFINED PISEC_OPENSSL_ARMV6)
  set(PISEC_OPENSSL_ARMV6 "${_pisec_root}/build/openssl-armv6")
endif()
if(NOT EXISTS "${PISEC_ARMEL_SYSROOT}/usr/include/seccomp.h")
  message(FATAL_ERROR "armel sysroot missing at ${PISEC_ARMEL_SYSROOT}: run scripts/setup.sh")
endif()
if(NOT EXISTS "${PISEC_OPENSSL_ARMV6}/include/openssl/ssl.h")
  message(FATAL_ERROR "ARMv6 OpenSSL missing at ${PISEC_OPENSSL_ARMV6}: run scripts/setup.sh")
endif()

# Thumb (Thumb-1 on ARMv6): about a third smaller than ARM code. Thumb-1 has no
# LDREX/STREX, so GCC turns 32-bit atomics into libgcc's __sync_* calls, which
# use the kernel's user helpers (__kuser_cmpxchg, __kuser_memory_barrier) —
# as Debian's armel glibc and libstdc++ (built for ARMv5TE) already do;
# 64-bit ones go to src/compat/atomic_armv6k.c (ARM code, LDREXD).
set(_pisec_cpu_flags "-march=armv6 -mfpu=vfp -mfloat-abi=softfp -mthumb")
set(CMAKE_C_FLAGS_INIT "${_pisec_cpu_flags}")
# -Wno-psabi: GCC notes that passing some std::vector iterators "changed in GCC
# 7.1"; that only matters when linking with code built by GCC < 7.1, and this
# static binary is built entirely by one GCC 12.
set(CMAKE_CXX_FLAGS_INIT "${_pisec_cpu_flags} -Wno-psabi")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# Libraries and headers come from the armel sysroot first; the cross compiler's
# own glibc lives in /usr/arm-linux-gnueabi.
set(CMAKE_FIND_ROOT_PATH "${PISEC_OPENSSL_ARMV6}" "${PISEC_ARMEL_SYSROOT}" /usr/${PISEC_CROSS})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FIND_LIBRARY_SUFFIXES .a)

set(ENV{PKG_CONFIG_SYSROOT_DIR} "${PISEC_ARMEL_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR} "${PISEC_ARMEL_SYSROOT}/usr/lib/arm-linux-gnueabi/pkgconfig:${PISEC_ARMEL_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(OPENSSL_ROOT_DIR "${PISEC_OPENSSL_ARMV6}")

# Run target binaries (tests) on an emulated ARM1176, which traps ARMv7 code.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm-static -cpu arm1176)

# Debian keeps arch-specific headers in a multiarch directory.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES "${PISEC_ARMEL_SYSROOT}/usr/include/${PISEC_CROSS}")
set(CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES "${PISEC_ARMEL_SYSROOT}/usr/include/${PISEC_CROSS}")
