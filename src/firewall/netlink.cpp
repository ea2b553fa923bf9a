// The kernel adapter (libmnl): sends a lowered batch, collects every ACK and
// maps errors to the objects that caused them, reads a table back.
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

#include "netlink_detail.hpp"

namespace pisec::firewall {

namespace {

using detail::chain_snapshot;
using detail::ChainPtr;
using detail::next_seq;
using detail::RulePtr;
using detail::set_snapshot;
using detail::SetPtr;
using detail::TablePtr;

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

std::vector<RuleCounter> read_counters(const std::string& table) {
  Socket sock;
  std::vector<RuleCounter> out;
  std::map<std::string, std::size_t> position;  // rules seen per chain, in the kernel's order
  dump(sock, NFT_MSG_GETRULE, table, [&](const nlmsghdr* m) {
    RulePtr r(nftnl_rule_alloc());
    if (nftnl_rule_nlmsg_parse(m, r.get()) < 0) throw std::runtime_error("cannot parse a rule from the kernel");
    const char* t = nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE);
    if (!t || table != t || nftnl_rule_get_u32(r.get(), NFTNL_RULE_FAMILY) != NFPROTO_INET) return;
    const std::string chain = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
    const std::size_t index = position[chain]++;
    nftnl_expr_iter* it = nftnl_expr_iter_create(r.get());
    if (!it) throw std::runtime_error("out of memory");
    for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
      if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") != 0) continue;
      out.push_back({chain, index, nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS),
                     nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES)});
      break;
    }
    nftnl_expr_iter_destroy(it);
  });
  return out;
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

ApplyResult detail::apply_batch(const Batch& batch) {
  ApplyResult res;
  Socket sock;
  sock.send(batch.bytes.data(), batch.bytes.size());

  // The kernel answers every NLM_F_ACK message after the whole batch: keep
  // reading until each sequence number has its answer.
  const auto& sent = batch.sent;
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
          if (nlh->nlmsg_seq == batch.begin_seq && err->error != 0) {
            // The kernel refused the batch as a whole: nothing else will be answered.
            int code = -err->error;
            errors.push_back(std::string("the whole batch: ") + std::strerror(code) + kernel_hint(code, "", false));
            pending.clear();
            break;
          }
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
    res.error = "kernel refused the ruleset for table inet " + batch.table +
                "; nothing was changed, the previous ruleset stays in force: " + errors.front();
    for (std::size_t i = 1; i < errors.size(); ++i) res.error += "; " + errors[i];
    return res;
  }
  res.applied = true;
  return res;
}

ApplyResult apply(const Ruleset& rs) {
  ApplyResult res = detail::apply_batch(detail::lower_batch(rs));
  if (!res.applied) return res;
  ApplyResult check = verify(rs);
  check.applied = true;
  return check;
}

}  // namespace pisec::firewall
