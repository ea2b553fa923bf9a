// The integrity gate: crypto::load_signed_manifest + crypto::check_files,
// run on a worker thread so the event loop stays responsive.
#include <utility>  // before Boost.Asio with GCC 12 / C++20

#include <stdexcept>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "pisec/crypto.hpp"
#include "pisec/integrity.hpp"

namespace pisec::gates {
namespace {

class IntegrityGateImpl final : public Gate {
 public:
  explicit IntegrityGateImpl(config::IntegrityGate cfg) : cfg_(std::move(cfg)) {}
  IntegrityGateImpl(const IntegrityGateImpl&) = delete;
  IntegrityGateImpl& operator=(const IntegrityGateImpl&) = delete;

  ~IntegrityGateImpl() override {
    cancel();
    if (worker_.joinable()) worker_.join();
  }

  std::string_view name() const override { return "integrity"; }

  void start(boost::asio::io_context& io, Done done) override {
    if (worker_.joinable()) throw std::logic_error("integrity gate started twice");
    shared_->done = std::move(done);
    // The guard keeps io.run() from returning while the worker hashes.
    auto work = boost::asio::make_work_guard(io);
    worker_ = std::thread([cfg = cfg_, shared = shared_, work = std::move(work)]() mutable {
      Outcome outcome;
      try {
        outcome = check_integrity(cfg, &shared->cancelled);
      } catch (const crypto::Cancelled&) {
        return;  // result dropped; the guard is released as the lambda dies
      } catch (const std::exception& e) {
        outcome = {false, e.what()};
      }
      if (shared->cancelled.load()) return;
      // done is touched only on the io thread, where cancel() runs too, so the
      // check there cannot race with a late cancel().
      boost::asio::post(work.get_executor(), [shared, outcome = std::move(outcome)]() mutable {
        if (shared->cancelled.load() || !shared->done) return;
        auto report = std::move(shared->done);
        shared->done = nullptr;
        report(std::move(outcome));
      });
      work.reset();
    });
  }

  void cancel() override { shared_->cancelled.store(true); }

 private:
  struct Shared {
    std::atomic<bool> cancelled{false};
    Done done;
  };
  config::IntegrityGate cfg_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::thread worker_;
};

}  // namespace

Outcome check_integrity(const config::IntegrityGate& cfg, const std::atomic<bool>* cancel) {
  const std::string sig = cfg.signature.empty() ? cfg.manifest + ".sig" : cfg.signature;
  crypto::SignedManifest sm;
  try {
    sm = crypto::load_signed_manifest(cfg.manifest, sig, cfg.public_key);
  } catch (const crypto::Error& e) {
    return {false, e.what()};
  }
  auto problems = crypto::check_files(sm.manifest, cfg.root, cancel, /*abbreviate=*/true);
  if (!problems.empty()) {
    std::string detail = problems.front().to_string();
    if (problems.size() > 1) detail += " (and " + std::to_string(problems.size() - 1) + " more files failed)";
    return {false, detail};
  }
  return {true, "manifest signed by key " + crypto::keynum_hex(sm.keynum) + ", " +
                    std::to_string(sm.manifest.entries.size()) + " files verified"};
}

std::unique_ptr<Gate> make_integrity_gate(const config::IntegrityGate& cfg) {
  return std::make_unique<IntegrityGateImpl>(cfg);
}

}  // namespace pisec::gates
