// `pisecd init -- CMD...`: the tiny init that is PID 1 of the sandbox's pid
// namespace. It forwards termination signals to the command's process group,
// reaps every child, and exits with the command's status. It sleeps in a
// blocking read on a signalfd: no wake-ups while idle (tini wakes every second).
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>

#include "pisec/sandbox.hpp"
#include "pisec/util.hpp"

namespace pisec::sandbox {

const std::vector<int>& init_forwarded_signals() {
  static const std::vector<int> sigs = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT};
  return sigs;
}

int exit_status_for(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

namespace {

long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Signals everything else in the sandbox. As PID 1 that is kill(-1): every
// process of the namespace but us. Elsewhere kill(-1) would reach the whole
// host, so only the command's group and our (subreaper-adopted) children.
void signal_rest(bool pid1, pid_t group, int sig) {
  if (pid1) {
    kill(-1, sig);
    return;
  }
  if (group > 0) kill(-group, sig);
  const std::string children =  // the words below point into it
      util::read_text_file("/proc/self/task/" + std::to_string(getpid()) + "/children").value_or("");
  for (auto w : text::words(children))
    if (auto pid = text::to_int(w); pid && *pid > 0) kill(static_cast<pid_t>(*pid), sig);
}

// Reaps every exited child; records the main child's status. False when no
// child is left at all.
// Orphans reaped so far, reported to the daemon as cumulative totals so a
// write lost to a full pipe costs nothing.
struct OrphanReport {
  int fd = -1;
  long reaped = 0;
  void count() {
    ++reaped;
    if (fd < 0) return;
    std::string line = "reaped " + std::to_string(reaped) + "\n";
    ssize_t ignored = write(fd, line.data(), line.size());  // non-blocking: may drop
    (void)ignored;
  }
};

bool reap(pid_t main_child, int& main_status, bool& main_exited, OrphanReport& report) {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0) return true;
    if (pid < 0) return errno != ECHILD;
    if (pid == main_child) {
      main_status = status;
      main_exited = true;
    } else {
      report.count();
    }
  }
}

}  // namespace

long parse_init_report(std::string_view bytes) {
  long best = -1;
  std::size_t pos = 0;
  while ((pos = bytes.find("reaped ", pos)) != std::string_view::npos) {
    pos += 7;
    long v = 0;
    bool any = false;
    while (pos < bytes.size() && bytes[pos] >= '0' && bytes[pos] <= '9' && v < 1000000000L) {
      v = v * 10 + (bytes[pos++] - '0');
      any = true;
    }
    if (any && v > best) best = v;
  }
  return best;
}

int run_init(const InitOptions& options) {
  OrphanReport report;
  report.fd = options.report_fd;
  if (report.fd >= 0) {
    // The command must not inherit it (it could forge counts), and a full
    // pipe must never block the init.
    if (fcntl(report.fd, F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(report.fd, F_SETFL, fcntl(report.fd, F_GETFL) | O_NONBLOCK) != 0)
      report.fd = -1;
  }
  const long grace_ms = options.grace_ms;
  std::vector<std::string> args = options.command;
  if (args.empty()) throw std::invalid_argument("no command to run");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const bool pid1 = getpid() == 1;
  // Not PID 1 (tests, or bwrap's reaper in front): adopt orphans anyway.
  if (!pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    text::err(text::cat("pisecd init: PR_SET_CHILD_SUBREAPER: ", std::strerror(errno), '\n'));

  // Blocked signals are queued even for PID 1 (which drops unhandled ones).
  sigset_t mask, old;
  sigemptyset(&mask);
  for (int sig : init_forwarded_signals()) sigaddset(&mask, sig);
  sigaddset(&mask, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &mask, &old) != 0)
    throw std::runtime_error(std::string("sigprocmask: ") + std::strerror(errno));
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));

  pid_t child = fork();
  if (child < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    setpgid(0, 0);
    execvp(argv[0], argv.data());
    int err = errno;
    const char* msg = std::strerror(err);
    // Plain write(): no stdio buffers shared with the parent after fork.
    std::string line = std::string("pisecd init: exec ") + argv[0] + ": " + msg + "\n";
    ssize_t ignored = write(2, line.data(), line.size());
    (void)ignored;
    _exit(err == ENOENT ? 127 : 126);
  }
  setpgid(child, child);  // both sides, so forwarding never races the exec

  int main_status = 0;
  bool main_exited = false;
  long deadline = -1;  // draining: when leftovers get SIGKILL
  bool killed = false;
  for (;;) {
    if (main_exited && deadline < 0) {
      // The command is gone: ask the rest to leave, then insist.
      signal_rest(pid1, child, SIGTERM);
      deadline = now_ms() + grace_ms;
    }
    int timeout = -1;  // idle: block until a signal arrives
    if (deadline >= 0 && !killed) timeout = static_cast<int>(std::max(0L, deadline - now_ms()));
    pollfd p{sfd, POLLIN, 0};
    int rc = poll(&p, 1, timeout);
    if (rc < 0 && errno != EINTR) break;
    if (rc == 0) {
      signal_rest(pid1, child, SIGKILL);
      killed = true;
    }
    if (rc > 0) {
      signalfd_siginfo info{};
      if (read(sfd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) continue;
      int sig = static_cast<int>(info.ssi_signo);
      if (sig != SIGCHLD) {
        if (main_exited) signal_rest(pid1, child, sig);
        else if (kill(-child, sig) != 0) kill(child, sig);
      }
    }
    if (!reap(child, main_status, main_exited, report) && main_exited) break;
  }
  return exit_status_for(main_status);
}

}  // namespace pisec::sandbox
