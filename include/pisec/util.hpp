#pragma once
// Small helpers shared by several modules, one copy each.
#include <string>
#include <string_view>

namespace pisec::text {

// Bytes from outside (files, payload output, peers) made valid UTF-8: each
// ill-formed sequence (stray continuation byte, overlong form, surrogate,
// above U+10FFFF, cut short) becomes U+FFFD, one per maximal subpart as
// Unicode recommends - the same replacement nlohmann's
// error_handler_t::replace makes, so JSON and terminal agree.
std::string valid_utf8(std::string_view bytes);

// For a terminal: valid_utf8, and every control character - C0 (ESC, BEL,
// CR, LF included), DEL and C1 (U+0080-U+009F, which some terminals obey
// as CSI/OSC) - becomes '?', as the log line assembler does. Tab is kept.
// Apply it per field: a '\n' inside a detail must not forge a line.
std::string printable(std::string_view bytes);

}  // namespace pisec::text
