// The integrity gate: crypto::load_signed_manifest + crypto::check_files,
// run on a worker thread so the event loop stays responsive.
#include <utility>  // before Boost.Asio with GCC 12 / C++20

#include <stdexcept>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "pisec/formats.hpp"
#include "pisec/gates/integrity.hpp"

namespace pisec::gates {
namespace {

class IntegrityGateImpl final : public Gate {
 public:
  explicit IntegrityGateImpl(config::IntegrityGate cfg) : cfg_(std::move(cfg)) {}
  IntegrityGateImpl(const IntegrityGateImpl&) = delete;
  IntegrityGateImpl& operator=(const IntegrityGateImpl&) = delete;

  std::string_view name() const override { return "integrity"; }

  void start(boost::asio::io_context& io, Done done) override {
    worker_.start(
        io, [cfg = cfg_](const std::atomic<bool>* cancelled) {
          try {
            return check_integrity(cfg, cancelled);
          } catch (const crypto::Cancelled&) {
            return Outcome{false, "cancelled"};  // dropped: the gate was cancelled
          }
        },
        std::move(done));
  }

  void cancel() override { worker_.cancel(); }

 private:
  config::IntegrityGate cfg_;
  Worker worker_;
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
