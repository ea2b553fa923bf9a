// Internals shared by the three parts of the netlink rendering: lower.cpp
// (model -> libnftnl objects and one batch), compare.cpp (canonical read-back
// form) and netlink.cpp (the socket). Not part of the public API; tests that
// must send a batch the product never builds (tests/fixtures/fw_bad_batch.cpp)
// include it too.
#pragma once

#include <cstdio>  // libnftnl headers use FILE without including it

#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pisec/firewall.hpp"

namespace pisec::firewall::detail {

struct RuleDeleter { void operator()(nftnl_rule* r) const { nftnl_rule_free(r); } };
struct ChainDeleter { void operator()(nftnl_chain* c) const { nftnl_chain_free(c); } };
struct SetDeleter { void operator()(nftnl_set* s) const { nftnl_set_free(s); } };
struct TableDeleter { void operator()(nftnl_table* t) const { nftnl_table_free(t); } };
using RulePtr = std::unique_ptr<nftnl_rule, RuleDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, SetDeleter>;
using TablePtr = std::unique_ptr<nftnl_table, TableDeleter>;

// ---- lower.cpp ----------------------------------------------------------------

// Netlink sequence numbers, shared by batches and dumps on any socket.
std::uint32_t next_seq();

RulePtr lower_rule(const Ruleset& rs, const std::string& chain, const Rule& rule);
ChainPtr lower_chain(const Ruleset& rs, const Chain& c);
SetPtr lower_set(const Ruleset& rs, const Set& s, std::uint32_t id);
// "rule 3 of chain input (tcp dport 22 accept)": how errors name a rule.
std::string describe_rule(const Rule& r, const std::string& chain, std::size_t index);

// One nfnetlink transaction, ready to send. Every object message asks for an
// ACK under its own sequence number, so an error answer names the object.
struct Batch {
  struct Sent {
    std::string what;
    bool nat_related = false;
  };
  std::string table;
  std::vector<char> bytes;              // BATCH_BEGIN, objects, BATCH_END
  // A refusal of the whole batch (no CAP_NET_ADMIN, no nf_tables) is one
  // error answer to BATCH_BEGIN, and the objects get none.
  std::uint32_t begin_seq = 0;
  std::map<std::uint32_t, Sent> sent;   // seq -> object, one per NLM_F_ACK message
};

// Builds a Batch message by message; finish() closes it.
class BatchWriter {
 public:
  explicit BatchWriter(std::string table);
  // Create-if-missing, delete, recreate the table, then sets, chains, rules.
  void add_ruleset(const Ruleset& rs);
  void add_rule(const Ruleset& rs, const std::string& chain, const Rule& rule, std::size_t index,
                bool nat_related);
  Batch finish();

 private:
  char* cur();
  void next();  // commits the message at cur()
  void table_msg(std::uint16_t type, std::uint16_t flags, const char* what);

  Batch b_;
  std::size_t used_ = 0;
};

// The batch apply() sends for `rs`.
Batch lower_batch(const Ruleset& rs);

// ---- compare.cpp --------------------------------------------------------------

ChainSnapshot chain_snapshot(const nftnl_chain* c);
SetSnapshot set_snapshot(const nftnl_set* s);

// ---- netlink.cpp --------------------------------------------------------------

// Sends `batch` and collects every ACK. Sets `applied`, or `error` naming the
// refused object(s); never reads back (apply() verifies afterwards).
ApplyResult apply_batch(const Batch& batch);

}  // namespace pisec::firewall::detail
