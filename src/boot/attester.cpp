// The real attester: one `pisecd attest --json` child per round. The daemon
// itself never speaks TLS to the outside: the exchange, OpenSSL's state and
// any parser bug stay in a process that exits; a verifier that hangs costs
// a timer. The daemon reaps the child (it reaps everything, as subreaper)
// and hands its status here.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ports.hpp"

extern char** environ;

namespace pisec::boot {

namespace asio = boost::asio;

namespace {

// Resolving, two TLS exchanges of 15 s at most each, and hashing the card's
// files: a round that takes longer than this has no answer.
constexpr std::chrono::seconds round_timeout{90};
// The child prints one small JSON object; more is not an answer.
constexpr std::size_t max_output = 64 * 1024;

class RealAttester final : public AttesterPort {
 public:
  explicit RealAttester(asio::io_context& io) : io_(io) {}
  ~RealAttester() override { cancel(); }

  bool start(const config::Config& cfg, const Facts& facts, Done done) override {
    if (run_) return false;
    const auto args = attest_argv(cfg.source_path, facts);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail(std::move(done), std::string("pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);  // dup2 clears FD_CLOEXEC on 1
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      return fail(std::move(done), std::string("cannot start pisecd attest: ") + std::strerror(rc));
    }
    auto run = std::make_shared<Run>(io_, fds[0]);
    run->pid = pid;
    run->done = std::move(done);
    run_ = run;
    read(run);
    run->timer.expires_after(round_timeout);
    run->timer.async_wait([this, run](boost::system::error_code ec) {
      if (ec || run_ != run) return;
      run->timed_out = true;
      ::kill(run->pid, SIGKILL);  // reaped by the daemon, then finished below
    });
    return true;
  }

  bool reaped(pid_t pid, int wait_status) override {
    if (!run_ || pid != run_->pid) return false;
    run_->status = wait_status;
    run_->exited = true;
    maybe_done(run_);
    return true;
  }

  void cancel() override {
    if (!run_) return;
    auto run = std::move(run_);
    run->done = nullptr;
    if (!run->exited) ::kill(run->pid, SIGKILL);  // the daemon reaps it as an orphan would be
    run->timer.cancel();
    boost::system::error_code ignored;
    run->out.close(ignored);
  }

 private:
  struct Run {
    Run(asio::io_context& io, int fd) : out(io, fd), timer(io) {}
    pid_t pid = 0;
    asio::posix::stream_descriptor out;
    asio::steady_timer timer;
    std::array<char, 4096> buf{};
    std::string text;
    bool eof = false, exited = false, timed_out = false;
    int status = 0;
    Done done;
  };

  bool fail(Done done, std::string why) {
    asio::post(io_, [done = std::move(done), why = std::move(why)] {
      Answer a;
      a.detail = why;
      done(std::move(a));
    });
    return true;
  }

  void read(const std::shared_ptr<Run>& run) {
    run->out.async_read_some(asio::buffer(run->buf), [this, run](boost::system::error_code ec, std::size_t n) {
      if (run_ != run) return;  // cancelled
      if (n > 0 && run->text.size() < max_output) run->text.append(run->buf.data(), std::min(n, max_output - run->text.size()));
      if (ec) {
        run->eof = true;
        return maybe_done(run);
      }
      read(run);
    });
  }

  void maybe_done(std::shared_ptr<Run> run) {  // a copy: run_ is reset below
    if (!run->eof || !run->exited || run_ != run) return;
    run_.reset();
    run->timer.cancel();
    Answer a;
    if (run->timed_out) {
      a.detail = "the attestation took longer than " + std::to_string(round_timeout.count()) + " s";
    } else {
      a = attest_answer(run->status, run->text);
    }
    if (run->done) run->done(std::move(a));
  }

  asio::io_context& io_;
  std::shared_ptr<Run> run_;
};

}  // namespace

std::vector<std::string> attest_argv(const std::string& config_path, const AttesterPort::Facts& facts) {
  std::vector<std::string> argv = {"pisecd", "attest", "-c", config_path, "--json", "--ruleset",
                                   facts.ruleset_digest.empty() ? "none" : facts.ruleset_digest};
  for (const auto& [name, status] : facts.gates) {
    argv.emplace_back("--gate");
    argv.push_back(name + "=" + status);
  }
  return argv;
}

AttesterPort::Answer attest_answer(int wait_status, std::string_view output) {
  AttesterPort::Answer a;
  if (!WIFEXITED(wait_status)) {
    a.detail = "pisecd attest was killed by signal " + std::to_string(WTERMSIG(wait_status));
    return a;
  }
  const int code = WEXITSTATUS(wait_status);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(output);
    if (!j.is_object()) throw std::runtime_error("not an object");
    const auto verdict = j.at("verdict").get<std::string>();
    const auto detail = j.at("detail").get<std::string>();
    const auto verifier = j.at("verifier_id").get<std::string>();
    const auto differences = j.at("differences").get<std::vector<std::string>>();
    static constexpr const char* names[] = {"affirming", "warning", "contraindicated", "no_answer"};
    if (code < 0 || code > 3 || verdict != names[code])
      throw std::runtime_error("verdict \"" + verdict + "\" with exit code " + std::to_string(code));
    a.verdict = static_cast<Verdict>(code);
    a.verifier_id = verifier;
    a.differences = differences;
    a.detail = detail;
  } catch (const std::exception& e) {
    a = {};
    a.detail = "pisecd attest (exit " + std::to_string(code) + ") gave no readable answer: " + e.what();
  }
  return a;
}

std::unique_ptr<AttesterPort> real_attester(asio::io_context& io) { return std::make_unique<RealAttester>(io); }

}  // namespace pisec::boot
