// The control socket server. Every operation is asynchronous on the daemon's
// io_context; each client has deadlines and a bounded output chunk, so a slow
// or hostile client costs a slot, never the loop.
#include <utility>


#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <nlohmann/json.hpp>

#include "pisec/control.hpp"
#include "pisec/util.hpp"

namespace pisec::control {

namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;
using nlohmann::json;

namespace {

std::string error_line(std::string_view message) {
  return nlohmann::ordered_json{{"ok", false}, {"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::runtime_error sys_error(const std::string& what, const std::string& path, int err) {
  return std::runtime_error(what + " " + path + ": " + std::strerror(err));
}

void set_cloexec(int fd) {
  // Asio does not set it; the payload (spawned by this process) must never
  // inherit the control socket.
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// Creates missing parent directories with mode 0700 (existing ones, such as
// /run, are left as they are).
void make_parent_dirs(const std::filesystem::path& dir) {
  if (dir.empty()) return;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error("control socket directory " + dir.string() + " is not a directory");
    return;
  }
  make_parent_dirs(dir.parent_path() == dir ? std::filesystem::path() : dir.parent_path());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw sys_error("cannot create control socket directory", dir.string(), errno);
}

// A socket file left over from a crashed daemon is removed; a live one (or
// anything that is not a socket) makes us refuse to start.
void clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw sys_error("cannot inspect", path, errno);
  }
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error("control socket path " + path + " exists and is not a socket; refusing to remove it");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw sys_error("socket() for", path, errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(fd);
  // EAGAIN: a listener whose backlog is full - still alive.
  if (rc == 0 || err == EAGAIN)
    throw std::runtime_error("another pisecd is already listening on " + path);
  if (err != ECONNREFUSED) throw sys_error("cannot check existing control socket", path, err);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw sys_error("cannot remove stale control socket", path, errno);
}

PeerCredentials read_peer_credentials(int fd) {
  PeerCredentials peer;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    throw std::runtime_error(std::string("SO_PEERCRED: ") + std::strerror(errno));
  peer.pid = cred.pid;
  peer.uid = cred.uid;
  peer.gid = cred.gid;
  // SO_PEERGROUPS (Linux 4.13) reports the groups as of connect(), with no
  // pid-reuse race; /proc/<pid>/status is the fallback for older kernels.
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      peer.groups = std::move(groups);
      return peer;
    }
    if (errno != ERANGE) break;
    groups.resize(glen / sizeof(gid_t) + 1);
  }
  std::string status = util::read_text_file("/proc/" + std::to_string(cred.pid) + "/status").value_or("");
  // Only trust the file if it still describes a process of the same uid.
  bool same_uid = false;
  text::for_each_line(status, [&](std::string_view line) {
    if (!line.starts_with("Uid:")) return;
    auto f = text::words(line.substr(4));
    same_uid = !f.empty() && text::to_int(f[0]) == static_cast<long long>(cred.uid);
  });
  if (same_uid) peer.groups = parse_status_groups(status);
  return peer;
}

}  // namespace

ServerOptions ServerOptions::from_config(const config::Daemon& daemon) {
  ServerOptions o;
  o.socket_path = daemon.control_socket;
  o.admin_group = daemon.admin_group;
  return o;
}

// ---- the server -----------------------------------------------------------------

namespace {
class Session;
}

struct Server::Core : std::enable_shared_from_this<Server::Core> {
  Core(asio::io_context& io_, ServerOptions o, ControlHandler& h)
      : io(io_), options(std::move(o)), handler(&h), acceptor(io_), retry_timer(io_) {}

  void start();
  void accept_next();
  void on_accepted(stream_protocol::socket socket);
  void remove(Session* s);
  void stop();
  void on_new_entry();

  asio::io_context& io;
  ServerOptions options;
  ControlHandler* handler;
  stream_protocol::acceptor acceptor;
  asio::steady_timer retry_timer;  // after accept errors such as EMFILE
  std::optional<gid_t> admin_gid;
  std::list<std::shared_ptr<Session>> sessions;  // in accept order: oldest first
  std::uint64_t ring_subscription = 0;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  bool stopped = false;
  ServerStats stats;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Server::Core> core, stream_protocol::socket socket)
      : core_(std::move(core)), socket_(std::move(socket)), deadline_(core_->io) {}

  bool following() const { return phase_ == Phase::logs && follow_; }

  // Who makes room when the table is full, lowest first: a client that has
  // not sent its request (0), a follower (1), a log dump still being written
  // (2). A status answer or an error line in flight is never evicted (nullopt):
  // both are one small write that ends the session.
  std::optional<int> eviction_rank() const {
    if (phase_ == Phase::reading) return 0;
    if (phase_ == Phase::logs) return follow_ ? 1 : 2;
    return std::nullopt;
  }

  // Closes the session to make room, telling the client why when no write is
  // in flight (a line cut short would be worse than none).
  void evict(std::string_view why) {
    if (phase_ == Phase::closed) return;
    if (!writing_) {
      boost::system::error_code ignored;
      socket_.non_blocking(true, ignored);
      std::string line = error_line(why);
      socket_.write_some(asio::buffer(line), ignored);
    }
    close();
  }

  void start() {
    arm_deadline(core_->options.request_timeout);
    read_request();
  }

  void close() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    boost::system::error_code ignored;
    deadline_.cancel();
    socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
    core_->remove(this);  // may drop the last owning reference: do this last
  }

  // New ring entries are available (following clients only).
  void wake() { pump(); }

 private:
  enum class Phase { reading, status, logs, closing, closed };

  void arm_deadline(std::chrono::milliseconds d) {
    deadline_.expires_after(d);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->phase_ == Phase::closed) return;
      ++self->core_->stats.timed_out;
      self->close();
    });
  }

  void read_request() {
    socket_.async_read_some(asio::buffer(readbuf_), [self = shared_from_this()](
                                                         const boost::system::error_code& ec, std::size_t n) {
      self->on_read(ec, n);
    });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (phase_ == Phase::closed) return;
    if (ec) {
      // EOF after a complete request may be a half-close (`nc -U`): finish
      // the answer (bounded by the write deadline). A follower that hangs up
      // is gone, and so is a client that never completed its request.
      if (phase_ == Phase::status || (phase_ == Phase::logs && !follow_)) return;
      close();
      return;
    }
    if (phase_ != Phase::reading) {
      // One request per connection; anything more is a protocol error.
      close();
      return;
    }
    request_.append(readbuf_.data(), n);
    std::size_t nl = request_.find('\n');
    if (nl == std::string::npos) {
      if (request_.size() > core_->options.max_request_bytes) {
        fail("request longer than " + std::to_string(core_->options.max_request_bytes) + " bytes");
        return;
      }
      read_request();
      return;
    }
    if (nl > core_->options.max_request_bytes) {
      fail("request longer than " + std::to_string(core_->options.max_request_bytes) + " bytes");
      return;
    }
    deadline_.cancel();
    handle_request(std::string_view(request_).substr(0, nl));
    // Keep a read pending to notice a client that goes away while following.
    if (phase_ != Phase::closed && phase_ != Phase::closing) read_request();
  }

  void handle_request(std::string_view line) {
    Request req;
    try {
      req = parse_request(line);
    } catch (const RequestError& e) {
      fail(e.what());
      return;
    }
    if (req.command == Request::Command::status) {
      std::string status_json;
      try {
        status_json = status::to_json(core_->handler->snapshot());
      } catch (const std::exception& e) {
        return fail(std::string("status unavailable: ") + e.what());
      }
      phase_ = Phase::status;
      queue("{\"ok\":true,\"status\":" + status_json + "}\n");
      close_after_write_ = true;
      pump();
      return;
    }
    if (req.command == Request::Command::metrics) {
      // What the mux's /debug/metrics adds to the status: the log ring's use.
      const logs::LogRing& ring = core_->handler->log_ring();
      nlohmann::ordered_json rules = nlohmann::ordered_json::array();
      for (const auto& r : core_->handler->rule_counters())
        rules.push_back({{"chain", r.chain}, {"index", r.index}, {"packets", r.packets}, {"bytes", r.bytes}});
      phase_ = Phase::status;
      queue(nlohmann::ordered_json{{"ok", true},
                                   {"metrics",
                                    {{"ring_bytes_used", ring.bytes_used()},
                                     {"ring_bytes_capacity", ring.capacity()},
                                     {"lines_dropped", ring.dropped()},
                                     {"rules", rules}}}}
                .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) +
            "\n");
      close_after_write_ = true;
      pump();
      return;
    }
    // logs
    follow_ = req.follow;
    const logs::LogRing& ring = core_->handler->log_ring();
    end_seq_ = ring.last_seq();
    cursor_ = end_seq_ > req.n ? end_seq_ - req.n : 0;
    phase_ = Phase::logs;
    queue(nlohmann::ordered_json{{"ok", true}, {"dropped", ring.dropped()}, {"first_seq", ring.first_seq()},
               {"last_seq", ring.last_seq()}}
              .dump() +
          "\n");
    pump();
  }

  void fail(const std::string& message) {
    phase_ = Phase::closing;
    out_next_.clear();
    queue(error_line(message));
    close_after_write_ = true;
    pump();
  }

  void queue(std::string_view text) { out_next_.append(text); }

  // Tops up the outgoing chunk with log entries after the cursor.
  void refill_logs() {
    const logs::LogRing& ring = core_->handler->log_ring();
    std::uint64_t limit = follow_ ? ring.last_seq() : end_seq_;
    while (out_next_.size() < core_->options.follow_chunk_bytes && cursor_ < limit) {
      std::size_t batch = static_cast<std::size_t>(std::min<std::uint64_t>(64, limit - cursor_));
      auto entries = ring.since(cursor_, batch);
      if (entries.empty()) {
        cursor_ = limit;  // evicted before we got to them
        break;
      }
      for (const auto& e : entries) out_next_ += logs::to_ndjson(e);
      cursor_ = entries.back().seq;
    }
    if (!follow_ && cursor_ >= end_seq_ && !close_after_write_) {
      out_next_ += "{\"end\":true}\n";
      close_after_write_ = true;
    }
  }

  void pump() {
    if (writing_ || phase_ == Phase::closed) return;
    if (phase_ == Phase::logs && !close_after_write_) refill_logs();
    if (out_next_.empty()) {
      if (close_after_write_) close();
      return;
    }
    writing_ = true;
    out_pending_.swap(out_next_);
    out_next_.clear();
    arm_deadline(core_->options.write_timeout);
    asio::async_write(socket_, asio::buffer(out_pending_),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        if (self->phase_ == Phase::closed) return;
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->deadline_.cancel();
                        self->out_pending_.clear();
                        self->pump();
                      });
  }

  std::shared_ptr<Server::Core> core_;
  stream_protocol::socket socket_;
  asio::steady_timer deadline_;
  std::array<char, 1024> readbuf_{};
  std::string request_;
  Phase phase_ = Phase::reading;
  bool follow_ = false;
  bool writing_ = false;
  bool close_after_write_ = false;
  std::uint64_t cursor_ = 0;   // last log seq queued to this client
  std::uint64_t end_seq_ = 0;  // without follow: the last seq to send
  std::string out_pending_;    // being written
  std::string out_next_;       // queued behind it
};

// Best-effort one-line answer on a socket we are about to close; a fresh
// socket's send buffer is empty, so this never blocks or truncates.
void refuse(stream_protocol::socket& socket, std::string_view message) {
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  std::string line = error_line(message);
  socket.write_some(asio::buffer(line), ignored);
  socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace

void Server::Core::start() {
  const std::string& path = options.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    throw std::runtime_error("control socket path \"" + path + "\" is empty or too long");
  if (!options.admin_group.empty() && !options.reader_uid) {
    try {
      admin_gid = resolve_admin_group(options.admin_group, options.group_file);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("daemon.admin_group: ") + e.what());
    }
  }
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const bool dir_existed = std::filesystem::exists(dir);
  make_parent_dirs(dir);
  if (options.reader_uid) {
    // The reader must be able to reach the socket, and nothing more.
    if (!dir_existed && ::chmod(dir.c_str(), 0711) != 0) throw sys_error("cannot chmod", dir.string(), errno);
    struct stat dst {};
    if (::stat(dir.c_str(), &dst) != 0) throw sys_error("cannot inspect", dir.string(), errno);
    if ((dst.st_mode & 0001) == 0)
      throw std::runtime_error("socket directory " + dir.string() + " is not searchable by uid " +
                               std::to_string(*options.reader_uid) + ": give the socket a directory of its own");
  }
  clear_stale_socket(path);

  const mode_t mode = admin_gid ? 0660 : 0600;
  acceptor.open(stream_protocol());
  set_cloexec(acceptor.native_handle());
  // Linux creates the socket file with the socket inode's mode (minus umask):
  // set it before bind. The path is fixed up again below, before listen(), and
  // nobody can connect before listen(), so there is no window either way.
  ::fchmod(acceptor.native_handle(), mode);
  boost::system::error_code ec;
  acceptor.bind(stream_protocol::endpoint(path), ec);
  if (ec) throw std::runtime_error("cannot bind control socket " + path + ": " + ec.message());
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw sys_error("cannot inspect", path, errno);
  socket_dev = st.st_dev;  // from now on stop() removes the file
  socket_ino = st.st_ino;
  if (::chmod(path.c_str(), mode) != 0) throw sys_error("cannot chmod", path, errno);
  if (admin_gid && ::chown(path.c_str(), static_cast<uid_t>(-1), *admin_gid) != 0)
    throw sys_error("cannot chown to admin_group", path, errno);
  if (options.reader_uid && ::chown(path.c_str(), *options.reader_uid, static_cast<gid_t>(-1)) != 0)
    throw sys_error("cannot give the socket to uid " + std::to_string(*options.reader_uid), path, errno);
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != mode ||
      st.st_ino != socket_ino)
    throw std::runtime_error("control socket " + path + " did not get mode " + (admin_gid ? "0660" : "0600"));
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on control socket " + path + ": " + ec.message());

  std::weak_ptr<Core> weak = shared_from_this();
  ring_subscription = handler->log_ring().subscribe([weak](const logs::Entry&) {
    if (auto core = weak.lock()) core->on_new_entry();
  });
  accept_next();
}

void Server::Core::accept_next() {
  if (stopped) return;
  acceptor.async_accept([self = shared_from_this()](const boost::system::error_code& ec,
                                                    stream_protocol::socket socket) {
    if (self->stopped) return;
    if (ec) {
      // EMFILE and friends: try again shortly instead of spinning.
      self->retry_timer.expires_after(std::chrono::milliseconds(100));
      self->retry_timer.async_wait([self](const boost::system::error_code& tec) {
        if (!tec) self->accept_next();
      });
      return;
    }
    self->on_accepted(std::move(socket));
    self->accept_next();
  });
}

void Server::Core::on_accepted(stream_protocol::socket socket) {
  set_cloexec(socket.native_handle());
  PeerCredentials peer;
  try {
    peer = read_peer_credentials(socket.native_handle());
  } catch (const std::exception& e) {
    ++stats.refused;
    refuse(socket, e.what());
    return;
  }
  const bool reader = options.reader_uid && peer.uid == *options.reader_uid;
  if (!reader && !peer_allowed(peer, admin_gid)) {
    ++stats.refused;
    refuse(socket, "permission denied: uid " + std::to_string(peer.uid) + " is not root" +
                       (admin_gid ? " or in daemon.admin_group" : ""));
    return;
  }
  if (sessions.size() >= options.max_clients) {
    // Full: the newcomer may be root's `pisecd status`, so it always gets a
    // slot while any session is evictable. The oldest of the lowest rank goes:
    // silent clients first, then followers (`logs -f` can reconnect), then log
    // dumps, so neither idle peers nor followers nor slow readers lock it out.
    std::shared_ptr<Session> victim;
    int victim_rank = 0;
    for (const auto& s : sessions) {
      auto rank = s->eviction_rank();
      if (rank && (!victim || *rank < victim_rank)) {
        victim = s;
        victim_rank = *rank;
      }
    }
    if (!victim) {
      ++stats.rejected;
      refuse(socket, "too many clients: all " + std::to_string(options.max_clients) +
                         " control slots are answering requests; try again");
      return;
    }
    ++stats.evicted;
    victim->evict("closed to make room for a new client: all " + std::to_string(options.max_clients) +
                  " control slots were in use; reconnect");
  }
  auto session = std::make_shared<Session>(shared_from_this(), std::move(socket));
  sessions.push_back(session);
  session->start();
}

void Server::Core::remove(Session* s) {
  sessions.remove_if([s](const std::shared_ptr<Session>& p) { return p.get() == s; });
  if (sessions.empty() && !stopped && options.on_quiet) asio::post(io, options.on_quiet);
}

void Server::Core::on_new_entry() {
  // Copy: a wake may close (and remove) a session.
  std::vector<std::shared_ptr<Session>> followers;
  for (auto& s : sessions)
    if (s->following()) followers.push_back(s);
  for (auto& s : followers) s->wake();
}

void Server::Core::stop() {
  if (stopped) return;
  stopped = true;
  boost::system::error_code ignored;
  retry_timer.cancel();
  if (acceptor.is_open()) {
    acceptor.close(ignored);
    // Remove the file only if it is still the one we created.
    struct stat st {};
    if (::lstat(options.socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev && st.st_ino == socket_ino)
      ::unlink(options.socket_path.c_str());
  }
  if (ring_subscription) handler->log_ring().unsubscribe(ring_subscription);
  ring_subscription = 0;
  auto all = sessions;  // close() removes from the list
  for (auto& s : all) s->close();
}

Server::Server(asio::io_context& io, ServerOptions options, ControlHandler& handler)
    : core_(std::make_shared<Core>(io, std::move(options), handler)) {
  try {
    core_->start();
  } catch (...) {
    core_->stop();
    throw;
  }
}

Server::~Server() { stop(); }
void Server::stop() { core_->stop(); }
std::size_t Server::client_count() const { return core_->sessions.size(); }
ServerStats Server::stats() const { return core_->stats; }
const std::string& Server::socket_path() const { return core_->options.socket_path; }

}  // namespace pisec::control
