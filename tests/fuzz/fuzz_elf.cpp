// libFuzzer target for the ELF / build-attribute / Go build info parsers:
// any input must yield a verdict or a FormatError, never a crash or an
// out-of-bounds read (run under ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <span>

#include "pisec/formats.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // libFuzzer's empty input is never a null pointer; an empty file's span is.
  static const bool empty_checked = [] {
    (void)pisec::elf::check_elf(std::span<const std::uint8_t>(), pisec::elf::Target::host);
    return true;
  }();
  (void)empty_checked;
  std::span<const std::uint8_t> bytes(data, size);
  using pisec::elf::Target;
  for (Target t : {Target::armv6, Target::host}) {
    auto v = pisec::elf::check_elf(bytes, t);
    (void)pisec::elf::describe(v, t);
  }
  // The section parsers on their own reach deeper than through a whole ELF.
  try {
    (void)pisec::elf::parse_arm_attributes(bytes);
  } catch (const pisec::elf::FormatError&) {
  }
  try {
    (void)pisec::elf::parse_go_buildinfo(bytes);
  } catch (const pisec::elf::FormatError&) {
  }
  return 0;
}
