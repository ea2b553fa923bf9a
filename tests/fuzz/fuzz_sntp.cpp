// libFuzzer target for an SNTP reply as the clock gate judges it: the 48
// bytes (or any other length) a server or anyone on the path sends, with
// our side of the exchange (send time, round trip, floor) from the same
// input. Any packet must be refused with a reason or give a sample, never
// crash or overflow (ASan/UBSan), and an accepted sample must keep the
// promises the selection relies on (time within floor and horizon,
// non-negative delay).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "pisec/gates/clock.hpp"

namespace clk = pisec::clock;

namespace {

std::uint64_t take64(const std::uint8_t*& p, std::size_t& left) {
  std::uint64_t v = 0;
  const std::size_t n = left < 8 ? left : 8;
  std::memcpy(&v, p, n);
  p += n;
  left -= n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint8_t* p = data;
  std::size_t left = size;
  // Our side, within what the gate can see: CLOCK_REALTIME anywhere in
  // 1970..2116 (it is what is being set), a round trip under the 2 s
  // timeout, a floor between 2001 and 2106 (build or release time).
  clk::Limits limits;
  limits.floor_unix = static_cast<std::int64_t>(1'000'000'000 + take64(p, left) % 3'294'967'295ULL);
  clk::Exchange ex;
  ex.t1 = static_cast<clk::UnixNanos>(take64(p, left) % (1ULL << 62));
  ex.rtt_ns = static_cast<std::int64_t>(take64(p, left) % 2'000'000'001ULL);
  ex.from_server = true;
  const std::span<const std::uint8_t> packet(p, left);
  // The origin timestamp must echo our nonce: use the packet's own, as a
  // server on the path would, so the checks behind it are reached.
  if (left >= 32) {
    std::uint64_t origin = 0;
    for (std::size_t i = 24; i < 32; ++i) origin = origin << 8 | p[i];
    ex.nonce = origin;
  }
  (void)clk::parse_reply(packet);
  const clk::Verdict v = clk::validate_reply(packet, ex, limits);
  if (v.sample.has_value() == !v.refusal.empty()) __builtin_trap();  // exactly one of them
  if (v.sample) {
    if (v.sample->delay_ns < 0) __builtin_trap();
    if (v.sample->stratum < 1 || v.sample->stratum > 15) __builtin_trap();
    (void)v.sample->distance_s();
  }
  return 0;
}
