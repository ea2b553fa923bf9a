#pragma once
// Runs fn in a forked child and returns the text it produced: for tests whose
// subject may block forever or whose cost must be measured in a fresh process.
// "timed out" (the child is killed) after timeout_ms.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>

namespace pisec::testing {

inline std::string run_in_child(const std::function<std::string()>& fn, int timeout_ms = 20000) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string result;
    try {
      result = fn();
    } catch (const std::exception& e) {
      result = e.what();
    }
    (void)!::write(fds[1], result.data(), result.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string result;
  pollfd p{fds[0], POLLIN, 0};
  char buf[4096];
  for (;;) {
    if (::poll(&p, 1, timeout_ms) <= 0) {
      result = "timed out";
      ::kill(pid, SIGKILL);
      break;
    }
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  return result;
}

}  // namespace pisec::testing
