// `pisecd init` and `pisecd sandbox-run`: the sandbox's two subcommands.
// sandbox-run starts [payload] in its sandbox in the foreground, relays its
// output, and stops it on SIGTERM/SIGINT the way the daemon does: operators
// use it to try a payload's sandbox without the rest of the boot sequence.
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/sandbox.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

int cmd_init(const Args& in) {
  Args args = in;
  sandbox::InitOptions options;
  if (auto g = take_option(args, {"--grace-ms"})) {
    try {
      options.grace_ms = std::stol(*g);
    } catch (const std::exception&) {
      throw UsageError("--grace-ms needs a number of milliseconds, got \"" + *g + "\"");
    }
  }
  if (auto r = take_option(args, {"--report-fd"})) {
    try {
      options.report_fd = std::stoi(*r);
    } catch (const std::exception&) {
      throw UsageError("--report-fd needs a descriptor number, got \"" + *r + "\"");
    }
  }
  if (args.empty() || args.front() != "--" || args.size() < 2) throw UsageError("expected -- CMD...");
  options.command.assign(args.begin() + 1, args.end());
  return sandbox::run_init(options);
}

namespace {

// Copies what is readable from fd to out; false at EOF.
bool relay(int fd, int out) {
  std::array<char, 8192> buf{};
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n > 0) {
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(out, buf.data() + off, static_cast<std::size_t>(n - off));
        if (w <= 0) break;
        off += w;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

}  // namespace

int cmd_sandbox_run(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  sandbox::SpawnOptions options;
  if (auto b = take_option(args, {"--bwrap"})) options.bwrap_path = *b;
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());

  auto loaded = load_config(path);
  if (!loaded) return 1;
  const config::Config& cfg = *loaded;
  if (auto problem = sandbox::check_user_namespaces(); !problem.empty()) {
    text::err(text::cat("pisecd sandbox-run: ", problem, '\n'));
    return 1;
  }

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);  // spawn() resets the child's mask
  sandbox::UniqueFd sigfd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));

  sandbox::Spawned s = sandbox::spawn(cfg.payload, options);
  for (const auto& w : s.warnings) text::err(text::cat("pisecd sandbox-run: ", w, '\n'));

  sandbox::StatusFdParser parser;
  std::optional<long> exit_record;
  auto on_events = [&](const std::vector<sandbox::StatusEvent>& events) {
    for (const auto& e : events) {
      if (e.kind == sandbox::StatusEvent::Kind::child_pid) {
        if (!sandbox::adopt_sandbox_init(s, static_cast<pid_t>(e.value)))
          text::err(text::cat("pisecd sandbox-run: sandbox init ", e.value, " vanished\n"));
      } else {
        exit_record = e.value;
      }
    }
  };
  auto read_status = [&]() -> bool {
    std::array<char, 512> buf{};
    for (;;) {
      ssize_t n = read(s.status_fd.get(), buf.data(), buf.size());
      if (n > 0) {
        on_events(parser.feed(std::string_view(buf.data(), static_cast<std::size_t>(n))));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) on_events(parser.finish());
      return n < 0 && errno == EAGAIN;
    }
  };

  bool out_open = true, err_open = true, status_open = true;
  int wait_status = 0;
  bool reaped = false;
  while (!reaped) {
    std::array<pollfd, 5> p{{{s.stdout_fd.get(), POLLIN, 0},
                             {s.stderr_fd.get(), POLLIN, 0},
                             {status_open ? s.status_fd.get() : -1, POLLIN, 0},
                             {sigfd.get(), POLLIN, 0},
                             {s.pidfd.get(), POLLIN, 0}}};
    if (!out_open) p[0].fd = -1;
    if (!err_open) p[1].fd = -1;
    if (poll(p.data(), p.size(), -1) < 0 && errno != EINTR) break;
    if (p[0].revents) out_open = relay(s.stdout_fd.get(), 1);
    if (p[1].revents) err_open = relay(s.stderr_fd.get(), 2);
    if (p[2].revents) status_open = read_status();
    if (p[3].revents) {
      signalfd_siginfo info{};
      if (read(sigfd.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        text::err(text::cat("pisecd sandbox-run: ", strsignal(static_cast<int>(info.ssi_signo)), ": stopping the payload (grace ", cfg.payload.stop_grace_ms, " ms)\n"));
        wait_status = sandbox::stop_and_reap(s, std::chrono::milliseconds(cfg.payload.stop_grace_ms));
        reaped = true;
      }
    }
    // Without a pidfd (kernel < 5.3) bwrap's exit shows as the status fd's EOF.
    if (p[4].revents || (!s.pidfd && !status_open)) {
      while (waitpid(s.pid, &wait_status, 0) < 0 && errno == EINTR) {
      }
      reaped = true;
    }
  }
  // Everything in the sandbox is gone: drain what it wrote last.
  if (out_open) relay(s.stdout_fd.get(), 1);
  if (err_open) relay(s.stderr_fd.get(), 2);
  if (status_open) read_status();

  sandbox::SandboxExit e = sandbox::classify_exit(wait_status, exit_record);
  if (e.setup_failed) {
    text::err(text::cat("pisecd sandbox-run: bwrap failed before the payload ran (status ", sandbox::exit_status_for(wait_status), ")\n"));
    return 125;
  }
  if (e.signal) {
    text::err(text::cat("pisecd sandbox-run: payload killed by signal ", e.signal, '\n'));
    return 128 + e.signal;
  }
  text::err(text::cat("pisecd sandbox-run: payload exited with code ", e.code, '\n'));
  return e.code;
}

}  // namespace pisec::cli
