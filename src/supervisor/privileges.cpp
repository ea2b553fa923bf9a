#include "pisec/supervisor.hpp"

#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace pisec::supervisor {

namespace {
constexpr cap_value_t kept[] = {CAP_NET_ADMIN, CAP_SETUID, CAP_SETGID, CAP_KILL,
                                CAP_CHOWN,     CAP_FOWNER, CAP_SETPCAP};
bool is_kept(cap_value_t c) {
  for (auto k : kept)
    if (k == c) return true;
  return false;
}
}  // namespace

std::vector<std::string> kept_capabilities() {
  std::vector<std::string> names;
  for (auto c : kept) {
    std::unique_ptr<char, decltype(&cap_free)> name(cap_to_name(c), &cap_free);
    names.emplace_back(name ? name.get() : "?");
  }
  return names;
}

std::string drop_privileges() {
  int dropped = 0;
  for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
    if (is_kept(c) || !CAP_IS_SUPPORTED(c)) continue;
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
      throw std::runtime_error(std::string("dropping capability from bounding set: ") + std::strerror(errno));
    ++dropped;
  }
  std::unique_ptr<std::remove_pointer_t<cap_t>, decltype(&cap_free)> caps(cap_init(), &cap_free);
  if (!caps) throw std::runtime_error("cap_init failed");
  cap_value_t list[std::size(kept)];
  int n = 0;
  for (auto c : kept) list[n++] = c;
  if (cap_set_flag(caps.get(), CAP_PERMITTED, n, list, CAP_SET) != 0 ||
      cap_set_flag(caps.get(), CAP_EFFECTIVE, n, list, CAP_SET) != 0 ||
      cap_set_proc(caps.get()) != 0)
    throw std::runtime_error(std::string("setting capabilities: ") + std::strerror(errno));
  // Ambient and inheritable sets are empty after cap_init: nothing we exec inherits them.
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    throw std::runtime_error(std::string("PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno));
  std::string kept_names;
  for (auto& k : kept_capabilities()) kept_names += (kept_names.empty() ? "" : ",") + k;
  return "dropped " + std::to_string(dropped) + " capabilities, kept " + kept_names +
         ", no_new_privs set";
}

void drop_all_capabilities() {
  std::unique_ptr<std::remove_pointer_t<cap_t>, decltype(&cap_free)> none(cap_init(), &cap_free);
  if (!none || cap_set_proc(none.get()) != 0)
    throw std::runtime_error(std::string("dropping every capability: ") + std::strerror(errno));
}

}  // namespace pisec::supervisor
