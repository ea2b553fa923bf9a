#pragma once
// The firewall: pisecd's own nftables table ("inet <firewall.table>").
//
// A Ruleset is plain data built by pure functions from [firewall]; it has two
// renderings: netlink (libnftnl objects in one atomic batch, see apply()) and
// `nft` syntax text (render_nft()) laid out the way `nft list table` prints it,
// so an operator reads exactly what is applied. Other tables are never touched.
#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "pisec/config.hpp"

struct nftnl_rule;

namespace pisec::firewall {

// ---- entries from the configuration ----------------------------------------

enum class Proto : std::uint8_t { tcp = 6, udp = 17 };
enum class Family : std::uint8_t { ipv4 = 2, ipv6 = 10 };  // NFPROTO_* values

// An IPv4/IPv6 address with a prefix length (full length for a host).
struct Prefix {
  Family family = Family::ipv4;
  std::array<std::uint8_t, 16> bytes{};  // network byte order; v4 uses the first 4
  int length = 32;
  std::string to_string() const;  // "192.0.2.0/24", "2001:db8::1" (no /len for a host)
  bool operator==(const Prefix&) const = default;
};

// Thrown by the entry parsers; what() is the reason, without the key.
struct EntryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"; names and set host bits are errors.
Prefix parse_prefix(std::string_view text);

// Outbound permission: "proto:host:port", host an address or prefix
// (IPv6 may be bracketed: "tcp:[2001:db8::1]:443").
struct EgressRule {
  Proto proto = Proto::tcp;
  Prefix host;
  std::uint16_t port = 0;
  bool operator==(const EgressRule&) const = default;
};
EgressRule parse_egress(std::string_view entry);

// Extra inbound permission: "proto:port[:prefix]" (prefix = allowed sources).
struct InboundRule {
  Proto proto = Proto::tcp;
  std::uint16_t port = 0;
  std::optional<Prefix> source;
  bool operator==(const InboundRule&) const = default;
};
InboundRule parse_inbound(std::string_view entry);


// ---- the ruleset model -----------------------------------------------------

enum class MetaKey : std::uint8_t { nfproto, l4proto, iif, oif, skuid };
enum class Verdict : std::uint8_t { accept, drop };

// Conntrack state bits as the kernel numbers them (nft `ct state`).
inline constexpr std::uint32_t ct_invalid = 1, ct_established = 2, ct_related = 4,
                               ct_new = 8;

struct MetaMatch { MetaKey key; std::uint32_t value; };          // meta KEY == value
struct CtStateMatch { std::uint32_t mask; };                     // ct state & mask != 0
struct CtOriginalDportMatch { std::uint16_t port; };             // ct original proto-dst
struct PortMatch { Proto proto; bool source; std::uint16_t port; };  // tcp/udp s|dport
struct IcmpTypeMatch { Family family; std::uint8_t type; };      // icmp/icmpv6 type
struct AddressMatch { bool source; Prefix prefix; };             // ip/ip6 s|daddr
struct LimitStmt { std::uint32_t rate_per_s; std::uint32_t burst; bool over; };
// Per-source rate limiter: `update @set { ip saddr limit rate over … }`.
struct MeterLimitStmt { std::string set; Family family; LimitStmt limit; };
// Per-source connection cap: `add @set { ip saddr ct count over N }`.
struct MeterCountStmt { std::string set; Family family; std::uint32_t count; };
struct CounterStmt {};
struct RedirectStmt { std::uint16_t port; };
struct VerdictStmt { Verdict verdict; };

using Item = std::variant<MetaMatch, CtStateMatch, CtOriginalDportMatch, PortMatch,
                          IcmpTypeMatch, AddressMatch, LimitStmt, MeterLimitStmt,
                          MeterCountStmt, CounterStmt, RedirectStmt, VerdictStmt>;

struct Rule {
  std::vector<Item> items;  // in bytecode order, dependencies (meta nfproto/l4proto) explicit
};

enum class Hook : std::uint8_t { prerouting = 0, input = 1, forward = 2, output = 3 };

struct Chain {
  std::string name;
  std::string type = "filter";  // "filter" or "nat"
  Hook hook = Hook::input;
  int priority = 0;
  Verdict policy = Verdict::drop;
  std::vector<Rule> rules;
};

// A dynamic set keyed by a source address (the "meters").
struct Set {
  std::string name;
  Family key = Family::ipv4;
  std::uint32_t timeout_s = 0;  // 0 = elements never expire
  std::uint32_t size = 65535;
};

enum class Mode : std::uint8_t { lockdown, service };

struct Ruleset {
  Mode mode = Mode::lockdown;
  std::string table = "pisec";
  std::vector<Set> sets;
  std::vector<Chain> chains;
};

// Boot ruleset: nothing exposed; root may reach DNS/NTP; DHCP and ND keep the
// address. Throws EntryError if `resolvers` is bad (the config loader refuses it first).
Ruleset build_lockdown_ruleset(const config::Firewall& fw);
// Service ruleset; `extra` adds egress for the payload uid (e.g. the verifier).
Ruleset build_service_ruleset(const config::Firewall& fw, std::uint32_t payload_uid,
                              const std::vector<EgressRule>& extra = {});

// `nft list table inet <table>` layout (tabs, counters without numbers).
std::string render_nft(const Ruleset& rs);
// "sha256:<hex>" of render_nft(): what status and attestation report.
std::string digest(const Ruleset& rs);

// ---- what the kernel holds, in comparable form ------------------------------

// Each rule is a list of canonical expression strings; values the kernel adds
// or keeps for itself (counters, handles, redir proto_max == proto_min, zero
// dynset timeouts) are normalized away, so equal strings mean equal behaviour.
struct ChainSnapshot {
  std::string name;
  std::string type;
  std::uint32_t hook = 0;
  std::int32_t priority = 0;
  std::uint32_t policy = 0;
  std::vector<std::vector<std::string>> rules;
};
struct SetSnapshot {
  std::string name;
  std::uint32_t flags = 0;
  std::uint32_t key_type = 0;
  std::uint32_t key_len = 0;
  std::uint64_t timeout_ms = 0;
  std::uint32_t size = 0;
};
struct TableSnapshot {
  bool exists = false;
  std::uint32_t flags = 0;
  std::vector<SetSnapshot> sets;
  std::vector<ChainSnapshot> chains;
};

// Canonical form of one libnftnl rule (e.g. parsed from a kernel dump).
std::vector<std::string> canonical_rule(nftnl_rule* rule);
// What the kernel should hold after apply(rs) (lowered through libnftnl; pure).
TableSnapshot expected_snapshot(const Ruleset& rs);
// Differences, one line each, empty when `got` means the same as `want`.
std::vector<std::string> compare(const TableSnapshot& want, const TableSnapshot& got);

// ---- kernel adapter (netlink, needs CAP_NET_ADMIN) ---------------------------

struct ApplyResult {
  bool applied = false;   // the kernel committed the transaction
  bool verified = false;  // and reading it back matched the model
  std::string digest;     // digest(rs), set when verified
  std::string error;      // why not, naming the object the kernel refused
  std::vector<std::string> differences;  // read-back mismatches
};

// One atomic transaction (create-if-missing, delete, recreate the table, then
// sets, chains, rules), every ACK collected, then read back and compared.
// A rejected batch leaves the previous ruleset in force.
ApplyResult apply(const Ruleset& rs);

// Reads `inet <table>` from the kernel (throws std::runtime_error on netlink errors).
TableSnapshot read_kernel_table(const std::string& table);
// Read back and compare without changing anything (same fields as apply's).
ApplyResult verify(const Ruleset& rs);

// The packet and byte counts of every rule with a counter in `inet <table>`;
// index = the rule's position in its chain (as `pisecd firewall render` lists it).
struct RuleCounter {
  std::string chain;
  std::size_t index = 0;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};
std::vector<RuleCounter> read_counters(const std::string& table);

}  // namespace pisec::firewall
