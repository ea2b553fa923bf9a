// The control protocol's pure parts: the request line, peer credentials and
// the admin group. No socket here: the config loader and the fuzzer link it
// without Asio.
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "pisec/control.hpp"
#include "pisec/util.hpp"

namespace pisec::control {

Request parse_request(std::string_view line) {
  using nlohmann::json;
  json req;
  try {
    req = json::parse(line);
  } catch (const json::exception&) {
    throw RequestError("request is not valid JSON");
  }
  if (!req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
    throw RequestError("request needs a \"cmd\" string");
  const std::string cmd = req["cmd"].get<std::string>();
  Request r;
  if (cmd == "status" || cmd == "metrics") {
    if (req.size() != 1) throw RequestError(cmd + " takes no arguments");
    r.command = cmd == "status" ? Request::Command::status : Request::Command::metrics;
    return r;
  }
  if (cmd == "logs") {
    r.command = Request::Command::logs;
    for (const auto& [key, value] : req.items()) {
      if (key == "cmd") continue;
      if (key == "n") {
        if (!value.is_number_unsigned()) throw RequestError("\"n\" must be a non-negative integer");
        r.n = static_cast<std::size_t>(std::min<std::uint64_t>(value.get<std::uint64_t>(), SIZE_MAX));
      } else if (key == "follow") {
        if (!value.is_boolean()) throw RequestError("\"follow\" must be true or false");
        r.follow = value.get<bool>();
      } else {
        throw RequestError("unknown key \"" + key + "\" in logs request");
      }
    }
    return r;
  }
  throw RequestError("unknown command \"" + cmd + "\"");
}

// ---- pure parts ---------------------------------------------------------------

bool peer_allowed(const PeerCredentials& peer, std::optional<gid_t> admin_gid) {
  // Root, and the daemon's own uid (the same as root in production; a peer
  // with our uid could ptrace us anyway), e.g. a test run unprivileged.
  if (peer.uid == 0 || peer.uid == ::geteuid()) return true;
  if (!admin_gid) return false;
  if (peer.gid == *admin_gid) return true;
  for (gid_t g : peer.groups)
    if (g == *admin_gid) return true;
  return false;
}

std::optional<gid_t> find_group(std::string_view name_or_gid, std::string_view text) {
  if (name_or_gid.empty()) return std::nullopt;
  if (name_or_gid.find_first_not_of("0123456789") == std::string_view::npos) {
    if (name_or_gid.size() > 10) return std::nullopt;
    const unsigned long long gid = std::stoull(std::string(name_or_gid));
    if (gid > 4294967294ULL) return std::nullopt;
    return static_cast<gid_t>(gid);
  }
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    // name:password:gid:members
    std::size_t c1 = line.find(':');
    if (c1 == std::string_view::npos || line.substr(0, c1) != name_or_gid) continue;
    std::size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    std::size_t c3 = line.find(':', c2 + 1);
    std::string_view gid = line.substr(c2 + 1, c3 == std::string_view::npos ? std::string_view::npos : c3 - c2 - 1);
    if (gid.empty() || gid.size() > 9 || gid.find_first_not_of("0123456789") != std::string_view::npos) continue;
    return static_cast<gid_t>(std::stoul(std::string(gid)));
  }
  return std::nullopt;
}

gid_t resolve_admin_group(std::string_view name_or_gid, const std::string& group_file) {
  if (auto gid = find_group(name_or_gid, util::read_text_file(group_file).value_or(""))) return *gid;
  const std::string name(name_or_gid);
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
    throw std::runtime_error("gid " + name + " is out of range (0-4294967294)");
  throw std::runtime_error("group \"" + name + "\" not found in " + group_file +
                           " (read directly, no NSS: add the group there or give its number)");
}

std::vector<gid_t> parse_status_groups(std::string_view text) {
  std::vector<gid_t> groups;
  std::size_t at = text.find("\nGroups:");
  if (at == std::string_view::npos) return groups;
  std::size_t end = text.find('\n', at + 1);
  for (auto w : text::words(text.substr(at + 8, end == std::string_view::npos ? std::string_view::npos : end - at - 8))) {
    auto g = text::to_int(w);
    if (!g || *g < 0 || *g > 0xFFFFFFFFLL) break;
    groups.push_back(static_cast<gid_t>(*g));
  }
  return groups;
}

}  // namespace pisec::control
