// Lowering of a Ruleset to libnftnl objects and to the one netlink batch that
// apply() sends. Pure: builds messages in memory, opens no socket.
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstdio>  // before libnftnl: its headers use FILE

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <stdexcept>

#include "netlink_detail.hpp"

namespace pisec::firewall::detail {

namespace {

constexpr std::uint32_t reg1 = NFT_REG_1;
constexpr std::uint32_t set_type_ipv4_addr = 7, set_type_ipv6_addr = 8;  // nft datatype ids

nftnl_expr* new_expr(const char* name) {
  nftnl_expr* e = nftnl_expr_alloc(name);
  if (!e) throw std::bad_alloc();
  return e;
}

void add_meta(nftnl_rule* r, std::uint32_t key) {
  nftnl_expr* e = new_expr("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg1);
  nftnl_rule_add_expr(r, e);
}

void add_cmp(nftnl_rule* r, std::uint32_t op, const void* data, std::uint32_t len) {
  nftnl_expr* e = new_expr("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, reg1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}

void add_payload(nftnl_rule* r, std::uint32_t base, std::uint32_t offset, std::uint32_t len) {
  nftnl_expr* e = new_expr("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_rule_add_expr(r, e);
}

void add_bitwise(nftnl_rule* r, const void* mask, const void* xor_, std::uint32_t len) {
  nftnl_expr* e = new_expr("bitwise");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor_, len);
  nftnl_rule_add_expr(r, e);
}

nftnl_expr* limit_expr(const LimitStmt& l) {
  nftnl_expr* e = new_expr("limit");
  nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_RATE, l.rate_per_s);
  nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_UNIT, 1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_BURST, l.burst);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_FLAGS, l.over ? NFT_LIMIT_F_INV : 0);
  return e;
}

void add_saddr_load(nftnl_rule* r, Family f) {
  if (f == Family::ipv4)
    add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
  else
    add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 8, 16);
}

void add_dynset(nftnl_rule* r, const std::string& set, std::uint32_t set_id, std::uint32_t op,
                nftnl_expr* inner) {
  nftnl_expr* e = new_expr("dynset");
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, reg1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, op);
  nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set.c_str());
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SET_ID, set_id);
  nftnl_expr_add_expr(e, NFTNL_EXPR_DYNSET_EXPRESSIONS, inner);
  nftnl_rule_add_expr(r, e);
}

void add_verdict(nftnl_rule* r, std::uint32_t code) {
  nftnl_expr* e = new_expr("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, code);
  nftnl_rule_add_expr(r, e);
}

std::uint32_t set_id_of(const Ruleset& rs, const std::string& name) {
  for (std::size_t i = 0; i < rs.sets.size(); ++i)
    if (rs.sets[i].name == name) return static_cast<std::uint32_t>(i + 1);
  throw std::logic_error("rule names unknown set " + name);
}

void lower_item(nftnl_rule* r, const Ruleset& rs, const Item& item) {
  if (auto* m = std::get_if<MetaMatch>(&item)) {
    switch (m->key) {
      case MetaKey::nfproto: {
        add_meta(r, NFT_META_NFPROTO);
        auto v = static_cast<std::uint8_t>(m->value);
        add_cmp(r, NFT_CMP_EQ, &v, 1);
        break;
      }
      case MetaKey::l4proto: {
        add_meta(r, NFT_META_L4PROTO);
        auto v = static_cast<std::uint8_t>(m->value);
        add_cmp(r, NFT_CMP_EQ, &v, 1);
        break;
      }
      case MetaKey::iif:
      case MetaKey::oif:
      case MetaKey::skuid: {
        add_meta(r, m->key == MetaKey::iif   ? NFT_META_IIF
                    : m->key == MetaKey::oif ? NFT_META_OIF
                                             : NFT_META_SKUID);
        std::uint32_t v = m->value;  // host byte order, as the kernel stores them
        add_cmp(r, NFT_CMP_EQ, &v, 4);
        break;
      }
    }
  } else if (auto* cs = std::get_if<CtStateMatch>(&item)) {
    nftnl_expr* e = new_expr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, reg1);
    nftnl_rule_add_expr(r, e);
    std::uint32_t mask = cs->mask, zero = 0;
    add_bitwise(r, &mask, &zero, 4);
    add_cmp(r, NFT_CMP_NEQ, &zero, 4);
  } else if (auto* od = std::get_if<CtOriginalDportMatch>(&item)) {
    nftnl_expr* e = new_expr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_PROTO_DST);
    nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, IP_CT_DIR_ORIGINAL);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, reg1);
    nftnl_rule_add_expr(r, e);
    std::uint16_t port = htons(od->port);
    add_cmp(r, NFT_CMP_EQ, &port, 2);
  } else if (auto* p = std::get_if<PortMatch>(&item)) {
    add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, p->source ? 0 : 2, 2);
    std::uint16_t port = htons(p->port);
    add_cmp(r, NFT_CMP_EQ, &port, 2);
  } else if (auto* ic = std::get_if<IcmpTypeMatch>(&item)) {
    add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
    add_cmp(r, NFT_CMP_EQ, &ic->type, 1);
  } else if (auto* a = std::get_if<AddressMatch>(&item)) {
    bool v4 = a->prefix.family == Family::ipv4;
    std::uint32_t len = v4 ? 4 : 16;
    std::uint32_t offset = v4 ? (a->source ? 12 : 16) : (a->source ? 8 : 24);
    add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, offset, len);
    if (a->prefix.length != static_cast<int>(len * 8)) {
      std::array<std::uint8_t, 16> mask{}, zero{};
      for (int bit = 0; bit < a->prefix.length; ++bit)
        mask[static_cast<std::size_t>(bit / 8)] |= static_cast<std::uint8_t>(0x80 >> (bit % 8));
      add_bitwise(r, mask.data(), zero.data(), len);
    }
    add_cmp(r, NFT_CMP_EQ, a->prefix.bytes.data(), len);
  } else if (auto* l = std::get_if<LimitStmt>(&item)) {
    nftnl_rule_add_expr(r, limit_expr(*l));
  } else if (auto* ml = std::get_if<MeterLimitStmt>(&item)) {
    add_saddr_load(r, ml->family);
    add_dynset(r, ml->set, set_id_of(rs, ml->set), NFT_DYNSET_OP_UPDATE, limit_expr(ml->limit));
  } else if (auto* mc = std::get_if<MeterCountStmt>(&item)) {
    add_saddr_load(r, mc->family);
    nftnl_expr* e = new_expr("connlimit");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_COUNT, mc->count);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
    add_dynset(r, mc->set, set_id_of(rs, mc->set), NFT_DYNSET_OP_ADD, e);
  } else if (std::holds_alternative<CounterStmt>(item)) {
    nftnl_rule_add_expr(r, new_expr("counter"));
  } else if (auto* rd = std::get_if<RedirectStmt>(&item)) {
    nftnl_expr* imm = new_expr("immediate");
    nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, reg1);
    std::uint16_t port = htons(rd->port);
    nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, &port, 2);
    nftnl_rule_add_expr(r, imm);
    nftnl_expr* e = new_expr("redir");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, reg1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
    nftnl_rule_add_expr(r, e);
  } else if (auto* v = std::get_if<VerdictStmt>(&item)) {
    add_verdict(r, v->verdict == Verdict::accept ? NF_ACCEPT : NF_DROP);
  }
}

}  // namespace

RulePtr lower_rule(const Ruleset& rs, const std::string& chain, const Rule& rule) {
  RulePtr r(nftnl_rule_alloc());
  if (!r) throw std::bad_alloc();
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, rs.table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  for (const auto& item : rule.items) lower_item(r.get(), rs, item);
  return r;
}

ChainPtr lower_chain(const Ruleset& rs, const Chain& c) {
  ChainPtr ch(nftnl_chain_alloc());
  if (!ch) throw std::bad_alloc();
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, rs.table.c_str());
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_NAME, c.name.c_str());
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, c.type.c_str());
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, static_cast<std::uint32_t>(c.hook));
  nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, c.priority);
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, c.policy == Verdict::accept ? NF_ACCEPT : NF_DROP);
  return ch;
}

SetPtr lower_set(const Ruleset& rs, const Set& s, std::uint32_t id) {
  SetPtr st(nftnl_set_alloc());
  if (!st) throw std::bad_alloc();
  bool v4 = s.key == Family::ipv4;
  nftnl_set_set_u32(st.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
  nftnl_set_set_str(st.get(), NFTNL_SET_TABLE, rs.table.c_str());
  nftnl_set_set_str(st.get(), NFTNL_SET_NAME, s.name.c_str());
  nftnl_set_set_u32(st.get(), NFTNL_SET_ID, id);
  nftnl_set_set_u32(st.get(), NFTNL_SET_KEY_TYPE, v4 ? set_type_ipv4_addr : set_type_ipv6_addr);
  nftnl_set_set_u32(st.get(), NFTNL_SET_KEY_LEN, v4 ? 4 : 16);
  nftnl_set_set_u32(st.get(), NFTNL_SET_FLAGS, NFT_SET_EVAL | (s.timeout_s ? NFT_SET_TIMEOUT : 0));
  if (s.timeout_s) nftnl_set_set_u64(st.get(), NFTNL_SET_TIMEOUT, std::uint64_t{s.timeout_s} * 1000);
  nftnl_set_set_u32(st.get(), NFTNL_SET_DESC_SIZE, s.size);
  return st;
}

std::string describe_rule(const Rule& r, const std::string& chain, std::size_t index) {
  Ruleset one;
  one.chains.push_back({chain, "filter", Hook::input, 0, Verdict::drop, {r}});
  std::string text = render_nft(one);
  // The rule's own line: between the chain header and the closing brace.
  auto start = text.find(";\n\t\t");
  std::string line = start == std::string::npos ? "" : text.substr(start + 4);
  if (auto end = line.find('\n'); end != std::string::npos) line.resize(end);
  return "rule " + std::to_string(index + 1) + " of chain " + chain + " (" + line + ")";
}

std::uint32_t next_seq() {
  static std::uint32_t seq = static_cast<std::uint32_t>(std::time(nullptr));
  return ++seq;
}

// ---- the batch ------------------------------------------------------------------

namespace {
constexpr std::size_t batch_capacity = 1024 * 1024;
// Room for the largest single message past the limit: a message is written
// before its length is checked.
constexpr std::size_t batch_reserve = 64 * 1024;
}  // namespace

BatchWriter::BatchWriter(std::string table) {
  b_.table = std::move(table);
  b_.bytes.resize(batch_capacity);
  b_.begin_seq = next_seq();
  nftnl_batch_begin(cur(), b_.begin_seq);
  next();
}

char* BatchWriter::cur() { return b_.bytes.data() + used_; }

void BatchWriter::next() {
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(cur());
  std::size_t len = NLMSG_ALIGN(nlh->nlmsg_len);
  if (used_ + len > batch_capacity - batch_reserve)
    throw std::runtime_error("ruleset too large for one netlink batch");
  used_ += len;
}

void BatchWriter::table_msg(std::uint16_t type, std::uint16_t flags, const char* what) {
  std::uint32_t seq = next_seq();
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), type, NFPROTO_INET, static_cast<std::uint16_t>(flags | NLM_F_ACK), seq);
  TablePtr t(nftnl_table_alloc());
  if (!t) throw std::bad_alloc();
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, b_.table.c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);  // never NFT_TABLE_F_OWNER: the rules must outlive us
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  next();
  b_.sent[seq] = {what, false};
}

void BatchWriter::add_ruleset(const Ruleset& rs) {
  // Create-if-missing so DELTABLE cannot fail, then delete and recreate: one
  // atomic switch from whatever was there to exactly this ruleset.
  table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, "table (ensure it exists)");
  table_msg(NFT_MSG_DELTABLE, 0, "table (delete the previous ruleset)");
  table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, "table (recreate)");

  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWSET, NFPROTO_INET,
                                          NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq);
    auto st = lower_set(rs, rs.sets[i], static_cast<std::uint32_t>(i + 1));
    nftnl_set_nlmsg_build_payload(nlh, st.get());
    next();
    b_.sent[seq] = {"set @" + rs.sets[i].name, false};
  }
  for (const auto& c : rs.chains) {
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWCHAIN, NFPROTO_INET,
                                          NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq);
    auto ch = lower_chain(rs, c);
    nftnl_chain_nlmsg_build_payload(nlh, ch.get());
    next();
    b_.sent[seq] = {"chain " + c.name + " (type " + c.type + ")", c.type == "nat"};
  }
  for (const auto& c : rs.chains) {
    for (std::size_t i = 0; i < c.rules.size(); ++i) {
      bool redirect = std::any_of(c.rules[i].items.begin(), c.rules[i].items.end(),
                                  [](const Item& it) { return std::holds_alternative<RedirectStmt>(it); });
      add_rule(rs, c.name, c.rules[i], i, redirect || c.type == "nat");
    }
  }
}

void BatchWriter::add_rule(const Ruleset& rs, const std::string& chain, const Rule& rule, std::size_t index,
                           bool nat_related) {
  std::uint32_t seq = next_seq();
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWRULE, NFPROTO_INET,
                                        NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq);
  auto r = lower_rule(rs, chain, rule);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  next();
  b_.sent[seq] = {describe_rule(rule, chain, index), nat_related};
}

Batch BatchWriter::finish() {
  nftnl_batch_end(cur(), next_seq());
  next();
  b_.bytes.resize(used_);
  return std::move(b_);
}

Batch lower_batch(const Ruleset& rs) {
  BatchWriter w(rs.table);
  w.add_ruleset(rs);
  return w.finish();
}

}  // namespace pisec::firewall::detail
