// `pisecd redact [-c FILE]`: stdin through the configured capture pipeline
// (line assembly, redaction, ring) to stdout - to try redact patterns, and
// for the benchmark.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/logs.hpp"

namespace pisec::cli {
namespace {

class StdoutSink final : public logs::Sink {
 public:
  void write(const logs::Entry& e) override {
    out_.append(e.text).push_back('\n');
    if (out_.size() >= 64 * 1024) flush();
  }
  void flush() {
    std::size_t off = 0;
    while (off < out_.size()) {
      ssize_t n = ::write(1, out_.data() + off, out_.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    out_.clear();
  }
  ~StdoutSink() override { flush(); }

 private:
  std::string out_;
};

}  // namespace

int cmd_redact(const Args& in) {
  Args args = in;
  auto file = take_option(args, {"-c", "--config"});
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  config::Logs cfg;
  if (file) {
    auto loaded = load_config(*file);
    if (!loaded) return 1;
    cfg = loaded->logs;
  }
  std::vector<std::unique_ptr<logs::Sink>> sinks;
  sinks.push_back(std::make_unique<StdoutSink>());
  logs::Logger logger(cfg, std::move(sinks), nullptr);
  std::string buf(64 * 1024, '\0');
  for (;;) {
    ssize_t n = ::read(0, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("reading stdin: ") + std::strerror(errno));
    if (n == 0) break;
    logger.feed(logs::Stream::payload_stdout, std::string_view(buf.data(), static_cast<std::size_t>(n)));
  }
  logger.end_of_stream(logs::Stream::payload_stdout);
  return 0;
}

}  // namespace pisec::cli
