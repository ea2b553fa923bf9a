// Clients of the control socket: plain blocking POSIX I/O with deadlines
// (a CLI, not daemon code), so a hung daemon cannot hang `pisecd status`.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "pisec/control.hpp"
#include "pisec/util.hpp"

namespace pisec::control {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t max_answer_line = 1024 * 1024;

std::string seconds_text(std::chrono::milliseconds d) {
  auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

class Connection {
 public:
  Connection(const std::string& path, std::chrono::milliseconds timeout) : path_(path), timeout_(timeout) {
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
      throw ClientError("cannot reach daemon at " + path + ": socket path is empty or too long");
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw ClientError("cannot reach daemon at " + path + ": " + std::strerror(errno));
    // Bounds connect() when the listener's backlog is full, and each send.
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(timeout.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      fd_.reset();
      if (err == EAGAIN || err == EINPROGRESS)
        throw ClientError("cannot reach daemon at " + path + ": no connection within " + seconds_text(timeout));
      throw ClientError("cannot reach daemon at " + path + ": " + std::strerror(err));
    }
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void send_line(const std::string& line) {
    std::string out = line + "\n";
    std::size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::send(fd_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        // The daemon may have refused us (peer credentials, too many clients)
        // and closed before our request arrived: its reason is waiting in our
        // receive buffer, so read it before reporting the failed send.
        send_errno_ = errno;
        return;
      }
      if (n <= 0) throw ClientError("cannot send request to daemon at " + path_ + ": " + std::strerror(errno));
      off += static_cast<std::size_t>(n);
    }
  }

  // Next line without '\n'; false at a clean end of stream. With
  // `bounded`, waits at most the timeout for it.
  bool read_line(std::string& line, bool bounded) {
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      std::size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line.assign(buf_, 0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      if (buf_.size() > max_answer_line) throw ClientError("malformed answer from daemon at " + path_ + ": line too long");
      int wait_ms = -1;
      if (bounded) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) throw ClientError("no answer from daemon at " + path_ + " within " + seconds_text(timeout_));
        wait_ms = static_cast<int>(left);
      }
      pollfd p{fd_.get(), POLLIN, 0};
      int rc = ::poll(&p, 1, wait_ms);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) throw ClientError("cannot read from daemon at " + path_ + ": " + std::strerror(errno));
      if (rc == 0) continue;  // the deadline check above reports it
      char chunk[16384];
      ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && send_errno_ == 0) throw ClientError("cannot read from daemon at " + path_ + ": " + std::strerror(errno));
      if (n <= 0) {
        if (send_errno_ != 0)
          throw ClientError("cannot send request to daemon at " + path_ + ": " + std::strerror(send_errno_));
        if (!buf_.empty()) throw ClientError("malformed answer from daemon at " + path_ + ": truncated line");
        return false;
      }
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::chrono::milliseconds timeout_;
  util::UniqueFd fd_;
  std::string buf_;
  int send_errno_ = 0;  // EPIPE/ECONNRESET while sending: read the daemon's reason first
};

// Parses an answer line; a {"ok":false,...} answer becomes a ClientError.
nlohmann::ordered_json parse_answer(const Connection& c, const std::string& line) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw ClientError("malformed answer from daemon at " + c.path() + ": " + e.what());
  }
  if (!j.is_object()) throw ClientError("malformed answer from daemon at " + c.path() + ": not a JSON object");
  if (j.contains("ok") && j["ok"] == false) {
    std::string why = j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>() : "no reason given";
    throw ClientError("daemon at " + c.path() + " refused the request: " + why);
  }
  return j;
}

}  // namespace

StatusReply request_status(const std::string& socket_path, std::chrono::milliseconds timeout) {
  Connection c(socket_path, timeout);
  c.send_line(R"({"cmd":"status"})");
  std::string line;
  if (!c.read_line(line, true))
    throw ClientError("daemon at " + socket_path + " closed the connection without answering");
  auto j = parse_answer(c, line);
  if (!j.contains("ok") || j["ok"] != true || !j.contains("status") || !j["status"].is_object())
    throw ClientError("malformed answer from daemon at " + socket_path + ": no status object");
  StatusReply reply;
  // ASCII only (\uXXXX escapes): `status --json` on a terminal then carries
  // no C1 control a payload or file put into a detail.
  reply.json = j["status"].dump(-1, ' ', true);
  try {
    reply.snapshot = status::from_json(reply.json);
  } catch (const std::exception& e) {
    throw ClientError("malformed answer from daemon at " + socket_path + ": " + e.what());
  }
  return reply;
}

void request_logs(const std::string& socket_path, const LogsRequest& request,
                  const std::function<void(const logs::Entry&)>& on_entry, std::chrono::milliseconds timeout) {
  Connection c(socket_path, timeout);
  c.send_line(nlohmann::ordered_json{{"cmd", "logs"}, {"n", request.n}, {"follow", request.follow}}.dump());
  std::string line;
  if (!c.read_line(line, true))
    throw ClientError("daemon at " + socket_path + " closed the connection without answering");
  auto header = parse_answer(c, line);
  if (!header.contains("ok") || header["ok"] != true)
    throw ClientError("malformed answer from daemon at " + socket_path + ": no \"ok\" in the logs header");
  for (;;) {
    if (!c.read_line(line, !request.follow)) {
      if (request.follow) throw ClientError("daemon at " + socket_path + " closed the connection");
      throw ClientError("malformed answer from daemon at " + socket_path + ": log answer ended early");
    }
    if (line.rfind(R"({"end")", 0) == 0 || line.rfind(R"({"ok")", 0) == 0) {
      auto j = parse_answer(c, line);  // throws on an error line
      if (j.contains("end") && j["end"] == true) return;
      throw ClientError("malformed answer from daemon at " + socket_path + ": unexpected line in log answer");
    }
    logs::Entry e;
    try {
      e = logs::from_ndjson(line);
    } catch (const std::exception& ex) {
      throw ClientError("malformed answer from daemon at " + socket_path + ": " + ex.what());
    }
    on_entry(e);
  }
}

}  // namespace pisec::control
