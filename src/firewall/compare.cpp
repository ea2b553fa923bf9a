// The canonical form of what the kernel holds and its comparison with the
// model: verification compares meaning, not bytes (the kernel adds handles,
// counter values, redir proto_max = proto_min, zero dynset timeouts). Pure.
#include <linux/netfilter/nf_tables.h>

#include <cstdio>  // before libnftnl: its headers use FILE

#include <libnftnl/expr.h>

#include <algorithm>
#include <map>

#include "netlink_detail.hpp"

namespace pisec::firewall {

namespace detail {

namespace {

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
}  // namespace

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
}  // namespace detail

std::vector<std::string> canonical_rule(nftnl_rule* r) {
  std::vector<std::string> out;
  nftnl_expr_foreach(r, detail::collect_expr, &out);
  return out;
}

TableSnapshot expected_snapshot(const Ruleset& rs) {
  TableSnapshot t;
  t.exists = true;
  t.flags = 0;
  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    auto st = detail::lower_set(rs, rs.sets[i], static_cast<std::uint32_t>(i + 1));
    t.sets.push_back(detail::set_snapshot(st.get()));
  }
  for (const auto& c : rs.chains) {
    auto ch = detail::lower_chain(rs, c);
    ChainSnapshot cs = detail::chain_snapshot(ch.get());
    for (const auto& r : c.rules) cs.rules.push_back(canonical_rule(detail::lower_rule(rs, c.name, r).get()));
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

}  // namespace pisec::firewall
