// gates::Worker: a gate's blocking work on its own thread, its outcome posted
// back to the io_context's thread unless the gate was cancelled first.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "pisec/gates.hpp"

namespace pisec::gates {

struct Worker::Shared {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  // Keeps io.run() alive while an answer is still to come; released on cancel.
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  Done done;  // touched only on the io_context's thread, or under mutex
};

void Worker::start(boost::asio::io_context& io, Work work, Done done) {
  cancel();
  auto shared = std::make_shared<Shared>();
  shared->done = std::move(done);
  shared->work.emplace(io.get_executor());
  shared_ = shared;
  try {
    // Detached: a thread stuck in read() on a dead device must not hold up
    // the daemon (joining it would).
    std::thread([shared, work = std::move(work)] {
      Outcome outcome;
      try {
        outcome = work(&shared->cancelled);
      } catch (const std::exception& e) {
        outcome = {false, e.what()};
      }
      finish(shared, std::move(outcome));
    }).detach();
  } catch (const std::system_error& e) {
    finish(shared, {false, std::string("cannot start worker thread: ") + e.what()});
  }
}

void Worker::cancel() {
  if (!shared_) return;
  shared_->cancelled = true;
  std::lock_guard lock(shared_->mutex);
  shared_->work.reset();
  shared_->done = nullptr;
  shared_.reset();
}

void Worker::finish(const std::shared_ptr<Shared>& shared, Outcome outcome) {
  std::lock_guard lock(shared->mutex);
  if (!shared->work) return;  // cancelled: the io_context may be gone
  boost::asio::post(shared->work->get_executor(), [shared, outcome = std::move(outcome)]() mutable {
    Done done;
    {
      std::lock_guard inner(shared->mutex);
      if (shared->cancelled) return;
      done = std::move(shared->done);
      shared->done = nullptr;
    }
    if (done) done(std::move(outcome));
  });
  shared->work.reset();
}

}  // namespace pisec::gates
