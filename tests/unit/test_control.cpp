#include <utility>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "pisec/control.hpp"

using namespace pisec;
using namespace std::chrono_literals;
namespace asio = boost::asio;

// The server's handlers run in the io thread; these tests assert through the
// real client code from the test thread (acceptance 8 runs exactly that way).

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/pisec-control-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

struct FakeDaemon : control::ControlHandler {
  status::Snapshot snap;
  logs::LogRing ring{64 * 1024};
  int snapshots = 0;
  status::Snapshot snapshot() override {
    ++snapshots;
    return snap;
  }
  logs::LogRing& log_ring() override { return ring; }
};

// An io_context running in its own thread, like the daemon's loop.
struct Loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread;
  void start() {
    thread = std::thread([this] { io.run(); });
  }
  // Runs f on the loop and waits for it. (No std::future: armel's
  // libstdc++ lacks the futex wait it needs.)
  template <class F>
  void run_sync(F f) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    asio::post(io, [&] {
      f();
      std::lock_guard<std::mutex> lock(m);
      done = true;
      cv.notify_one();
    });
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return done; });
  }
  void halt() {
    guard.reset();
    io.stop();
    if (thread.joinable()) thread.join();
  }
  ~Loop() { halt(); }
};

// Declared after the Server: stops the loop thread before the Server is
// destroyed, so its destructor never races with handlers.
struct Halt {
  Loop& loop;
  ~Halt() { loop.halt(); }
};

int raw_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends until it closes (or 5 s pass).
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

status::Snapshot sample_snapshot() {
  status::Snapshot s;
  s.version = "0.1.0-test";
  s.state = "running";
  s.uptime_ms = 12345;
  s.gates = {{"entropy", "passed", "crng ready", 3}, {"clock", "passed", "3 sources", 250}};
  s.firewall = {"service", true, "sha256:abcd"};
  s.payload.state = "running";
  s.payload.pid = 4242;
  s.payload.restarts = 1;
  s.reaped_orphans = 2;
  return s;
}

control::ServerOptions options_in(const TempDir& dir) {
  control::ServerOptions o;
  o.socket_path = (dir.path / "run" / "pisecd" / "control.sock").string();
  return o;
}

}  // namespace

TEST_CASE("status round-trips through the real client; socket is 0600 in a 0700 dir", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  struct stat st {};
  REQUIRE(::lstat(opts.socket_path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(::lstat((dir.path / "run" / "pisecd").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);

  auto reply = control::request_status(opts.socket_path, 5s);
  CHECK(reply.snapshot.state == "running");
  CHECK(reply.snapshot.payload.pid == 4242);
  CHECK(reply.snapshot.gates.size() == 2);
  CHECK(reply.json == status::to_json(daemon.snap));
  CHECK(status::exit_code(reply.snapshot) == 0);

  daemon.snap.state = "quarantined";
  CHECK(status::exit_code(control::request_status(opts.socket_path, 5s).snapshot) == 2);

  loop.run_sync([&] { server.stop(); });
  CHECK_FALSE(std::filesystem::exists(opts.socket_path));  // removed on stop
  CHECK_THROWS_WITH(control::request_status(opts.socket_path, 1s),
                    "cannot reach daemon at " + opts.socket_path + ": No such file or directory");
}

TEST_CASE("socket path: live daemon refused, stale socket replaced, other files kept", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  Loop loop;
  auto opts = options_in(dir);
  {
    control::Server first(loop.io, opts, daemon);
    CHECK_THROWS_WITH(control::Server(loop.io, opts, daemon), Catch::Contains("already listening"));
    CHECK(std::filesystem::exists(opts.socket_path));  // the live one is untouched
  }
  // A stale socket file: bound, never listening (like after a crash).
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, opts.socket_path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
  CHECK_NOTHROW(control::Server(loop.io, opts, daemon));

  auto plain = (dir.path / "not-a-socket").string();
  std::ofstream(plain) << "keep me";
  opts.socket_path = plain;
  CHECK_THROWS_WITH(control::Server(loop.io, opts, daemon), Catch::Contains("is not a socket"));
  CHECK(std::filesystem::file_size(plain) == 7);
}

TEST_CASE("bad requests get a one-line error and are closed", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  Loop loop;
  auto opts = options_in(dir);
  opts.request_timeout = 300ms;
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  auto ask = [&](std::string_view request) {
    int fd = raw_connect(opts.socket_path);
    REQUIRE(fd >= 0);
    write_all(fd, request);
    std::string answer = read_all(fd);
    ::close(fd);
    return answer;
  };
  CHECK(ask(std::string(5000, 'x')) == "{\"ok\":false,\"error\":\"request longer than 4096 bytes\"}\n");
  CHECK(ask(std::string(5000, ' ') + "\n") == "{\"ok\":false,\"error\":\"request longer than 4096 bytes\"}\n");
  CHECK(ask("this is not json\n") == "{\"ok\":false,\"error\":\"request is not valid JSON\"}\n");
  CHECK(ask("[1,2]\n") == "{\"ok\":false,\"error\":\"request needs a \\\"cmd\\\" string\"}\n");
  CHECK(ask("{\"cmd\":\"reboot\"}\n") == "{\"ok\":false,\"error\":\"unknown command \\\"reboot\\\"\"}\n");
  CHECK(ask("{\"cmd\":\"logs\",\"n\":-1}\n").find("\"ok\":false") != std::string::npos);
  // Silence: closed at the request deadline, without an answer.
  auto t0 = std::chrono::steady_clock::now();
  CHECK(ask("") == "");
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);
  control::ServerStats stats;
  loop.run_sync([&] { stats = server.stats(); });
  CHECK(daemon.snapshots == 0);
  CHECK(stats.timed_out >= 1);
}

TEST_CASE("200 idle or garbage clients do not stop a concurrent status request", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  std::atomic<bool> flooding{true};
  std::vector<int> hogs;
  std::thread flood([&] {
    for (int i = 0; i < 200; ++i) {
      int fd = raw_connect(opts.socket_path);
      if (fd < 0) continue;
      if (i % 2) write_all(fd, "garbage without newline");  // never completes a request
      hogs.push_back(fd);
    }
    // Keep reconnecting as they are evicted, until the status request is done.
    while (flooding) {
      int fd = raw_connect(opts.socket_path);
      if (fd >= 0) hogs.push_back(fd);
      if (hogs.size() > 600) break;
    }
  });
  std::this_thread::sleep_for(50ms);  // let the flood get going
  int answered = 0;
  for (int i = 0; i < 5; ++i) {
    auto reply = control::request_status(opts.socket_path, 5s);
    if (reply.snapshot.payload.pid == 4242) ++answered;
  }
  flooding = false;
  flood.join();
  CHECK(answered == 5);
  control::ServerStats stats;
  std::size_t clients = 0;
  loop.run_sync([&] {
    stats = server.stats();
    clients = server.client_count();
  });
  CHECK(stats.evicted > 0);
  CHECK(clients <= opts.max_clients);
  for (int fd : hogs) ::close(fd);
}

TEST_CASE("logs: backlog, then new entries for a follower", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  for (int i = 1; i <= 5; ++i) daemon.ring.append(logs::Stream::payload_stdout, "old " + std::to_string(i), i);
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  std::vector<std::string> got;
  control::request_logs(opts.socket_path, {2, false}, [&](const logs::Entry& e) { got.push_back(e.text); }, 5s);
  CHECK(got == std::vector<std::string>{"old 4", "old 5"});
  got.clear();
  control::request_logs(opts.socket_path, {0, false}, [&](const logs::Entry& e) { got.push_back(e.text); }, 5s);
  CHECK(got.empty());

  struct Enough {};
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  std::vector<std::string> lines;
  std::atomic<bool> backlog_seen{false};
  std::thread follower([&] {
    std::vector<std::string> got_lines;
    try {
      control::request_logs(opts.socket_path, {1, true}, [&](const logs::Entry& e) {
        got_lines.push_back(logs::to_text(e));
        backlog_seen = true;
        if (got_lines.size() == 3) throw Enough{};
      }, 5s);
    } catch (const Enough&) {
    } catch (const control::ClientError& e) {
      got_lines.push_back(std::string("error: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(m);
    lines = got_lines;
    finished = true;
    cv.notify_one();
  });
  while (!backlog_seen) std::this_thread::sleep_for(10ms);
  loop.run_sync([&] {
    daemon.ring.append(logs::Stream::payload_stderr, "new 6", 1714564800000);
    daemon.ring.append(logs::Stream::payload_stdout, "new 7", 1714564800001);
  });
  {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, 10s, [&] { return finished; })) {
      lock.unlock();
      loop.run_sync([&] { server.stop(); });  // unblocks the follower with an error
    }
  }
  follower.join();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].find("stdout: old 5") != std::string::npos);
  CHECK(lines[1] == "2024-05-01T12:00:00.000Z stderr: new 6");
  CHECK(lines[2] == "2024-05-01T12:00:00.001Z stdout: new 7");
}

TEST_CASE("client: malformed or missing answers are errors, with a timeout", "[control]") {
  TempDir dir;
  auto path = (dir.path / "fake.sock").string();
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lfd, 8) == 0);
  // A fake daemon: first answers nonsense, then a wrong status, then nothing.
  std::thread fake([&] {
    for (std::string_view answer : {"hello\n", "{\"ok\":true,\"status\":{\"state\":1}}\n", ""}) {
      int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      char buf[256];
      (void)::read(c, buf, sizeof buf);
      write_all(c, answer);
      if (answer.empty()) std::this_thread::sleep_for(800ms);
      ::close(c);
    }
  });
  CHECK_THROWS_WITH(control::request_status(path, 2s), Catch::StartsWith("malformed answer from daemon at " + path));
  CHECK_THROWS_WITH(control::request_status(path, 2s), Catch::StartsWith("malformed answer from daemon at " + path));
  CHECK_THROWS_WITH(control::request_status(path, 300ms), "no answer from daemon at " + path + " within 300 ms");
  fake.join();
  ::close(lfd);
}

TEST_CASE("request lines: what a client may ask, and the error each refusal sends", "[control]") {
  using C = control::Request::Command;
  CHECK(control::parse_request(R"({"cmd":"status"})").command == C::status);
  CHECK(control::parse_request(R"({"cmd":"metrics"})").command == C::metrics);
  auto logs = control::parse_request(R"({"cmd":"logs","n":7,"follow":true})");
  CHECK(logs.command == C::logs);
  CHECK(logs.n == 7);
  CHECK(logs.follow);
  auto plain = control::parse_request(R"({"cmd":"logs"})");
  CHECK(plain.n == 100);
  CHECK_FALSE(plain.follow);
  CHECK(control::parse_request(R"({"cmd":"logs","n":18446744073709551615})").n == SIZE_MAX);
  auto refused = [](std::string_view line) {
    try {
      control::parse_request(line);
    } catch (const control::RequestError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refused("") == "request is not valid JSON");
  CHECK(refused("{\"cmd\":\"status\"") == "request is not valid JSON");
  CHECK(refused("[\"status\"]") == "request needs a \"cmd\" string");
  CHECK(refused(R"({"cmd":1})") == "request needs a \"cmd\" string");
  CHECK(refused(R"({"cmd":"status","n":1})") == "status takes no arguments");
  CHECK(refused(R"({"cmd":"metrics","x":1})") == "metrics takes no arguments");
  CHECK(refused(R"({"cmd":"logs","n":-1})") == "\"n\" must be a non-negative integer");
  CHECK(refused(R"({"cmd":"logs","n":1.5})") == "\"n\" must be a non-negative integer");
  CHECK(refused(R"({"cmd":"logs","follow":1})") == "\"follow\" must be true or false");
  CHECK(refused(R"({"cmd":"logs","x":1})") == "unknown key \"x\" in logs request");
  CHECK(refused(R"({"cmd":"reboot"})") == "unknown command \"reboot\"");
}

TEST_CASE("peer credential rules and /etc/group parsing", "[control]") {
  CHECK(control::peer_allowed({1, 0, 0, {}}, std::nullopt));
  CHECK_FALSE(control::peer_allowed({1, 1000, 1000, {10, 20}}, std::nullopt));
  CHECK(control::peer_allowed({1, 1000, 1000, {10, 20}}, gid_t{20}));
  CHECK(control::peer_allowed({1, 1000, 20, {}}, gid_t{20}));
  CHECK_FALSE(control::peer_allowed({1, 1000, 1000, {10}}, gid_t{20}));

  std::string_view group = "root:x:0:\nwheel:x:10:root,alice\n# junk line\nbad:x:notanumber:\npisecadm:x:4242:bob\n";
  CHECK(control::find_group("wheel", group) == gid_t{10});
  CHECK(control::find_group("pisecadm", group) == gid_t{4242});
  CHECK(control::find_group("77", group) == gid_t{77});
  CHECK_FALSE(control::find_group("whee", group));
  CHECK_FALSE(control::find_group("bad", group));
  CHECK(control::parse_status_groups("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGroups:\t10 20 4242 \nNgid:\t0\n") ==
        std::vector<gid_t>{10, 20, 4242});
  CHECK(control::parse_status_groups("Name:\tx\nGroups:\t\n").empty());
}

namespace {
// In a forked child of this multithreaded test: switch to uid 65534 (and the
// given groups), ask for status with raw syscalls only, return what came back.
// Exit code: 0 = got an ok status, 1 = refused with an error line, 2 = could
// not connect (EACCES), 3 = anything else.
int child_status_as(const std::string& path, gid_t gid, const std::vector<gid_t>& groups) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(65534) != 0) ::_exit(4);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(errno == EACCES ? 2 : 3);
    const char req[] = "{\"cmd\":\"status\"}\n";
    // The server may already have refused and closed: no SIGPIPE, read anyway.
    (void)::send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
    char buf[64] = {};
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    if (n > 0 && std::strncmp(buf, "{\"ok\":true", 10) == 0) ::_exit(0);
    if (n > 0 && std::strstr(buf, "permission denied") != nullptr) ::_exit(1);
    ::_exit(3);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}
}  // namespace

TEST_CASE("non-root peers are refused; admin_group members are let in", "[control][root]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot run a client with another uid; peer-credential refusal not exercised");
    return;
  }
  TempDir dir;
  ::chmod(dir.path.c_str(), 0755);  // the child (uid 65534) must reach the socket's directory
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  opts.socket_path = (dir.path / "control.sock").string();
  SECTION("root only: the file mode keeps others out, SO_PEERCRED refuses them even if it did not") {
    control::Server server(loop.io, opts, daemon);
    Halt halt{loop};
    loop.start();
    CHECK(child_status_as(opts.socket_path, 65534, {}) == 2);
    ::chmod(opts.socket_path.c_str(), 0666);  // simulate a mode mistake
    CHECK(child_status_as(opts.socket_path, 65534, {}) == 1);
    control::ServerStats stats;
    loop.run_sync([&] { stats = server.stats(); });
    CHECK(stats.refused == 1);
    CHECK(daemon.snapshots == 0);
  }
  SECTION("admin_group: 0660, group-owned, members allowed, others refused") {
    auto group_file = (dir.path / "group").string();
    std::ofstream(group_file) << "root:x:0:\npisecadm:x:4242:\n";
    opts.admin_group = "pisecadm";
    opts.group_file = group_file;
    control::Server server(loop.io, opts, daemon);
    Halt halt{loop};
    loop.start();
    struct stat st {};
    REQUIRE(::lstat(opts.socket_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_gid == 4242);
    CHECK(child_status_as(opts.socket_path, 65534, {4242}) == 0);  // supplementary member
    CHECK(child_status_as(opts.socket_path, 4242, {}) == 0);       // primary group
    CHECK(child_status_as(opts.socket_path, 65534, {}) == 2);      // not a member
    ::chmod(opts.socket_path.c_str(), 0666);
    CHECK(child_status_as(opts.socket_path, 65534, {100}) == 1);
  }
  SECTION("unknown admin_group refuses to start") {
    opts.admin_group = "no-such-group";
    opts.group_file = "/dev/null";
    CHECK_THROWS_WITH(control::Server(loop.io, opts, daemon), Catch::Contains("no-such-group"));
  }
}

TEST_CASE("a follower that stops reading is dropped, the loop keeps going", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  opts.write_timeout = 300ms;
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  int fd = raw_connect(opts.socket_path);
  REQUIRE(fd >= 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  write_all(fd, "{\"cmd\":\"logs\",\"n\":0,\"follow\":true}\n");
  // 8 MB of new lines that the follower never reads.
  std::string line(1000, 'x');
  for (int batch = 0; batch < 8; ++batch)
    loop.run_sync([&] {
      for (int i = 0; i < 1000; ++i) daemon.ring.append(logs::Stream::payload_stdout, line, i);
    });
  std::size_t clients = 1;
  for (int i = 0; i < 100 && clients != 0; ++i) {
    std::this_thread::sleep_for(50ms);
    loop.run_sync([&] { clients = server.client_count(); });
  }
  CHECK(clients == 0);
  // And the daemon still answers.
  CHECK(control::request_status(opts.socket_path, 5s).snapshot.payload.pid == 4242);
  ::close(fd);
}

TEST_CASE("a client that half-closes after its request still gets the answer", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();
  int fd = raw_connect(opts.socket_path);
  REQUIRE(fd >= 0);
  write_all(fd, "{\"cmd\":\"status\"}\n");
  ::shutdown(fd, SHUT_WR);  // like `echo … | nc -U socket`
  std::string answer = read_all(fd);
  ::close(fd);
  CHECK(answer == "{\"ok\":true,\"status\":" + status::to_json(daemon.snap) + "}\n");
}

TEST_CASE("on_quiet is posted each time the last client has gone, not before", "[control]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  int quiet = 0;  // touched on the loop thread only; read through run_sync
  opts.on_quiet = [&quiet] { ++quiet; };
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();
  auto quiet_now = [&] {
    int q = -1;
    loop.run_sync([&] {});  // what the last close posted has run by the next round
    loop.run_sync([&] { q = quiet; });
    return q;
  };
  CHECK(quiet_now() == 0);
  int a = raw_connect(opts.socket_path), b = raw_connect(opts.socket_path);
  REQUIRE(a >= 0);
  REQUIRE(b >= 0);
  write_all(a, "{\"cmd\":\"status\"}\n");
  CHECK_FALSE(read_all(a).empty());  // answered, then closed by the server
  ::close(a);
  CHECK(quiet_now() == 0);  // b is still connected
  write_all(b, "{\"cmd\":\"status\"}\n");
  CHECK_FALSE(read_all(b).empty());
  ::close(b);
  CHECK(quiet_now() == 1);
  CHECK(control::request_status(opts.socket_path, 5s).snapshot.state == "running");
  CHECK(quiet_now() == 2);
  loop.run_sync([&] { server.stop(); });
  CHECK(quiet_now() == 2);  // stopping is not a quiet moment
}

// ---- issue 8, item 6: bytes from outside never make status unavailable ---------

namespace {
// 0xFF, a lone continuation byte, an overlong '/', a 4-byte sequence cut short
// in the middle and at the very end.
const std::string invalid_utf8 = "sig \xff|cont \x80|overlong \xc0\xaf|cut \xf0\x9f\x98 end|\xf0\x9f\x98";
const std::string fffd = "\xEF\xBF\xBD";
const std::string repaired =
    "sig " + fffd + "|cont " + fffd + "|overlong " + fffd + fffd + "|cut " + fffd + " end|" + fffd;
}  // namespace

TEST_CASE("invalid UTF-8 in a gate detail and a log line: status and logs stay valid JSON", "[control][utf8]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  daemon.snap.state = "quarantined";
  daemon.snap.gates.push_back({"integrity", "failed", "boot/MANIFEST.sig: " + invalid_utf8, 7});
  daemon.snap.reload = {"rejected", invalid_utf8, 99};
  daemon.ring.append(logs::Stream::payload_stdout, invalid_utf8, 1);
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  control::StatusReply reply;
  REQUIRE_NOTHROW(reply = control::request_status(opts.socket_path, 5s));
  nlohmann::json j;
  REQUIRE_NOTHROW(j = nlohmann::json::parse(reply.json));  // strict parser: valid UTF-8 JSON
  CHECK(j["gates"][2]["detail"] == "boot/MANIFEST.sig: " + repaired);
  CHECK(j["reload"]["detail"] == repaired);
  CHECK(reply.snapshot.gates.at(2).detail == "boot/MANIFEST.sig: " + repaired);
  CHECK(status::exit_code(reply.snapshot) == 2);  // quarantined, not "unreachable"
  CHECK(std::all_of(reply.json.begin(), reply.json.end(),  // ASCII-only on the CLI side
                    [](char c) { return static_cast<unsigned char>(c) < 0x80; }));

  // The server's own bytes, as `nc -U` would see them, parse strictly too.
  int fd = raw_connect(opts.socket_path);
  REQUIRE(fd >= 0);
  write_all(fd, "{\"cmd\":\"status\"}\n");
  std::string raw = read_all(fd);
  ::close(fd);
  REQUIRE_NOTHROW(nlohmann::json::parse(raw));
  CHECK(nlohmann::json::parse(raw)["ok"] == true);

  std::vector<std::string> lines;
  control::request_logs(opts.socket_path, {10, false}, [&](const logs::Entry& e) { lines.push_back(e.text); }, 5s);
  CHECK(lines == std::vector<std::string>{repaired});
}

TEST_CASE("pisecd status text: no byte of a detail reaches the terminal as a control", "[control][utf8]") {
  status::Snapshot s = sample_snapshot();
  s.gates[0].detail = "title \x1b]0;pwned\x07 clear \x1b[2J csi \xc2\x9b" "2J bad \xff\nfake line";
  s.reload = {"rejected", "\r\x1b[1A\x1b[2Kgate arch: passed", 5};
  std::string out = status::to_text(s);
  INFO(out);
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(out.find('\x07') == std::string::npos);
  CHECK(out.find('\r') == std::string::npos);
  CHECK(out.find("\xc2\x9b") == std::string::npos);
  CHECK(out.find('\xff') == std::string::npos);
  CHECK(out.find("fake line") != std::string::npos);
  CHECK(out.find("\nfake line") == std::string::npos);  // a detail cannot start a line of its own
  CHECK(out.find("  gate entropy: passed — title ?]0;pwned? clear ?[2J csi ?2J bad " + fffd + "?fake line (3 ms)\n") !=
        std::string::npos);
  CHECK(std::count(out.begin(), out.end(), '\n') == 7);  // head, 2 gates, firewall, payload, orphans, reload
}

// ---- issue 8, item 7: no number of clients locks out `pisecd status` --------------

namespace {
// A raw follower: sends the request, waits for the header line.
int connect_follower(const std::string& path) {
  int fd = raw_connect(path);
  if (fd < 0) return -1;
  write_all(fd, "{\"cmd\":\"logs\",\"n\":0,\"follow\":true}\n");
  char buf[512];
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) <= 0 || ::read(fd, buf, sizeof buf) <= 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::size_t clients_of(Loop& loop, control::Server& server) {
  std::size_t n = 0;
  loop.run_sync([&] { n = server.client_count(); });
  return n;
}
}  // namespace

TEST_CASE("a table full of followers: status is still answered, the oldest follower is told why", "[control][clients]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  std::vector<int> followers;
  for (std::size_t i = 0; i < opts.max_clients; ++i) {
    int fd = connect_follower(opts.socket_path);
    REQUIRE(fd >= 0);
    followers.push_back(fd);
  }
  REQUIRE(clients_of(loop, server) == opts.max_clients);

  for (int round = 0; round < 3; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    std::string answer;
    try {
      answer = control::request_status(opts.socket_path, 5s).snapshot.state;
    } catch (const control::ClientError& e) {
      answer = e.what();
    }
    CHECK(answer == "running");
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    int fd = connect_follower(opts.socket_path);  // fill the table again
    REQUIRE(fd >= 0);
    followers.push_back(fd);
  }
  // The three oldest followers made room, each with a reason; the rest still follow.
  for (int i = 0; i < 3; ++i) {
    std::string last = read_all(followers[static_cast<std::size_t>(i)]);
    CHECK(last.rfind("{\"ok\":false,\"error\":\"closed to make room", 0) == 0);
  }
  control::ServerStats stats;
  loop.run_sync([&] {
    stats = server.stats();
    daemon.ring.append(logs::Stream::payload_stdout, "still following", 1);
  });
  CHECK(stats.evicted == 3);
  CHECK(stats.rejected == 0);
  pollfd p{followers.back(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  char buf[512] = {};
  CHECK(::read(followers.back(), buf, sizeof buf - 1) > 0);
  CHECK(std::string(buf).find("still following") != std::string::npos);
  for (int fd : followers) ::close(fd);
}

TEST_CASE("a table full of silent connections: status answered, the idle deadline clears them", "[control][clients]") {
  TempDir dir;
  FakeDaemon daemon;
  daemon.snap = sample_snapshot();
  Loop loop;
  auto opts = options_in(dir);
  opts.request_timeout = 1000ms;
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  std::vector<int> silent;
  for (std::size_t i = 0; i < opts.max_clients; ++i) {
    int fd = raw_connect(opts.socket_path);
    REQUIRE(fd >= 0);
    silent.push_back(fd);
  }
  for (int i = 0; i < 50 && clients_of(loop, server) < opts.max_clients; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(clients_of(loop, server) == opts.max_clients);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(control::request_status(opts.socket_path, 5s).snapshot.payload.pid == 4242);
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);  // did not wait for the idle deadline
  // The oldest silent peer made room (and was told); the rest go at request_timeout.
  CHECK(read_all(silent[0]).rfind("{\"ok\":false,\"error\":\"closed to make room", 0) == 0);
  std::this_thread::sleep_for(1500ms);
  CHECK(clients_of(loop, server) == 0);
  control::ServerStats stats;
  loop.run_sync([&] { stats = server.stats(); });
  CHECK(stats.timed_out == opts.max_clients - 1);
  for (int fd : silent) ::close(fd);
}

namespace {
struct BigRingDaemon : FakeDaemon {
  logs::LogRing big{16 * 1024 * 1024};
  logs::LogRing& log_ring() override { return big; }
};
}  // namespace

TEST_CASE("a table full of log dumps nobody reads: status is still answered", "[control][clients]") {
  TempDir dir;
  BigRingDaemon daemon;
  daemon.snap = sample_snapshot();
  std::string line(1000, 'x');
  for (int i = 0; i < 8000; ++i) daemon.big.append(logs::Stream::payload_stdout, line, i);
  Loop loop;
  auto opts = options_in(dir);
  control::Server server(loop.io, opts, daemon);
  Halt halt{loop};
  loop.start();

  std::vector<int> readers;
  for (std::size_t i = 0; i < opts.max_clients; ++i) {
    int fd = raw_connect(opts.socket_path);
    REQUIRE(fd >= 0);
    write_all(fd, "{\"cmd\":\"logs\",\"n\":100000}\n");  // 8 MB each, never read
    readers.push_back(fd);
  }
  // All accepted and busy writing (slow under qemu-user: poll, do not guess).
  for (int i = 0; i < 100 && clients_of(loop, server) < opts.max_clients; ++i) std::this_thread::sleep_for(50ms);
  REQUIRE(clients_of(loop, server) == opts.max_clients);
  std::string answer;
  try {
    answer = control::request_status(opts.socket_path, 5s).snapshot.state;
  } catch (const control::ClientError& e) {
    answer = e.what();
  }
  CHECK(answer == "running");
  for (int fd : readers) ::close(fd);
}
