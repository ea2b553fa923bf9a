// libFuzzer target for what a control-socket client sends (one request line)
// and the texts the server reads about its peers (/etc/group, the Groups: line
// of /proc/<pid>/status), and the status JSON the CLI and the mux read back:
// any input must be accepted or refused with the documented exception, never
// crash (ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "pisec/control.hpp"

namespace ctl = pisec::control;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const ctl::Request r = ctl::parse_request(text);
    if (r.command != ctl::Request::Command::logs && (r.n != 100 || r.follow)) __builtin_trap();
  } catch (const ctl::RequestError& e) {
    if (std::string_view(e.what()).empty()) __builtin_trap();  // the client would get no reason
  }
  // A group name taken from the first line, looked up in the rest.
  const std::size_t nl = text.find('\n');
  if (nl != std::string_view::npos) (void)ctl::find_group(text.substr(0, nl), text.substr(nl + 1));
  (void)ctl::parse_status_groups(text);
  try {
    const pisec::status::Snapshot snap = pisec::status::from_json(std::string(text));
    (void)pisec::status::to_text(snap);
    (void)pisec::status::exit_code(snap);
    if (pisec::status::to_json(pisec::status::from_json(pisec::status::to_json(snap))) != pisec::status::to_json(snap))
      __builtin_trap();  // the daemon's own JSON does not read back to itself
  } catch (const std::runtime_error&) {
  }
  return 0;
}
