// Netlink rendering of a Ruleset (libnftnl objects), the canonical form used to
// compare with what the kernel holds, and the thin kernel adapter (libmnl).
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>

#include "pisec/firewall.hpp"

namespace pisec::firewall {

namespace {

constexpr std::uint32_t reg1 = NFT_REG_1;
constexpr std::uint32_t set_type_ipv4_addr = 7, set_type_ipv6_addr = 8;  // nft datatype ids
constexpr const char* invalid_chain_name = "pisec-test-missing-chain";

struct RuleDeleter { void operator()(nftnl_rule* r) const { nftnl_rule_free(r); } };
struct ChainDeleter { void operator()(nftnl_chain* c) const { nftnl_chain_free(c); } };
struct SetDeleter { void operator()(nftnl_set* s) const { nftnl_set_free(s); } };
struct TableDeleter { void operator()(nftnl_table* t) const { nftnl_table_free(t); } };
using RulePtr = std::unique_ptr<nftnl_rule, RuleDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, SetDeleter>;
using TablePtr = std::unique_ptr<nftnl_table, TableDeleter>;

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

std::string hex(const void* data, std::uint32_t len) {
  static const char digits[] = "0123456789abcdef";
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::string out = "0x";
  for (std::uint32_t i = 0; i < len; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string attr_hex(const nftnl_expr* e, std::uint16_t type) {
  std::uint32_t len = 0;
  const void* d = nftnl_expr_get(e, type, &len);
  return d ? hex(d, len) : "-";
}

std::string u32_attr(const nftnl_expr* e, std::uint16_t type, const char* label) {
  if (!nftnl_expr_is_set(e, type)) return "";
  return std::string(" ") + label + "=" + std::to_string(nftnl_expr_get_u32(e, type));
}

std::string canonical_expr(const nftnl_expr* e);

int collect_inner(nftnl_expr* e, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(canonical_expr(e));
  return 0;
}

// One expression as a string that ignores what does not change behaviour.
std::string canonical_expr(const nftnl_expr* e) {
  std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  std::string s = name;
  if (name == "meta") {
    s += u32_attr(e, NFTNL_EXPR_META_KEY, "key") + u32_attr(e, NFTNL_EXPR_META_DREG, "dreg") +
         u32_attr(e, NFTNL_EXPR_META_SREG, "sreg");
  } else if (name == "cmp") {
    s += u32_attr(e, NFTNL_EXPR_CMP_SREG, "sreg") + u32_attr(e, NFTNL_EXPR_CMP_OP, "op") +
         " data=" + attr_hex(e, NFTNL_EXPR_CMP_DATA);
  } else if (name == "payload") {
    s += u32_attr(e, NFTNL_EXPR_PAYLOAD_BASE, "base") + u32_attr(e, NFTNL_EXPR_PAYLOAD_OFFSET, "offset") +
         u32_attr(e, NFTNL_EXPR_PAYLOAD_LEN, "len") + u32_attr(e, NFTNL_EXPR_PAYLOAD_DREG, "dreg") +
         u32_attr(e, NFTNL_EXPR_PAYLOAD_SREG, "sreg");
  } else if (name == "bitwise") {
    s += u32_attr(e, NFTNL_EXPR_BITWISE_SREG, "sreg") + u32_attr(e, NFTNL_EXPR_BITWISE_DREG, "dreg") +
         u32_attr(e, NFTNL_EXPR_BITWISE_LEN, "len");
    if (nftnl_expr_is_set(e, NFTNL_EXPR_BITWISE_OP) && nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_OP) != 0)
      s += u32_attr(e, NFTNL_EXPR_BITWISE_OP, "op");
    s += " mask=" + attr_hex(e, NFTNL_EXPR_BITWISE_MASK) + " xor=" + attr_hex(e, NFTNL_EXPR_BITWISE_XOR);
  } else if (name == "ct") {
    s += u32_attr(e, NFTNL_EXPR_CT_KEY, "key") + u32_attr(e, NFTNL_EXPR_CT_DREG, "dreg");
    if (nftnl_expr_is_set(e, NFTNL_EXPR_CT_DIR))
      s += " dir=" + std::to_string(nftnl_expr_get_u8(e, NFTNL_EXPR_CT_DIR));
  } else if (name == "immediate") {
    if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT)) {
      s += " verdict=" + std::to_string(static_cast<std::int32_t>(nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT)));
      if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN))
        s += std::string(" chain=") + nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN);
    } else {
      s += u32_attr(e, NFTNL_EXPR_IMM_DREG, "dreg") + " data=" + attr_hex(e, NFTNL_EXPR_IMM_DATA);
    }
  } else if (name == "limit") {
    s += " rate=" + std::to_string(nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_RATE)) +
         " unit=" + std::to_string(nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_UNIT)) +
         u32_attr(e, NFTNL_EXPR_LIMIT_BURST, "burst") + u32_attr(e, NFTNL_EXPR_LIMIT_TYPE, "type");
    std::uint32_t flags = nftnl_expr_is_set(e, NFTNL_EXPR_LIMIT_FLAGS) ? nftnl_expr_get_u32(e, NFTNL_EXPR_LIMIT_FLAGS) : 0;
    s += " flags=" + std::to_string(flags);
  } else if (name == "connlimit") {
    s += u32_attr(e, NFTNL_EXPR_CONNLIMIT_COUNT, "count");
    std::uint32_t flags = nftnl_expr_is_set(e, NFTNL_EXPR_CONNLIMIT_FLAGS) ? nftnl_expr_get_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS) : 0;
    s += " flags=" + std::to_string(flags);
  } else if (name == "counter") {
    // packet and byte counts are state, not meaning
  } else if (name == "redir") {
    s += u32_attr(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, "proto_min");
    // The kernel reports proto_max = proto_min when only the minimum was given.
    if (nftnl_expr_is_set(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX) &&
        (!nftnl_expr_is_set(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN) ||
         nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX) != nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN)))
      s += u32_attr(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX, "proto_max");
    s += u32_attr(e, NFTNL_EXPR_REDIR_FLAGS, "flags");
  } else if (name == "dynset") {
    s += u32_attr(e, NFTNL_EXPR_DYNSET_OP, "op") + u32_attr(e, NFTNL_EXPR_DYNSET_SREG_KEY, "sreg_key");
    if (nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_SREG_DATA)) s += u32_attr(e, NFTNL_EXPR_DYNSET_SREG_DATA, "sreg_data");
    s += std::string(" set=") + (nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_SET_NAME) ? nftnl_expr_get_str(e, NFTNL_EXPR_DYNSET_SET_NAME) : "-");
    if (nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_TIMEOUT) && nftnl_expr_get_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT) != 0)
      s += " timeout=" + std::to_string(nftnl_expr_get_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT));
    if (nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_FLAGS) && nftnl_expr_get_u32(e, NFTNL_EXPR_DYNSET_FLAGS) != 0)
      s += u32_attr(e, NFTNL_EXPR_DYNSET_FLAGS, "flags");
    std::vector<std::string> inner;
    nftnl_expr_expr_foreach(e, collect_inner, &inner);
    s += " [";
    for (const auto& i : inner) s += " " + i;
    s += " ]";
  } else {
    s = "unknown:" + name;  // never produced by the model: any such rule mismatches
  }
  return s;
}

int collect_expr(nftnl_expr* e, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(canonical_expr(e));
  return 0;
}


ChainSnapshot chain_snapshot(const nftnl_chain* c) {
  ChainSnapshot s;
  s.name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE)) s.type = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) s.hook = nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_PRIO)) s.priority = nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)) s.policy = nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY);
  return s;
}

SetSnapshot set_snapshot(const nftnl_set* st) {
  SetSnapshot s;
  s.name = nftnl_set_get_str(st, NFTNL_SET_NAME);
  if (nftnl_set_is_set(st, NFTNL_SET_FLAGS)) s.flags = nftnl_set_get_u32(st, NFTNL_SET_FLAGS);
  if (nftnl_set_is_set(st, NFTNL_SET_KEY_TYPE)) s.key_type = nftnl_set_get_u32(st, NFTNL_SET_KEY_TYPE);
  if (nftnl_set_is_set(st, NFTNL_SET_KEY_LEN)) s.key_len = nftnl_set_get_u32(st, NFTNL_SET_KEY_LEN);
  if (nftnl_set_is_set(st, NFTNL_SET_TIMEOUT)) s.timeout_ms = nftnl_set_get_u64(st, NFTNL_SET_TIMEOUT);
  if (nftnl_set_is_set(st, NFTNL_SET_DESC_SIZE)) s.size = nftnl_set_get_u32(st, NFTNL_SET_DESC_SIZE);
  return s;
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

// ---- kernel adapter ---------------------------------------------------------

constexpr std::size_t recv_buffer_size = 64 * 1024;  // >= 32 KiB: acks for big batches

class Socket {
 public:
  Socket() {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl_) throw std::runtime_error(std::string("netlink socket: ") + std::strerror(errno));
    if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      int err = errno;
      mnl_socket_close(nl_);
      throw std::runtime_error(std::string("netlink bind: ") + std::strerror(err));
    }
    // A kernel that never answers must not hang the caller forever.
    timeval tv{};
    tv.tv_sec = 5;
    setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    portid_ = mnl_socket_get_portid(nl_);
  }
  ~Socket() { mnl_socket_close(nl_); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  void send(const void* buf, std::size_t len) {
    if (mnl_socket_sendto(nl_, buf, len) < 0)
      throw std::runtime_error(std::string("netlink send: ") + std::strerror(errno));
  }
  // Returns bytes received, or throws (timeout included).
  std::size_t recv(std::vector<char>& buf) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        throw std::runtime_error("netlink: no answer from the kernel within 5 s");
      throw std::runtime_error(std::string("netlink receive: ") + std::strerror(errno));
    }
    return static_cast<std::size_t>(n);
  }
  std::uint32_t portid() const { return portid_; }

 private:
  mnl_socket* nl_ = nullptr;
  std::uint32_t portid_ = 0;
};

std::uint32_t next_seq() {
  static std::uint32_t seq = static_cast<std::uint32_t>(std::time(nullptr));
  return ++seq;
}

// Sends one dump request and feeds every answer message to `parse`.
template <typename Parse>
void dump(Socket& sock, std::uint16_t type, const std::string& table, Parse parse) {
  std::vector<char> buf(recv_buffer_size);
  std::uint32_t seq = next_seq();
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), type, NFPROTO_INET, NLM_F_DUMP, seq);
  if (type == NFT_MSG_GETRULE) {
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
  } else if (type == NFT_MSG_GETSET) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_nlmsg_build_payload(nlh, s.get());
  }
  sock.send(nlh, nlh->nlmsg_len);
  struct Ctx { Parse* parse; };
  Ctx ctx{&parse};
  auto cb = [](const nlmsghdr* m, void* data) -> int {
    (*static_cast<Ctx*>(data)->parse)(m);
    return MNL_CB_OK;
  };
  for (;;) {
    std::size_t n = sock.recv(buf);
    int rc = mnl_cb_run(buf.data(), n, seq, sock.portid(), cb, &ctx);
    if (rc == MNL_CB_STOP) return;
    if (rc < 0) throw std::runtime_error(std::string("netlink dump: ") + std::strerror(errno));
  }
}

std::string kernel_hint(int err, const std::string& object, bool nat_related) {
  if ((err == ENOENT || err == EOPNOTSUPP) && nat_related)
    return " — kernel lacks nftables NAT/redirect support (CONFIG_NFT_NAT, CONFIG_NFT_REDIR; inet NAT needs Linux >= 5.2)";
  if ((err == ENOENT || err == EOPNOTSUPP) && object.find("@src_") != std::string::npos)
    return " — kernel lacks dynamic-set/limit/connlimit support (CONFIG_NFT_LIMIT, CONFIG_NFT_CONNLIMIT, CONFIG_NFT_CT)";
  if (err == EAFNOSUPPORT) return " — kernel lacks inet tables (CONFIG_NF_TABLES_INET)";
  if (err == EPERM) return " — needs CAP_NET_ADMIN";
  return "";
}

}  // namespace

// ---- snapshots and comparison ----------------------------------------------

std::vector<std::string> canonical_rule(nftnl_rule* r) {
  std::vector<std::string> out;
  nftnl_expr_foreach(r, collect_expr, &out);
  return out;
}

TableSnapshot expected_snapshot(const Ruleset& rs) {
  TableSnapshot t;
  t.exists = true;
  t.flags = 0;
  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    auto st = lower_set(rs, rs.sets[i], static_cast<std::uint32_t>(i + 1));
    t.sets.push_back(set_snapshot(st.get()));
  }
  for (const auto& c : rs.chains) {
    auto ch = lower_chain(rs, c);
    ChainSnapshot cs = chain_snapshot(ch.get());
    for (const auto& r : c.rules) cs.rules.push_back(canonical_rule(lower_rule(rs, c.name, r).get()));
    t.chains.push_back(std::move(cs));
  }
  return t;
}

std::vector<std::string> compare(const TableSnapshot& want, const TableSnapshot& got) {
  std::vector<std::string> diff;
  if (!got.exists) {
    diff.push_back("table is missing from the kernel");
    return diff;
  }
  if (got.flags != want.flags)
    diff.push_back("table flags are " + std::to_string(got.flags) + ", expected " + std::to_string(want.flags));
  std::map<std::string, const SetSnapshot*> got_sets;
  for (const auto& s : got.sets) got_sets[s.name] = &s;
  for (const auto& s : want.sets) {
    auto it = got_sets.find(s.name);
    if (it == got_sets.end()) {
      diff.push_back("set " + s.name + " is missing");
      continue;
    }
    const SetSnapshot& g = *it->second;
    if (g.flags != s.flags || g.key_type != s.key_type || g.key_len != s.key_len ||
        g.timeout_ms != s.timeout_ms || g.size != s.size)
      diff.push_back("set " + s.name + " differs (flags/key/timeout/size)");
    got_sets.erase(it);
  }
  for (const auto& [name, s] : got_sets) diff.push_back("unexpected set " + name);

  std::map<std::string, const ChainSnapshot*> got_chains;
  for (const auto& c : got.chains) got_chains[c.name] = &c;
  for (const auto& c : want.chains) {
    auto it = got_chains.find(c.name);
    if (it == got_chains.end()) {
      diff.push_back("chain " + c.name + " is missing");
      continue;
    }
    const ChainSnapshot& g = *it->second;
    if (g.type != c.type || g.hook != c.hook || g.priority != c.priority || g.policy != c.policy)
      diff.push_back("chain " + c.name + " differs in type/hook/priority/policy");
    std::size_t n = std::max(c.rules.size(), g.rules.size());
    for (std::size_t i = 0; i < n; ++i) {
      if (i >= g.rules.size()) {
        diff.push_back("chain " + c.name + ": rule " + std::to_string(i + 1) + " is missing");
      } else if (i >= c.rules.size()) {
        diff.push_back("chain " + c.name + ": unexpected rule " + std::to_string(i + 1));
      } else if (g.rules[i] != c.rules[i]) {
        std::string detail;
        for (std::size_t k = 0; k < std::max(g.rules[i].size(), c.rules[i].size()); ++k) {
          std::string a = k < c.rules[i].size() ? c.rules[i][k] : "(none)";
          std::string b = k < g.rules[i].size() ? g.rules[i][k] : "(none)";
          if (a != b) {
            detail = ": expected [" + a + "], kernel has [" + b + "]";
            break;
          }
        }
        diff.push_back("chain " + c.name + ": rule " + std::to_string(i + 1) + " differs" + detail);
      }
    }
    got_chains.erase(it);
  }
  for (const auto& [name, c] : got_chains) diff.push_back("unexpected chain " + name);
  return diff;
}

// ---- kernel -------------------------------------------------------------------

TableSnapshot read_kernel_table(const std::string& table) {
  Socket sock;
  TableSnapshot t;
  {
    std::vector<char> buf(recv_buffer_size);
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, seq);
    TablePtr req(nftnl_table_alloc());
    nftnl_table_set_str(req.get(), NFTNL_TABLE_NAME, table.c_str());
    nftnl_table_nlmsg_build_payload(nlh, req.get());
    sock.send(nlh, nlh->nlmsg_len);
    auto cb = [](const nlmsghdr* m, void* data) -> int {
      auto* snap = static_cast<TableSnapshot*>(data);
      TablePtr got(nftnl_table_alloc());
      if (nftnl_table_nlmsg_parse(m, got.get()) < 0) return MNL_CB_ERROR;
      snap->exists = true;
      snap->flags = nftnl_table_get_u32(got.get(), NFTNL_TABLE_FLAGS);
      return MNL_CB_OK;
    };
    for (;;) {
      std::size_t n = sock.recv(buf);
      int rc = mnl_cb_run(buf.data(), n, seq, sock.portid(), cb, &t);
      if (rc == MNL_CB_STOP) break;
      if (rc < 0) {
        if (errno == ENOENT) return t;  // no table: exists = false
        throw std::runtime_error(std::string("netlink get table: ") + std::strerror(errno));
      }
    }
  }
  auto same_table = [&](const char* name, std::uint32_t family) {
    return name && table == name && family == NFPROTO_INET;
  };
  dump(sock, NFT_MSG_GETSET, table, [&](const nlmsghdr* m) {
    SetPtr s(nftnl_set_alloc());
    if (nftnl_set_nlmsg_parse(m, s.get()) < 0) throw std::runtime_error("cannot parse a set from the kernel");
    if (same_table(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE), nftnl_set_get_u32(s.get(), NFTNL_SET_FAMILY)))
      t.sets.push_back(set_snapshot(s.get()));
  });
  dump(sock, NFT_MSG_GETCHAIN, table, [&](const nlmsghdr* m) {
    ChainPtr c(nftnl_chain_alloc());
    if (nftnl_chain_nlmsg_parse(m, c.get()) < 0) throw std::runtime_error("cannot parse a chain from the kernel");
    if (same_table(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE), nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_FAMILY)))
      t.chains.push_back(chain_snapshot(c.get()));
  });
  dump(sock, NFT_MSG_GETRULE, table, [&](const nlmsghdr* m) {
    RulePtr r(nftnl_rule_alloc());
    if (nftnl_rule_nlmsg_parse(m, r.get()) < 0) throw std::runtime_error("cannot parse a rule from the kernel");
    if (!same_table(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE), nftnl_rule_get_u32(r.get(), NFTNL_RULE_FAMILY))) return;
    std::string chain = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
    for (auto& c : t.chains) {
      if (c.name == chain) {
        c.rules.push_back(canonical_rule(r.get()));
        return;
      }
    }
    throw std::runtime_error("kernel rule in unknown chain " + chain);
  });
  return t;
}

ApplyResult verify(const Ruleset& rs) {
  ApplyResult res;
  res.applied = true;
  try {
    res.differences = compare(expected_snapshot(rs), read_kernel_table(rs.table));
  } catch (const std::exception& e) {
    res.error = std::string("reading the ruleset back failed: ") + e.what();
    return res;
  }
  if (!res.differences.empty()) {
    res.error = "the kernel's table inet " + rs.table + " does not match the model (" +
                std::to_string(res.differences.size()) + " difference(s)): " + res.differences.front();
    return res;
  }
  res.verified = true;
  res.digest = digest(rs);
  return res;
}

ApplyResult apply(const Ruleset& rs, const ApplyOptions& opts) {
  ApplyResult res;
  // Every object message gets its own sequence number and a description, so
  // an error answer can name what the kernel refused.
  struct Sent { std::string what; bool nat_related; };
  std::map<std::uint32_t, Sent> sent;

  std::vector<char> buf(1024 * 1024);
  mnl_nlmsg_batch* batch = mnl_nlmsg_batch_start(buf.data(), buf.size());
  if (!batch) throw std::bad_alloc();
  std::unique_ptr<mnl_nlmsg_batch, void (*)(mnl_nlmsg_batch*)> batch_guard(batch, mnl_nlmsg_batch_stop);
  auto next = [&] {
    if (!mnl_nlmsg_batch_next(batch)) throw std::runtime_error("ruleset too large for one netlink batch");
  };
  auto cur = [&] { return static_cast<char*>(mnl_nlmsg_batch_current(batch)); };

  nftnl_batch_begin(cur(), next_seq());
  next();
  auto table_msg = [&](std::uint16_t type, std::uint16_t flags, const char* what) {
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), type, NFPROTO_INET, static_cast<std::uint16_t>(flags | NLM_F_ACK), seq);
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, rs.table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);  // never NFT_TABLE_F_OWNER: the rules must outlive us
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    next();
    sent[seq] = {what, false};
  };
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
    sent[seq] = {"set @" + rs.sets[i].name, false};
  }
  for (const auto& c : rs.chains) {
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWCHAIN, NFPROTO_INET,
                                          NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq);
    auto ch = lower_chain(rs, c);
    nftnl_chain_nlmsg_build_payload(nlh, ch.get());
    next();
    sent[seq] = {"chain " + c.name + " (type " + c.type + ")", c.type == "nat"};
  }
  auto rule_msg = [&](RulePtr r, std::string what, bool nat_related) {
    std::uint32_t seq = next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWRULE, NFPROTO_INET,
                                          NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq);
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
    next();
    sent[seq] = {std::move(what), nat_related};
  };
  for (const auto& c : rs.chains) {
    for (std::size_t i = 0; i < c.rules.size(); ++i) {
      bool redirect = std::any_of(c.rules[i].items.begin(), c.rules[i].items.end(),
                                  [](const Item& it) { return std::holds_alternative<RedirectStmt>(it); });
      rule_msg(lower_rule(rs, c.name, c.rules[i]), describe_rule(c.rules[i], c.name, i),
               redirect || c.type == "nat");
    }
  }
  if (opts.inject_invalid_rule) {
    Rule bad{{VerdictStmt{Verdict::accept}}};
    rule_msg(lower_rule(rs, invalid_chain_name, bad), describe_rule(bad, invalid_chain_name, 0), false);
  }
  nftnl_batch_end(cur(), next_seq());
  next();

  Socket sock;
  sock.send(mnl_nlmsg_batch_head(batch), mnl_nlmsg_batch_size(batch));

  // The kernel answers every NLM_F_ACK message after the whole batch: keep
  // reading until each sequence number has its answer.
  std::set<std::uint32_t> pending;
  for (const auto& [seq, s] : sent) pending.insert(seq);
  std::vector<std::string> errors;
  std::vector<char> rbuf(recv_buffer_size);
  try {
    while (!pending.empty()) {
      std::size_t n = sock.recv(rbuf);
      const auto* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data());
      int len = static_cast<int>(n);
      while (mnl_nlmsg_ok(nlh, len)) {
        if (nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_pid == sock.portid()) {
          const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
          auto it = sent.find(nlh->nlmsg_seq);
          if (pending.erase(nlh->nlmsg_seq) && err->error != 0 && it != sent.end()) {
            int code = -err->error;
            errors.push_back(it->second.what + ": " + std::strerror(code) +
                             kernel_hint(code, it->second.what, it->second.nat_related));
          }
        }
        nlh = mnl_nlmsg_next(nlh, &len);
      }
    }
  } catch (const std::exception& e) {
    // After a refusal the kernel may leave later messages unanswered.
    if (errors.empty()) {
      res.error = std::string(e.what()) + " (" + std::to_string(pending.size()) +
                  " message(s) unanswered; state unknown, read back with `pisecd firewall verify`)";
      return res;
    }
  }
  if (!errors.empty()) {
    res.error = "kernel refused the ruleset for table inet " + rs.table +
                "; nothing was changed, the previous ruleset stays in force: " + errors.front();
    for (std::size_t i = 1; i < errors.size(); ++i) res.error += "; " + errors[i];
    return res;
  }
  res.applied = true;
  ApplyResult check = verify(rs);
  check.applied = true;
  return check;
}

}  // namespace pisec::firewall
