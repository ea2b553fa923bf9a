#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>

#include <algorithm>
#include <chrono>
#include <sched.h>
#include <unistd.h>

#include "../../src/firewall/netlink_detail.hpp"
#include "child.hpp"
#include "pisec/firewall.hpp"

namespace fw = pisec::firewall;
using pisec::config::Firewall;

namespace {

std::string error_of(void (*fn)(std::string_view), std::string_view entry) {
  try {
    fn(entry);
  } catch (const fw::EntryError& e) {
    return e.what();
  }
  return "(accepted)";
}

void egress(std::string_view s) { fw::parse_egress(s); }
void inbound(std::string_view s) { fw::parse_inbound(s); }
void prefix(std::string_view s) { fw::parse_prefix(s); }

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\t\t" + line + "\n") != std::string::npos;
}

const fw::Chain& chain(const fw::Ruleset& rs, const std::string& name) {
  auto it = std::find_if(rs.chains.begin(), rs.chains.end(), [&](const fw::Chain& c) { return c.name == name; });
  REQUIRE(it != rs.chains.end());
  return *it;
}

}  // namespace

TEST_CASE("entry parsing accepts addresses and prefixes", "[firewall]") {
  auto e = fw::parse_egress("tcp:192.0.2.10:443");
  CHECK(e.proto == fw::Proto::tcp);
  CHECK(e.port == 443);
  CHECK(e.host.to_string() == "192.0.2.10");
  CHECK(e.host.length == 32);

  auto v6 = fw::parse_egress("udp:[2001:db8::1]:53");
  CHECK(v6.host.family == fw::Family::ipv6);
  CHECK(v6.host.to_string() == "2001:db8::1");
  CHECK(fw::parse_egress("tcp:2001:db8::/32:443").host.to_string() == "2001:db8::/32");

  auto in = fw::parse_inbound("tcp:22:198.51.100.0/24");
  CHECK(in.port == 22);
  REQUIRE(in.source);
  CHECK(in.source->to_string() == "198.51.100.0/24");
  CHECK_FALSE(fw::parse_inbound("udp:5353").source);
  CHECK(fw::parse_inbound("tcp:22:2001:db8::/48").source->family == fw::Family::ipv6);
}

TEST_CASE("entry parsing errors say why", "[firewall]") {
  CHECK_THAT(error_of(egress, "tcp:example.com:443"), Catch::Contains("names are not allowed"));
  CHECK_THAT(error_of(egress, "icmp:192.0.2.1:1"), Catch::Contains("\"tcp\" or \"udp\""));
  CHECK_THAT(error_of(egress, "tcp:192.0.2.1:0"), Catch::Contains("port must be 1-65535"));
  CHECK_THAT(error_of(egress, "tcp:192.0.2.1:70000"), Catch::Contains("port must be 1-65535"));
  CHECK_THAT(error_of(egress, "tcp:192.0.2.1"), Catch::Contains("proto:host:port"));
  CHECK_THAT(error_of(egress, "tcp::443"), Catch::Contains("host is empty"));
  CHECK_THAT(error_of(inbound, "tcp"), Catch::Contains("proto:port[:prefix]"));
  CHECK_THAT(error_of(inbound, "tcp:ssh"), Catch::Contains("port must be"));
  CHECK_THAT(error_of(prefix, "10.0.0.1/8"), Catch::Contains("host bits set"));
  CHECK_THAT(error_of(prefix, "10.0.0.0/33"), Catch::Contains("prefix length must be 0-32"));
  CHECK_THAT(error_of(prefix, "2001:db8::/129"), Catch::Contains("0-128"));
}

TEST_CASE("service ruleset with defaults", "[firewall]") {
  auto rs = fw::build_service_ruleset(Firewall{}, 1000);
  CHECK(rs.mode == fw::Mode::service);
  CHECK(rs.table == "pisec");
  CHECK(rs.sets.size() == 4);
  const auto& nat = chain(rs, "prerouting");
  CHECK(nat.type == "nat");
  CHECK(nat.priority == -100);
  CHECK(chain(rs, "input").policy == fw::Verdict::drop);
  CHECK(chain(rs, "forward").policy == fw::Verdict::drop);
  CHECK(chain(rs, "output").policy == fw::Verdict::accept);

  std::string text = fw::render_nft(rs);
  CHECK_THAT(text, Catch::StartsWith("table inet pisec {\n\tset src_rate_v4 {\n"));
  CHECK(has_line(text, "type nat hook prerouting priority dstnat; policy accept;"));
  CHECK(has_line(text, "tcp dport 80 redirect to :8080"));
  CHECK(has_line(text, "tcp dport 8080 ct original proto-dst 80 accept"));
  CHECK(has_line(text, "icmp type echo-request limit rate over 5/second drop"));
  CHECK(has_line(text, "icmp type echo-request accept"));
  CHECK(has_line(text, "ct state new meta l4proto tcp update @src_rate_v4 { ip saddr limit rate over 20/second burst 40 packets } counter drop"));
  CHECK(has_line(text, "ct state new meta l4proto tcp add @src_conn_v6 { ip6 saddr ct count over 64 } counter drop"));
  CHECK(has_line(text, "meta skuid 1000 udp dport 53 accept"));
  CHECK(has_line(text, "meta skuid 1000 tcp dport 53 accept"));
  CHECK(has_line(text, "meta skuid 1000 udp dport 123 accept"));
  CHECK(has_line(text, "meta skuid 1000 counter drop"));
  // The last output rule is the payload's catch-all drop.
  auto out = chain(rs, "output");
  const auto& last = out.rules.back().items;
  CHECK(std::holds_alternative<fw::VerdictStmt>(last.back()));
  CHECK(std::get<fw::VerdictStmt>(last.back()).verdict == fw::Verdict::drop);
  // Nothing accepts the app port except the redirect-origin rule.
  std::size_t mentions = 0;
  for (auto pos = text.find("8080"); pos != std::string::npos; pos = text.find("8080", pos + 1)) ++mentions;
  CHECK(mentions == 2);  // the redirect target and the redirect-origin accept
}

TEST_CASE("service ruleset follows the configuration", "[firewall]") {
  Firewall f;
  f.table = "edge";
  f.public_port = 443;
  f.app_port = 9443;
  f.new_conn_rate = 7;
  f.new_conn_burst = 9;
  f.max_conn_per_source = 3;
  f.icmp_echo_rate = 2;
  f.egress = {"tcp:192.0.2.10:443"};
  f.inbound = {"tcp:22:198.51.100.0/24"};
  f.resolvers = {"192.0.2.53", "2001:db8::53"};
  std::vector<fw::EgressRule> extra = {fw::parse_egress("tcp:203.0.113.5:8443")};
  auto text = fw::render_nft(fw::build_service_ruleset(f, 4242, extra));
  CHECK_THAT(text, Catch::StartsWith("table inet edge {"));
  CHECK(has_line(text, "tcp dport 443 redirect to :9443"));
  CHECK(has_line(text, "tcp dport 9443 ct original proto-dst 443 accept"));
  CHECK(has_line(text, "icmpv6 type echo-request limit rate over 2/second drop"));
  CHECK(has_line(text, "ct state new meta l4proto tcp update @src_rate_v6 { ip6 saddr limit rate over 7/second burst 9 packets } counter drop"));
  CHECK(has_line(text, "ct state new meta l4proto tcp add @src_conn_v4 { ip saddr ct count over 3 } counter drop"));
  CHECK(has_line(text, "ip saddr 198.51.100.0/24 tcp dport 22 accept"));
  CHECK(has_line(text, "meta skuid 4242 ip daddr 192.0.2.53 udp dport 53 accept"));
  CHECK(has_line(text, "meta skuid 4242 ip6 daddr 2001:db8::53 tcp dport 53 accept"));
  CHECK(has_line(text, "meta skuid 4242 ip daddr 192.0.2.10 tcp dport 443 accept"));
  CHECK(has_line(text, "meta skuid 4242 ip daddr 203.0.113.5 tcp dport 8443 accept"));
  // With resolvers, DNS to any address is no longer allowed.
  CHECK_FALSE(has_line(text, "meta skuid 4242 udp dport 53 accept"));
}

TEST_CASE("lockdown ruleset exposes nothing and lets root reach DNS/NTP only", "[firewall]") {
  Firewall f;
  auto rs = fw::build_lockdown_ruleset(f);
  CHECK(rs.mode == fw::Mode::lockdown);
  CHECK(rs.sets.empty());
  for (const auto& c : rs.chains) {
    CHECK(c.type == "filter");
    CHECK(c.policy == fw::Verdict::drop);
  }
  auto text = fw::render_nft(rs);
  CHECK(has_line(text, "iif \"lo\" accept"));
  CHECK(has_line(text, "oif \"lo\" accept"));
  CHECK(has_line(text, "meta skuid 0 udp dport 53 accept"));
  CHECK(has_line(text, "meta skuid 0 udp dport 123 accept"));
  CHECK(has_line(text, "meta nfproto ipv4 udp sport 68 udp dport 67 accept"));
  CHECK(has_line(text, "icmpv6 type nd-neighbor-solicit accept"));
  CHECK(text.find("redirect") == std::string::npos);
  CHECK(text.find("8080") == std::string::npos);

  f.resolvers = {"192.0.2.53"};
  auto text2 = fw::render_nft(fw::build_lockdown_ruleset(f));
  CHECK(has_line(text2, "meta skuid 0 ip daddr 192.0.2.53 udp dport 53 accept"));
  CHECK_FALSE(has_line(text2, "meta skuid 0 udp dport 53 accept"));
}

TEST_CASE("building refuses bad entries", "[firewall]") {
  Firewall f;
  f.egress = {"tcp:example.com:443"};
  CHECK_THROWS_AS(fw::build_service_ruleset(f, 1000), fw::EntryError);
  Firewall g;
  g.resolvers = {"resolver.example"};
  CHECK_THROWS_AS(fw::build_lockdown_ruleset(g), fw::EntryError);
}

TEST_CASE("digest is stable and follows the ruleset", "[firewall]") {
  Firewall f;
  auto a = fw::digest(fw::build_service_ruleset(f, 1000));
  CHECK(a == fw::digest(fw::build_service_ruleset(f, 1000)));
  CHECK(a.rfind("sha256:", 0) == 0);
  CHECK(a.size() == 7 + 64);
  CHECK(a != fw::digest(fw::build_service_ruleset(f, 1001)));
  CHECK(a != fw::digest(fw::build_lockdown_ruleset(f)));
  f.new_conn_rate = 21;
  CHECK(a != fw::digest(fw::build_service_ruleset(f, 1000)));
}

TEST_CASE("read-back comparison: equal meaning passes", "[firewall]") {
  auto rs = fw::build_service_ruleset(Firewall{}, 1000);
  auto want = fw::expected_snapshot(rs);
  CHECK(fw::compare(want, want).empty());

  // Synthetic kernel answer for the redirect rule: the kernel adds proto_max
  // (= proto_min) to redir and reports counter values; same meaning.
  nftnl_rule* r = nftnl_rule_alloc();
  auto add = [&](nftnl_expr* e) { nftnl_rule_add_expr(r, e); };
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_L4PROTO);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  add(e);
  std::uint8_t tcp = 6;
  e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &tcp, 1);
  add(e);
  e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 2);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 2);
  add(e);
  std::uint16_t port = htons(80);
  e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &port, 2);
  add(e);
  std::uint16_t app = htons(8080);
  e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
  nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &app, 2);
  add(e);
  e = nftnl_expr_alloc("redir");
  nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
  add(e);
  auto kernel_rule = fw::canonical_rule(r);
  CHECK(kernel_rule == want.chains.at(0).rules.at(0));
  CHECK(kernel_rule.back() == "redir proto_min=1 flags=2");

  // A redirect to a different range is a different meaning.
  nftnl_expr* wide = nftnl_expr_alloc("redir");
  nftnl_expr_set_u32(wide, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
  nftnl_expr_set_u32(wide, NFTNL_EXPR_REDIR_REG_PROTO_MAX, 2);
  nftnl_expr_set_u32(wide, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
  nftnl_rule* r2 = nftnl_rule_alloc();
  nftnl_rule_add_expr(r2, wide);
  CHECK(fw::canonical_rule(r2).at(0) != "redir proto_min=1 flags=2");

  // Counter values are state, not meaning.
  nftnl_rule* r3 = nftnl_rule_alloc();
  nftnl_expr* c = nftnl_expr_alloc("counter");
  nftnl_expr_set_u64(c, NFTNL_EXPR_CTR_PACKETS, 12);
  nftnl_expr_set_u64(c, NFTNL_EXPR_CTR_BYTES, 3400);
  nftnl_rule_add_expr(r3, c);
  CHECK(fw::canonical_rule(r3) == std::vector<std::string>{"counter"});
  nftnl_rule_free(r);
  nftnl_rule_free(r2);
  nftnl_rule_free(r3);
}

TEST_CASE("read-back comparison: differences are reported", "[firewall]") {
  auto rs = fw::build_service_ruleset(Firewall{}, 1000);
  auto want = fw::expected_snapshot(rs);

  fw::TableSnapshot missing;
  CHECK_THAT(fw::compare(want, missing).at(0), Catch::Contains("table is missing"));

  auto changed_port = want;
  auto changed_rs = rs;
  changed_rs.chains[0].rules[0].items[1] = fw::PortMatch{fw::Proto::tcp, false, 81};
  changed_port.chains[0] = fw::expected_snapshot(changed_rs).chains[0];
  auto d = fw::compare(want, changed_port);
  REQUIRE(d.size() == 1);
  CHECK_THAT(d[0], Catch::Contains("chain prerouting: rule 1 differs"));

  auto extra_rule = want;
  extra_rule.chains[1].rules.push_back({"immediate verdict=1"});
  CHECK_THAT(fw::compare(want, extra_rule).at(0), Catch::Contains("unexpected rule"));

  auto lost_set = want;
  lost_set.sets.pop_back();
  CHECK_THAT(fw::compare(want, lost_set).at(0), Catch::Contains("set src_conn_v6 is missing"));

  auto owner = want;
  owner.flags = 2;  // NFT_TABLE_F_OWNER
  CHECK_THAT(fw::compare(want, owner).at(0), Catch::Contains("table flags"));

  auto policy = want;
  policy.chains[1].policy = 1;  // input accept
  CHECK_THAT(fw::compare(want, policy).at(0), Catch::Contains("chain input differs"));

  auto extra_chain = want;
  extra_chain.chains.push_back({"sneaky", "filter", 1, 0, 1, {}});
  CHECK_THAT(fw::compare(want, extra_chain).at(0), Catch::Contains("unexpected chain sneaky"));
}

TEST_CASE("canonical expressions drop kernel-only details", "[firewall]") {
  auto rs = fw::build_service_ruleset(Firewall{}, 1000);
  auto want = fw::expected_snapshot(rs);
  // Counter values and the dynset's nested limit are part of the canonical text.
  const auto& input = want.chains.at(1);
  bool saw_dynset = false;
  for (const auto& rule : input.rules)
    for (const auto& e : rule) {
      if (e.rfind("dynset", 0) == 0) {
        saw_dynset = true;
        CHECK_THAT(e, Catch::Contains("[ limit") || Catch::Contains("[ connlimit"));
      }
      if (e.rfind("counter", 0) == 0) CHECK(e == "counter");
    }
  CHECK(saw_dynset);
}

namespace {

// What a kernel dump of `batch` would hold: its NEWRULE messages parsed back
// with libnftnl (the request and the dump answer share one attribute layout),
// `edit` applied to each expression, put into the chains the model declares.
template <typename Edit>
fw::TableSnapshot read_back(const fw::Ruleset& rs, const fw::detail::Batch& batch, Edit edit) {
  fw::TableSnapshot got = fw::expected_snapshot(rs);
  for (auto& c : got.chains) c.rules.clear();
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(batch.bytes.data());
  int len = static_cast<int>(batch.bytes.size());
  for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
    if (nlh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) continue;
    fw::detail::RulePtr r(nftnl_rule_alloc());
    REQUIRE(nftnl_rule_nlmsg_parse(nlh, r.get()) == 0);
    nftnl_expr_iter* it = nftnl_expr_iter_create(r.get());
    std::string chain_name = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
    for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) edit(chain_name, e);
    nftnl_expr_iter_destroy(it);
    auto c = std::find_if(got.chains.begin(), got.chains.end(), [&](const fw::ChainSnapshot& s) { return s.name == chain_name; });
    REQUIRE(c != got.chains.end());
    c->rules.push_back(fw::canonical_rule(r.get()));
  }
  return got;
}

}  // namespace

TEST_CASE("read-back of the lowered batch: same meaning passes, one changed rule is named", "[firewall]") {
  auto rs = fw::build_service_ruleset(Firewall{}, 1000);
  auto want = fw::expected_snapshot(rs);
  auto batch = fw::detail::lower_batch(rs);

  // The kernel adds proto_max = proto_min to the redirect: same meaning.
  int redirs = 0;
  auto kernel_like = read_back(rs, batch, [&](const std::string&, nftnl_expr* e) {
    if (std::string(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) != "redir") return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX, nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN));
    ++redirs;
  });
  CHECK(redirs >= 1);
  CHECK(fw::compare(want, kernel_like).empty());

  // One accept in chain input turned into drop: exactly that rule is reported.
  bool flipped = false;
  auto tampered = read_back(rs, batch, [&](const std::string& chain_name, nftnl_expr* e) {
    if (flipped || chain_name != "input" || std::string(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) != "immediate" ||
        !nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT) || nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT) != NF_ACCEPT)
      return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
    flipped = true;
  });
  REQUIRE(flipped);
  auto d = fw::compare(want, tampered);
  REQUIRE(d.size() == 1);
  CHECK_THAT(d[0], Catch::Contains("chain input: rule") && Catch::Contains("differs") &&
                       Catch::Contains("verdict=0"));
}

// [kernel]: talks to the running kernel over NETLINK_NETFILTER, which
// qemu-arm-static does not emulate ("Protocol not supported"); the armv6
// ctest run leaves such cases out (tests/CMakeLists.txt).
TEST_CASE("a batch refused as a whole (no CAP_NET_ADMIN) is reported at once, with the reason", "[firewall][kernel]") {
  // The kernel answers such a batch once, on BATCH_BEGIN, and none of its
  // objects: waiting for their answers took 5 s and ended in "state unknown".
  std::string out = pisec::testing::run_in_child([] {
    // As root: a network namespace of our own, then no capabilities at all.
    if (::geteuid() == 0 && (::unshare(CLONE_NEWNET) != 0 || ::setresuid(65534, 65534, 65534) != 0))
      return std::string("cannot drop root");
    pisec::config::Firewall f;
    auto start = std::chrono::steady_clock::now();
    auto res = fw::detail::apply_batch(fw::detail::lower_batch(fw::build_lockdown_ruleset(f)));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    return std::string(res.applied ? "applied" : "refused") + " in " + (ms.count() < 2000 ? "under 2 s" : "2 s or more") +
           ": " + res.error;
  });
  CHECK(out ==
        "refused in under 2 s: kernel refused the ruleset for table inet pisec; nothing was changed, the previous "
        "ruleset stays in force: the whole batch: Operation not permitted — needs CAP_NET_ADMIN");
}
