#pragma once
// Boot gates: entropy, clock, integrity, arch — run in that order by the
// daemon between lockdown and the service ruleset. Each gate's decisions are
// plain functions in its own header; this is only the shape the runner drives.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace boost::asio {
class io_context;
}

namespace pisec::gates {

struct Outcome {
  bool passed = false;
  std::string detail;  // one line for status and the console, e.g. "crng ready, 16/16 hwrng blocks credited"
};

using Done = std::function<void(Outcome)>;

// start() returns at once; done is called exactly once, on the io_context's
// thread, unless cancel() came first. The runner calls cancel() when the gate's
// timeout_s expires; the gate then stops its work and releases what it holds
// (a gate that blocks in a worker thread must make that thread harmless).
class Gate {
 public:
  virtual ~Gate() = default;
  virtual std::string_view name() const = 0;
  virtual void start(boost::asio::io_context& io, Done done) = 0;
  virtual void cancel() {}
};

// Runs a gate's blocking work (reads, hashing) on a thread of its own and
// reports its outcome on the io_context's thread - the one way the gates do
// it. cancel() (or destruction) is final: the outcome is dropped, and the
// thread, which may still sit in a read() it cannot leave, never touches the
// io_context again; it stops at the next check of the flag it is given.
class Worker {
 public:
  using Work = std::function<Outcome(const std::atomic<bool>* cancelled)>;
  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { cancel(); }
  // The work runs on a copy of what it captures: it may outlive the gate.
  void start(boost::asio::io_context& io, Work work, Done done);
  void cancel();

 private:
  struct Shared;
  static void finish(const std::shared_ptr<Shared>& shared, Outcome outcome);
  std::shared_ptr<Shared> shared_;
};

}  // namespace pisec::gates
