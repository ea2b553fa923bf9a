// Ruleset model: entry parsing, the two rulesets, and the `nft` text rendering.
// Pure functions over plain data; nothing here touches the kernel.
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include <openssl/evp.h>

#include "pisec/firewall.hpp"
#include "pisec/util.hpp"

namespace pisec::firewall {

namespace {

constexpr std::uint8_t icmp_echo_request = 8, icmp_dest_unreachable = 3,
                       icmp_time_exceeded = 11;
constexpr std::uint8_t icmpv6_dest_unreachable = 1, icmpv6_packet_too_big = 2,
                       icmpv6_time_exceeded = 3, icmpv6_parameter_problem = 4,
                       icmpv6_echo_request = 128, icmpv6_router_solicit = 133,
                       icmpv6_router_advert = 134, icmpv6_neighbor_solicit = 135,
                       icmpv6_neighbor_advert = 136, icmpv6_mld2_report = 143;
constexpr std::uint32_t l4_icmp = 1, l4_icmpv6 = 58;
constexpr std::uint32_t loopback_ifindex = 1;  // "lo" is 1 in every namespace

std::uint16_t parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 1 ||
      value > 65535)
    throw EntryError("port must be 1-65535, got \"" + std::string(text) + "\"");
  return static_cast<std::uint16_t>(value);
}

Proto parse_proto(std::string_view text) {
  if (text == "tcp") return Proto::tcp;
  if (text == "udp") return Proto::udp;
  throw EntryError("protocol must be \"tcp\" or \"udp\", got \"" + std::string(text) + "\"");
}

const char* proto_name(Proto p) { return p == Proto::tcp ? "tcp" : "udp"; }

// ---- rule-building shorthands ---------------------------------------------

Item nfproto(Family f) { return MetaMatch{MetaKey::nfproto, static_cast<std::uint32_t>(f)}; }
Item l4proto(std::uint32_t p) { return MetaMatch{MetaKey::l4proto, p}; }
Item l4proto(Proto p) { return l4proto(static_cast<std::uint32_t>(p)); }
Item accept() { return VerdictStmt{Verdict::accept}; }
Item drop() { return VerdictStmt{Verdict::drop}; }

Rule icmp_rule(Family f, std::uint8_t type, std::optional<LimitStmt> limit = {}) {
  Rule r;
  if (f == Family::ipv4) {
    r.items = {nfproto(f), l4proto(l4_icmp), IcmpTypeMatch{f, type}};
  } else {
    r.items = {nfproto(f), l4proto(l4_icmpv6), IcmpTypeMatch{f, type}};
  }
  if (limit) r.items.push_back(*limit);
  r.items.push_back(accept());
  return r;
}

// [skuid uid] [nfproto, daddr] l4proto dport (accept)
Rule port_rule(std::optional<std::uint32_t> uid, const std::optional<Prefix>& daddr, Proto proto,
               std::uint16_t dport) {
  Rule r;
  if (uid) r.items.push_back(MetaMatch{MetaKey::skuid, *uid});
  if (daddr) {
    r.items.push_back(nfproto(daddr->family));
    r.items.push_back(AddressMatch{false, *daddr});
  }
  r.items.push_back(l4proto(proto));
  r.items.push_back(PortMatch{proto, false, dport});
  r.items.push_back(accept());
  return r;
}

// DNS (udp+tcp 53, to the resolvers if any) and NTP (udp 123) for one uid.
void add_dns_ntp(std::vector<Rule>& rules, std::uint32_t uid, const std::vector<Prefix>& resolvers) {
  if (resolvers.empty()) {
    rules.push_back(port_rule(uid, std::nullopt, Proto::udp, 53));
    rules.push_back(port_rule(uid, std::nullopt, Proto::tcp, 53));
  } else {
    for (const auto& r : resolvers) {
      rules.push_back(port_rule(uid, r, Proto::udp, 53));
      rules.push_back(port_rule(uid, r, Proto::tcp, 53));
    }
  }
  rules.push_back(port_rule(uid, std::nullopt, Proto::udp, 123));
}

Rule dhcp_rule(Family f, std::uint16_t sport, std::uint16_t dport) {
  return Rule{{nfproto(f), l4proto(Proto::udp), PortMatch{Proto::udp, true, sport},
               PortMatch{Proto::udp, false, dport}, accept()}};
}

std::vector<Prefix> parse_resolvers(const config::Firewall& fw) {
  std::vector<Prefix> out;
  for (const auto& r : fw.resolvers) out.push_back(parse_prefix(r));
  return out;
}

Chain base_chain(std::string name, Hook hook, Verdict policy) {
  Chain c;
  c.name = std::move(name);
  c.hook = hook;
  c.policy = policy;
  return c;
}

// ---- nft text -------------------------------------------------------------

std::string icmp_type_name(Family f, std::uint8_t t) {
  if (f == Family::ipv4) {
    switch (t) {
      case 0: return "echo-reply";
      case 3: return "destination-unreachable";
      case 5: return "redirect";
      case 8: return "echo-request";
      case 11: return "time-exceeded";
      case 12: return "parameter-problem";
      default: return std::to_string(t);
    }
  }
  switch (t) {
    case 1: return "destination-unreachable";
    case 2: return "packet-too-big";
    case 3: return "time-exceeded";
    case 4: return "parameter-problem";
    case 128: return "echo-request";
    case 129: return "echo-reply";
    case 133: return "nd-router-solicit";
    case 134: return "nd-router-advert";
    case 135: return "nd-neighbor-solicit";
    case 136: return "nd-neighbor-advert";
    case 143: return "mld2-listener-report";
    default: return std::to_string(t);
  }
}

std::string l4_name(std::uint32_t p) {
  switch (p) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 58: return "ipv6-icmp";
    default: return std::to_string(p);
  }
}

// nft's own time format: 1d2h3m4s, largest units first.
std::string nft_duration(std::uint32_t seconds) {
  std::string out;
  const std::pair<std::uint32_t, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (auto [size, suffix] : units) {
    if (seconds >= size) {
      out += std::to_string(seconds / size) + suffix;
      seconds %= size;
    }
  }
  return out.empty() ? "0s" : out;
}

std::string limit_text(const LimitStmt& l) {
  std::string s = "limit rate ";
  if (l.over) s += "over ";
  s += std::to_string(l.rate_per_s) + "/second";
  // nft leaves out its default burst of 5 packets.
  if (l.burst != 5) s += " burst " + std::to_string(l.burst) + " packets";
  return s;
}

std::string addr_keyword(Family f) { return f == Family::ipv4 ? "ip" : "ip6"; }

// Whether a later item makes nft hide this dependency when it lists the rule
// (nft prints `tcp dport 80`, not `meta l4proto tcp tcp dport 80`).
bool implied_later(const Rule& r, std::size_t i) {
  const auto& m = std::get<MetaMatch>(r.items[i]);
  for (std::size_t j = i + 1; j < r.items.size(); ++j) {
    const Item& it = r.items[j];
    if (m.key == MetaKey::nfproto) {
      auto f = static_cast<Family>(m.value);
      if (auto* a = std::get_if<AddressMatch>(&it); a && a->prefix.family == f) return true;
      if (auto* ml = std::get_if<MeterLimitStmt>(&it); ml && ml->family == f) return true;
      if (auto* mc = std::get_if<MeterCountStmt>(&it); mc && mc->family == f) return true;
      if (auto* ic = std::get_if<IcmpTypeMatch>(&it); ic && ic->family == f) return true;
    } else if (m.key == MetaKey::l4proto) {
      if (auto* p = std::get_if<PortMatch>(&it); p && static_cast<std::uint32_t>(p->proto) == m.value)
        return true;
      if (auto* ic = std::get_if<IcmpTypeMatch>(&it)) {
        std::uint32_t want = ic->family == Family::ipv4 ? l4_icmp : l4_icmpv6;
        if (want == m.value) return true;
      }
    }
  }
  return false;
}

std::string rule_text(const Rule& r) {
  std::vector<std::string> words;
  for (std::size_t i = 0; i < r.items.size(); ++i) {
    const Item& item = r.items[i];
    if (auto* m = std::get_if<MetaMatch>(&item)) {
      switch (m->key) {
        case MetaKey::nfproto:
          if (!implied_later(r, i))
            words.push_back(std::string("meta nfproto ") +
                            (m->value == static_cast<std::uint32_t>(Family::ipv4) ? "ipv4" : "ipv6"));
          break;
        case MetaKey::l4proto:
          if (!implied_later(r, i)) words.push_back("meta l4proto " + l4_name(m->value));
          break;
        case MetaKey::iif:
          words.push_back(m->value == loopback_ifindex ? "iif \"lo\"" : "iif " + std::to_string(m->value));
          break;
        case MetaKey::oif:
          words.push_back(m->value == loopback_ifindex ? "oif \"lo\"" : "oif " + std::to_string(m->value));
          break;
        case MetaKey::skuid: words.push_back("meta skuid " + std::to_string(m->value)); break;
      }
    } else if (auto* cs = std::get_if<CtStateMatch>(&item)) {
      std::vector<std::string> names;
      const std::pair<std::uint32_t, const char*> bits[] = {{ct_invalid, "invalid"},
                                                            {ct_established, "established"},
                                                            {ct_related, "related"},
                                                            {ct_new, "new"}};
      for (auto [bit, name] : bits)
        if (cs->mask & bit) names.emplace_back(name);
      std::string joined;
      for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
      words.push_back("ct state " + joined);
    } else if (auto* od = std::get_if<CtOriginalDportMatch>(&item)) {
      words.push_back("ct original proto-dst " + std::to_string(od->port));
    } else if (auto* p = std::get_if<PortMatch>(&item)) {
      words.push_back(std::string(proto_name(p->proto)) + (p->source ? " sport " : " dport ") +
                      std::to_string(p->port));
    } else if (auto* ic = std::get_if<IcmpTypeMatch>(&item)) {
      words.push_back(std::string(ic->family == Family::ipv4 ? "icmp" : "icmpv6") + " type " +
                      icmp_type_name(ic->family, ic->type));
    } else if (auto* a = std::get_if<AddressMatch>(&item)) {
      words.push_back(addr_keyword(a->prefix.family) + (a->source ? " saddr " : " daddr ") +
                      a->prefix.to_string());
    } else if (auto* l = std::get_if<LimitStmt>(&item)) {
      words.push_back(limit_text(*l));
    } else if (auto* ml = std::get_if<MeterLimitStmt>(&item)) {
      words.push_back("update @" + ml->set + " { " + addr_keyword(ml->family) + " saddr " +
                      limit_text(ml->limit) + " }");
    } else if (auto* mc = std::get_if<MeterCountStmt>(&item)) {
      words.push_back("add @" + mc->set + " { " + addr_keyword(mc->family) + " saddr ct count over " +
                      std::to_string(mc->count) + " }");
    } else if (std::holds_alternative<CounterStmt>(item)) {
      words.push_back("counter");
    } else if (auto* rd = std::get_if<RedirectStmt>(&item)) {
      words.push_back("redirect to :" + std::to_string(rd->port));
    } else if (auto* v = std::get_if<VerdictStmt>(&item)) {
      words.push_back(v->verdict == Verdict::accept ? "accept" : "drop");
    }
  }
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

const char* hook_name(Hook h) {
  switch (h) {
    case Hook::prerouting: return "prerouting";
    case Hook::input: return "input";
    case Hook::forward: return "forward";
    case Hook::output: return "output";
  }
  return "?";
}

// nft prints the standard priorities by name.
std::string priority_name(const Chain& c) {
  if (c.type == "nat" && c.hook == Hook::prerouting && c.priority == -100) return "dstnat";
  if (c.type == "filter" && c.priority == 0) return "filter";
  return std::to_string(c.priority);
}

}  // namespace

// ---- entries ----------------------------------------------------------------

std::string Prefix::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == Family::ipv4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  int full = family == Family::ipv4 ? 32 : 128;
  std::string s = buf;
  if (length != full) s += "/" + std::to_string(length);
  return s;
}

Prefix parse_prefix(std::string_view text) {
  std::string addr(text);
  std::optional<std::string> len_text;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    len_text = addr.substr(slash + 1);
    addr.resize(slash);
  }
  Prefix p;
  if (inet_pton(AF_INET, addr.c_str(), p.bytes.data()) == 1) {
    p.family = Family::ipv4;
  } else if (inet_pton(AF_INET6, addr.c_str(), p.bytes.data()) == 1) {
    p.family = Family::ipv6;
  } else {
    throw EntryError("\"" + addr +
                     "\" is not an IPv4/IPv6 address or prefix (names are not allowed: the "
                     "firewall is set before DNS can be trusted; use the address)");
  }
  int full = p.family == Family::ipv4 ? 32 : 128;
  p.length = full;
  if (len_text) {
    int len = -1;
    auto [end, ec] = std::from_chars(len_text->data(), len_text->data() + len_text->size(), len);
    if (len_text->empty() || ec != std::errc() || end != len_text->data() + len_text->size() ||
        len < 0 || len > full)
      throw EntryError("prefix length must be 0-" + std::to_string(full) + ", got \"" + *len_text + "\"");
    p.length = len;
  }
  for (int bit = p.length; bit < full; ++bit) {
    if (p.bytes[static_cast<std::size_t>(bit / 8)] & (0x80 >> (bit % 8)))
      throw EntryError("\"" + std::string(text) + "\" has host bits set beyond /" +
                       std::to_string(p.length));
  }
  return p;
}

EgressRule parse_egress(std::string_view entry) {
  auto first = entry.find(':');
  auto last = entry.rfind(':');
  if (first == std::string_view::npos || first == last)
    throw EntryError("must be \"proto:host:port\", e.g. \"tcp:192.0.2.10:443\"");
  EgressRule e;
  e.proto = parse_proto(entry.substr(0, first));
  std::string_view host = entry.substr(first + 1, last - first - 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) throw EntryError("host is empty");
  e.host = parse_prefix(host);
  e.port = parse_port(entry.substr(last + 1));
  return e;
}

InboundRule parse_inbound(std::string_view entry) {
  auto first = entry.find(':');
  if (first == std::string_view::npos)
    throw EntryError("must be \"proto:port[:prefix]\", e.g. \"tcp:22:198.51.100.0/24\"");
  InboundRule r;
  r.proto = parse_proto(entry.substr(0, first));
  std::string_view rest = entry.substr(first + 1);
  auto second = rest.find(':');
  r.port = parse_port(rest.substr(0, second));
  if (second != std::string_view::npos) r.source = parse_prefix(rest.substr(second + 1));
  return r;
}

// ---- rulesets -----------------------------------------------------------------

Ruleset build_lockdown_ruleset(const config::Firewall& fw) {
  auto resolvers = parse_resolvers(fw);
  Ruleset rs;
  rs.mode = Mode::lockdown;
  rs.table = fw.table;

  Chain in = base_chain("input", Hook::input, Verdict::drop);
  in.rules.push_back({{MetaMatch{MetaKey::iif, loopback_ifindex}, accept()}});
  in.rules.push_back({{CtStateMatch{ct_established | ct_related}, accept()}});
  for (auto t : {icmpv6_router_advert, icmpv6_neighbor_solicit, icmpv6_neighbor_advert})
    in.rules.push_back(icmp_rule(Family::ipv6, t));
  in.rules.push_back(dhcp_rule(Family::ipv4, 67, 68));
  in.rules.push_back(dhcp_rule(Family::ipv6, 547, 546));

  Chain fwd = base_chain("forward", Hook::forward, Verdict::drop);

  Chain out = base_chain("output", Hook::output, Verdict::drop);
  out.rules.push_back({{MetaMatch{MetaKey::oif, loopback_ifindex}, accept()}});
  out.rules.push_back({{CtStateMatch{ct_established | ct_related}, accept()}});
  add_dns_ntp(out.rules, 0, resolvers);
  out.rules.push_back(dhcp_rule(Family::ipv4, 68, 67));
  out.rules.push_back(dhcp_rule(Family::ipv6, 546, 547));
  for (auto t : {icmpv6_router_solicit, icmpv6_neighbor_solicit, icmpv6_neighbor_advert,
                 icmpv6_mld2_report})
    out.rules.push_back(icmp_rule(Family::ipv6, t));

  rs.chains = {std::move(in), std::move(fwd), std::move(out)};
  return rs;
}

Ruleset build_service_ruleset(const config::Firewall& fw, std::uint32_t payload_uid,
                              const std::vector<EgressRule>& extra) {
  auto resolvers = parse_resolvers(fw);
  std::vector<EgressRule> egress;
  for (const auto& e : fw.egress) egress.push_back(parse_egress(e));
  egress.insert(egress.end(), extra.begin(), extra.end());
  std::vector<InboundRule> inbound;
  for (const auto& e : fw.inbound) inbound.push_back(parse_inbound(e));
  const auto public_port = static_cast<std::uint16_t>(fw.public_port);
  const auto app_port = static_cast<std::uint16_t>(fw.app_port);

  Ruleset rs;
  rs.mode = Mode::service;
  rs.table = fw.table;
  // Rate meters forget a quiet source after a minute; connection-count meters
  // keep their entries while the source has connections.
  rs.sets = {{"src_rate_v4", Family::ipv4, 60, 65535},
             {"src_rate_v6", Family::ipv6, 60, 65535},
             {"src_conn_v4", Family::ipv4, 0, 65535},
             {"src_conn_v6", Family::ipv6, 0, 65535}};

  Chain nat = base_chain("prerouting", Hook::prerouting, Verdict::accept);
  nat.type = "nat";
  nat.priority = -100;
  nat.rules.push_back({{l4proto(Proto::tcp), PortMatch{Proto::tcp, false, public_port},
                        RedirectStmt{app_port}}});

  Chain in = base_chain("input", Hook::input, Verdict::drop);
  // Echo requests after the first of an id are "established" to conntrack, so
  // the rate limit must come before the established accept.
  const LimitStmt echo_over{static_cast<std::uint32_t>(fw.icmp_echo_rate), 5, true};
  in.rules.push_back({{nfproto(Family::ipv4), l4proto(l4_icmp), IcmpTypeMatch{Family::ipv4, icmp_echo_request},
                       echo_over, drop()}});
  in.rules.push_back({{nfproto(Family::ipv6), l4proto(l4_icmpv6),
                       IcmpTypeMatch{Family::ipv6, icmpv6_echo_request}, echo_over, drop()}});
  in.rules.push_back({{CtStateMatch{ct_established | ct_related}, accept()}});
  in.rules.push_back({{CtStateMatch{ct_invalid}, drop()}});
  in.rules.push_back({{MetaMatch{MetaKey::iif, loopback_ifindex}, accept()}});
  in.rules.push_back(icmp_rule(Family::ipv4, icmp_echo_request));
  for (auto t : {icmp_dest_unreachable, icmp_time_exceeded}) in.rules.push_back(icmp_rule(Family::ipv4, t));
  in.rules.push_back(icmp_rule(Family::ipv6, icmpv6_echo_request));
  for (auto t : {icmpv6_dest_unreachable, icmpv6_packet_too_big, icmpv6_time_exceeded,
                 icmpv6_parameter_problem, icmpv6_router_advert, icmpv6_neighbor_solicit,
                 icmpv6_neighbor_advert})
    in.rules.push_back(icmp_rule(Family::ipv6, t));
  in.rules.push_back(dhcp_rule(Family::ipv4, 67, 68));
  in.rules.push_back(dhcp_rule(Family::ipv6, 547, 546));
  const LimitStmt conn_limit{static_cast<std::uint32_t>(fw.new_conn_rate),
                             static_cast<std::uint32_t>(fw.new_conn_burst), true};
  for (auto [f, suffix] : {std::pair{Family::ipv4, "v4"}, std::pair{Family::ipv6, "v6"}}) {
    in.rules.push_back({{CtStateMatch{ct_new}, nfproto(f), l4proto(Proto::tcp),
                         MeterLimitStmt{std::string("src_rate_") + suffix, f, conn_limit},
                         CounterStmt{}, drop()}});
  }
  for (auto [f, suffix] : {std::pair{Family::ipv4, "v4"}, std::pair{Family::ipv6, "v6"}}) {
    in.rules.push_back({{CtStateMatch{ct_new}, nfproto(f), l4proto(Proto::tcp),
                         MeterCountStmt{std::string("src_conn_") + suffix, f,
                                        static_cast<std::uint32_t>(fw.max_conn_per_source)},
                         CounterStmt{}, drop()}});
  }
  // The app port only for connections that arrived on the public port.
  // (Port first: nft cannot read `ct original proto-dst` back without a known L4.)
  in.rules.push_back({{l4proto(Proto::tcp), PortMatch{Proto::tcp, false, app_port},
                       CtOriginalDportMatch{public_port}, accept()}});
  for (const auto& ib : inbound) {
    Rule r;
    if (ib.source) {
      r.items.push_back(nfproto(ib.source->family));
      r.items.push_back(AddressMatch{true, *ib.source});
    }
    r.items.push_back(l4proto(ib.proto));
    r.items.push_back(PortMatch{ib.proto, false, ib.port});
    r.items.push_back(accept());
    in.rules.push_back(std::move(r));
  }

  Chain fwd = base_chain("forward", Hook::forward, Verdict::drop);

  // Output stays open for other users; the payload uid gets an allow-list.
  Chain out = base_chain("output", Hook::output, Verdict::accept);
  out.rules.push_back({{CtStateMatch{ct_established | ct_related}, accept()}});
  add_dns_ntp(out.rules, payload_uid, resolvers);
  for (const auto& e : egress) out.rules.push_back(port_rule(payload_uid, e.host, e.proto, e.port));
  out.rules.push_back({{MetaMatch{MetaKey::skuid, payload_uid}, CounterStmt{}, drop()}});

  rs.chains = {std::move(nat), std::move(in), std::move(fwd), std::move(out)};
  return rs;
}

// ---- text -------------------------------------------------------------------

std::string render_nft(const Ruleset& rs) {
  std::string out;
  out += text::cat("table inet ", rs.table, " {\n");
  bool first = true;
  auto separate = [&] {
    if (!first) out += text::cat('\n');
    first = false;
  };
  for (const auto& s : rs.sets) {
    separate();
    out += text::cat("\tset ", s.name, " {\n", "\t\ttype ", (s.key == Family::ipv4 ? "ipv4_addr" : "ipv6_addr"), '\n', "\t\tsize ", s.size, '\n', "\t\tflags dynamic", (s.timeout_s ? ",timeout" : ""), '\n');
    if (s.timeout_s) out += text::cat("\t\ttimeout ", nft_duration(s.timeout_s), '\n');
    out += "\t}\n";
  }
  for (const auto& c : rs.chains) {
    separate();
    out += text::cat("\tchain ", c.name, " {\n", "\t\ttype ", c.type, " hook ", hook_name(c.hook), " priority ", priority_name(c), "; policy ", (c.policy == Verdict::accept ? "accept" : "drop"), ";\n");
    for (const auto& r : c.rules) out += text::cat("\t\t", rule_text(r), '\n');
    out += "\t}\n";
  }
  out += "}\n";
  return out;
}

std::string digest(const Ruleset& rs) {
  std::string text = render_nft(rs);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256 failed");
  std::string hex = "sha256:";
  char byte[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", md[i]);
    hex += byte;
  }
  return hex;
}

}  // namespace pisec::firewall
