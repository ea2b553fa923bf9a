// What the boot sequence touched and the idle daemon no longer uses, given
// back to the kernel (issue 14): free heap pages, and the main thread's stack
// below the caller.
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "pisec/util.hpp"

namespace pisec::util {

std::size_t release_unused_stack(std::size_t margin) {
  if (::gettid() != ::getpid()) return 0;  // only the main thread's stack is "[stack]"
  const auto maps = read_text_file("/proc/self/maps");
  if (!maps) return 0;
  const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  std::size_t released = 0;
  text::for_each_line(*maps, [&](std::string_view line) {
    if (!line.ends_with("[stack]") || released) return;
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    if (dash == std::string_view::npos || space == std::string_view::npos || space < dash) return;
    std::uintptr_t lo = 0, hi = 0;
    if (std::from_chars(line.data(), line.data() + dash, lo, 16).ec != std::errc{} ||
        std::from_chars(line.data() + dash + 1, line.data() + space, hi, 16).ec != std::errc{})
      return;
    if (here <= lo || here >= hi || here - lo <= margin) return;  // not on it, or nothing below to give
    // Below the caller, less the margin: signal frames and the next calls land
    // there first. Pages given back read as zeros when touched again.
    const std::uintptr_t end = (here - margin) & ~(page - 1);
    if (end > lo && ::madvise(reinterpret_cast<void*>(lo), end - lo, MADV_DONTNEED) == 0) released = end - lo;
  });
  return released;
}

void release_unused_memory() {
  ::malloc_trim(0);
  release_unused_stack();
}

}  // namespace pisec::util
