// The real ports (ports.hpp): the one place where the daemon's loop meets the
// modules that do the work — firewall, gates, sandbox, supervisor, logs and
// the control socket. The loop decides; this file only connects.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <boost/asio.hpp>
#include <filesystem>
#include <optional>

#include "pisec/boot.hpp"
#include "pisec/control.hpp"
#include "pisec/firewall.hpp"
#include "pisec/formats.hpp"
#include "pisec/gates/arch.hpp"
#include "pisec/gates/clock.hpp"
#include "pisec/gates/entropy.hpp"
#include "pisec/gates/integrity.hpp"
#include "pisec/logs.hpp"
#include "pisec/mux.hpp"
#include "pisec/sandbox.hpp"
#include "pisec/supervisor.hpp"
#include "pisec/util.hpp"
#include "ports.hpp"

namespace pisec::boot {
namespace {

namespace asio = boost::asio;

// ---- control socket and log ring ------------------------------------------------
class RealControl final : public ControlPort {
 public:
  RealControl(asio::io_context& io, Host& host, std::shared_ptr<logs::Logger> logger)
      : io_(io), bridge_(host, *logger), logger_(std::move(logger)) {}
  ~RealControl() override { stop(); }
  void start(const config::Config& cfg) override {
    bridge_.table = cfg.firewall.enabled ? cfg.firewall.table : "";
    // A request's short-lived allocations (the status JSON, a log dump) leave
    // freed pages inside the heap, and its frames stack pages, that glibc and
    // the kernel keep: give them back once the clients are gone, so the idle
    // daemon holds what it uses, not its last peak. The mux's channel, which
    // may be asked many times a second, only trims the heap (no /proc read).
    auto options = control::ServerOptions::from_config(cfg.daemon);
    options.on_quiet = [] { util::release_unused_memory(); };
    server_ = std::make_unique<control::Server>(io_, std::move(options), bridge_);
    if (cfg.mux.enabled) {
      // The mux's read-only channel: status and logs, for its uid alone.
      control::ServerOptions o;
      o.on_quiet = [] { ::malloc_trim(0); };
      o.socket_path = cfg.mux.daemon_socket;
      o.reader_uid = cfg.mux.uid;
      mux_server_ = std::make_unique<control::Server>(io_, o, bridge_);
    }
  }
  void log(const std::string& line) override { logger_->daemon_line(line); }
  void stop() override {
    if (server_) server_->stop();
    if (mux_server_) mux_server_->stop();
  }

 private:
  struct Bridge : control::ControlHandler {
    Bridge(Host& h, logs::Logger& l) : host(h), logger(l) {}
    status::Snapshot snapshot() override { return host.snapshot(); }
    logs::LogRing& log_ring() override { return logger.ring(); }
    std::vector<RuleCounter> rule_counters() override {
      std::vector<RuleCounter> out;
      if (table.empty()) return out;
      try {
        for (const auto& c : firewall::read_counters(table)) out.push_back({c.chain, c.index, c.packets, c.bytes});
      } catch (const std::exception&) {
        // Metrics go without them; the status already says how the firewall stands.
      }
      return out;
    }
    std::string table;  // firewall.table, empty when the firewall is off
    Host& host;
    logs::Logger& logger;
  };
  asio::io_context& io_;
  Bridge bridge_;
  std::shared_ptr<logs::Logger> logger_;
  std::unique_ptr<control::Server> server_, mux_server_;
};

// ---- firewall -------------------------------------------------------------------
class RealFirewall final : public FirewallPort {
 public:
  Result apply(const config::Config& cfg, Mode mode) override {
    Result out;
    try {
      auto rs = mode == Mode::lockdown ? firewall::build_lockdown_ruleset(cfg.firewall)
                                       : firewall::build_service_ruleset(cfg.firewall, cfg.payload.uid);
      auto r = firewall::apply(rs);
      out.ok = r.applied;
      out.verified = r.verified;
      out.digest = r.digest;
      out.error = r.error;
      for (const auto& d : r.differences) out.error += (out.error.empty() ? "" : "; ") + d;
    } catch (const std::exception& e) {
      out.ok = false;
      out.error = e.what();
    }
    return out;
  }

  std::string text(const config::Config& cfg) override {
    try {
      return firewall::render_nft(firewall::build_service_ruleset(cfg.firewall, cfg.payload.uid));
    } catch (const std::exception& e) {
      return std::string("invalid: ") + e.what();
    }
  }
};

// ---- gates --------------------------------------------------------------------
class RealGates final : public GatesPort {
 public:
  explicit RealGates(Host& host) : host_(host) {}

  std::unique_ptr<gates::Gate> make(const config::Config& cfg, std::size_t index) override {
    switch (index) {
      case 0:
        return entropy::make_entropy_gate(cfg.gates.entropy);
      case 1: {
        // The signed release time is one more floor for the clock, but only once
        // the signature and the stamp's hash check out: unsigned bytes could push
        // the floor into the future and lock the device out.
        std::int64_t manifest_floor = 0;
        const auto& ig = cfg.gates.integrity;
        if (ig.enabled && !ig.manifest.empty()) {
          try {
            manifest_floor =
                crypto::signed_release_time(ig.manifest, ig.signature, ig.public_key, ig.root).value_or(0);
          } catch (const std::exception& e) {
            host_.event(std::string("clock: manifest time not used as a floor: ") + e.what());
          }
        }
        clock_result_ = std::make_shared<clock::GateResult>();
        return clock::make_clock_gate(cfg.gates.clock, manifest_floor, clock::system_clock(), clock_result_);
      }
      case 2:
        return gates::make_integrity_gate(cfg.gates.integrity);
      default:
        return elf::make_arch_gate(cfg.gates.arch, cfg.payload, cfg.gates.integrity);
    }
  }

  void failed_continue(const config::Config& cfg, std::size_t index) override {
    if (index != 1 || !cfg.gates.clock.set_clock || !clock_result_) return;
    try {
      if (clock::raise_clock_to_floor(clock::system_clock(), clock_result_->floor.unix_s))
        host_.event("clock: raised to the floor (" + clock_result_->floor.source + ")");
    } catch (const std::exception& e) {
      host_.event(std::string("clock: cannot raise to the floor: ") + e.what());
    }
  }

 private:
  Host& host_;
  std::shared_ptr<clock::GateResult> clock_result_;
};

// ---- sandboxed processes: the payload, the mux ------------------------------------

// What differs between the two: what runs, where its output goes, whom its
// exit is reported to.
struct Role {
  std::string name;  // "payload" or "mux", for the log
  config::Payload (*sandbox)(const config::Config&);
  logs::Stream out, err;
  void (Host::*exited)(int code, int signal);
};

config::Payload payload_sandbox(const config::Config& cfg) { return cfg.payload; }

// Syscalls the mux never needs on top of the payload's deny list: it only
// serves sockets, so nothing that changes files or makes new executables.
constexpr const char* mux_seccomp_extra[] = {
    "execveat", "memfd_create", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "mknod", "mknodat", "link", "linkat", "symlink", "symlinkat", "rename", "renameat", "renameat2",
    "unlink", "unlinkat", "truncate", "ftruncate"};

// `pisecd mux` in a sandbox of its own: its uid, no capabilities, the
// tighter filter, a read-only root holding only the libraries (none for the
// static build) and the sockets it talks to. Its settings come as flags, so
// it never reads the configuration file.
config::Payload mux_sandbox(const config::Config& cfg) {
  config::Payload p;
  p.command = {sandbox::init_path_in_sandbox, "mux"};
  for (auto& a : mux::to_args(cfg.mux)) p.command.push_back(std::move(a));
  p.ro_binds.clear();
  for (const char* dir : {"/usr", "/lib", "/lib64"})
    if (std::filesystem::is_directory(dir)) p.ro_binds.emplace_back(dir);
  p.ro_binds.push_back(std::filesystem::path(cfg.mux.daemon_socket).parent_path().string());
  if (cfg.mux.upstream.rfind("unix:", 0) == 0)
    p.ro_binds.push_back(std::filesystem::path(cfg.mux.upstream.substr(5)).parent_path().string());
  p.uid = cfg.mux.uid;
  p.gid = cfg.mux.gid;
  p.stop_grace_ms = 2000;
  p.max_processes = 16;
  p.max_open_files = 2 * cfg.mux.max_connections + 64;  // a client and an upstream socket each
  p.seccomp_deny.assign(std::begin(mux_seccomp_extra), std::end(mux_seccomp_extra));
  p.hostname = "mux";
  return p;
}

const Role payload_role{"payload", payload_sandbox, logs::Stream::payload_stdout, logs::Stream::payload_stderr,
                        &Host::payload_exited};
const Role mux_role{"mux", mux_sandbox, logs::Stream::mux, logs::Stream::mux, &Host::mux_exited};

class RealSpawner final : public SpawnerPort {
 public:
  RealSpawner(asio::io_context& io, Host& host, std::shared_ptr<logs::Logger> logger, const Role& role)
      : io_(io), host_(host), logger_(std::move(logger)), role_(role) {}

  pid_t spawn(const config::Config& cfg) override;
  void signal(int sig) override;
  void reaped(int wait_status) override;
  std::int64_t orphans_reaped_inside() const override;

 private:
  struct PayloadRun;
  enum class Output { out, err };

  void read_output(const std::shared_ptr<PayloadRun>& run, Output which);
  void read_status(const std::shared_ptr<PayloadRun>& run);
  void read_report(const std::shared_ptr<PayloadRun>& run);
  static void feed_report(PayloadRun& run, std::string_view bytes);
  void status_events(PayloadRun& run, const std::vector<sandbox::StatusEvent>& events);
  void drain(PayloadRun& run);

  asio::io_context& io_;
  Host& host_;
  std::shared_ptr<logs::Logger> logger_;
  const Role& role_;
  std::shared_ptr<PayloadRun> payload_;
  std::int64_t reaped_in_finished_ = 0;
  // Compiled at the first spawn and again only when a reload changes the
  // deny list: a restart does not compile it again.
  std::optional<sandbox::SeccompProgram> seccomp_;
};

struct RealSpawner::PayloadRun {
  sandbox::Spawned spawned;
  std::unique_ptr<asio::posix::stream_descriptor> out, err, status, report;
  sandbox::StatusFdParser parser;
  std::optional<long> exit_code;
  std::int64_t reaped_inside = 0;
  std::string report_partial;  // an unfinished "reaped N" line: a read can end mid-number
  // Held for the payload's whole life: small, since every reader takes a
  // line or an event in pieces (4 KiB each was 16 KiB of the idle daemon's
  // heap). bwrap's status events are about 200 bytes, the init's reports 16.
  std::array<char, 1024> out_buf{}, err_buf{};
  std::array<char, 512> status_buf{};
  std::array<char, 64> report_buf{};
};

std::int64_t RealSpawner::orphans_reaped_inside() const {
  return reaped_in_finished_ + (payload_ ? payload_->reaped_inside : 0);
}

pid_t RealSpawner::spawn(const config::Config& cfg) {
  if (auto missing = sandbox::check_user_namespaces(); !missing.empty())
    throw std::runtime_error("the sandbox needs unprivileged user namespaces: " + missing);
  const config::Payload sandbox = role_.sandbox(cfg);
  if (!seccomp_ || seccomp_->deny != sandbox.seccomp_deny) {
    seccomp_.reset();
    seccomp_ = sandbox::compile_seccomp_program(sandbox.seccomp_deny);
  }
  sandbox::SpawnOptions options;
  options.seccomp = &*seccomp_;
  auto run = std::make_shared<PayloadRun>();
  run->spawned = sandbox::spawn(sandbox, options);
  for (const auto& w : run->spawned.warnings) host_.event(role_.name + ": " + w);
  auto wrap = [this](sandbox::UniqueFd& fd) {
    return std::make_unique<asio::posix::stream_descriptor>(io_, fd.release());
  };
  run->out = wrap(run->spawned.stdout_fd);
  run->err = wrap(run->spawned.stderr_fd);
  run->status = wrap(run->spawned.status_fd);
  if (run->spawned.report_fd) run->report = wrap(run->spawned.report_fd);
  payload_ = run;
  read_output(run, Output::out);
  read_output(run, Output::err);
  read_status(run);
  if (run->report) read_report(run);
  return run->spawned.pid;
}

void RealSpawner::read_output(const std::shared_ptr<PayloadRun>& run, Output which) {
  auto& d = which == Output::out ? run->out : run->err;
  auto& buf = which == Output::out ? run->out_buf : run->err_buf;
  const auto stream = which == Output::out ? role_.out : role_.err;
  d->async_read_some(asio::buffer(buf), [this, run, which, &buf, stream](boost::system::error_code ec, std::size_t n) {
    if (ec == asio::error::operation_aborted) return;  // closed after drain() read the rest
    if (n > 0) logger_->feed(stream, std::string_view(buf.data(), n));
    if (ec) return logger_->end_of_stream(stream);
    read_output(run, which);
  });
}

void RealSpawner::read_status(const std::shared_ptr<PayloadRun>& run) {
  run->status->async_read_some(asio::buffer(run->status_buf), [this, run](boost::system::error_code ec, std::size_t n) {
    if (ec == asio::error::operation_aborted) return;
    try {
      if (n > 0) status_events(*run, run->parser.feed(std::string_view(run->status_buf.data(), n)));
      if (ec) return status_events(*run, run->parser.finish());
    } catch (const std::exception& e) {
      return host_.event(role_.name + ": bwrap status: " + e.what());
    }
    read_status(run);
  });
}

void RealSpawner::status_events(PayloadRun& run, const std::vector<sandbox::StatusEvent>& events) {
  for (const auto& e : events) {
    if (e.kind == sandbox::StatusEvent::Kind::child_pid) {
      if (!sandbox::adopt_sandbox_init(run.spawned, static_cast<pid_t>(e.value)))
        host_.event(role_.name + ": could not adopt the sandbox init, pid " + std::to_string(e.value));
    } else {
      run.exit_code = e.value;
    }
  }
}

void RealSpawner::read_report(const std::shared_ptr<PayloadRun>& run) {
  run->report->async_read_some(asio::buffer(run->report_buf), [this, run](boost::system::error_code ec, std::size_t n) {
    if (n > 0) feed_report(*run, std::string_view(run->report_buf.data(), n));
    if (!ec) read_report(run);
  });
}

// Only whole lines count: "reaped 2000" read as "reaped 20" + "00" would
// otherwise leave the total at the previous line's value.
void RealSpawner::feed_report(PayloadRun& run, std::string_view bytes) {
  run.report_partial.append(bytes);
  auto end = run.report_partial.rfind('\n');
  if (end == std::string::npos) {
    if (run.report_partial.size() > 64) run.report_partial.clear();  // not a report line
    return;
  }
  long total = sandbox::parse_init_report(std::string_view(run.report_partial).substr(0, end + 1));
  if (total > run.reaped_inside) run.reaped_inside = total;
  run.report_partial.erase(0, end + 1);
}

void RealSpawner::signal(int sig) {
  if (!payload_) return;
  if (!sandbox::signal_payload(payload_->spawned, sig) && sig != SIGKILL) {
    // The init is not adopted yet (bwrap still setting up): a SIGTERM would be
    // lost, so the stop goes straight to SIGKILL of the whole sandbox.
    sandbox::signal_payload(payload_->spawned, SIGKILL);
  }
}

void RealSpawner::reaped(int wait_status) {
  auto run = payload_;
  if (!run) return;
  drain(*run);
  auto how = sandbox::classify_exit(wait_status, run->exit_code);
  reaped_in_finished_ += run->reaped_inside;
  payload_.reset();
  if (how.setup_failed) {
    host_.event(role_.name + ": the sandbox failed before the " + role_.name + " ran (bwrap's message is in the log)");
    return (host_.*role_.exited)(125, 0);
  }
  (host_.*role_.exited)(how.code, how.signal);
}

// bwrap is gone: everything it and the payload wrote is buffered in the pipes.
// Read it synchronously (non-blocking fds) so no line and no record is lost.
void RealSpawner::drain(PayloadRun& run) {
  std::array<char, 4096> buf{};
  auto drain_one = [&buf](asio::posix::stream_descriptor& d, auto&& consume) {
    for (;;) {
      boost::system::error_code ec;
      std::size_t n = d.read_some(asio::buffer(buf), ec);
      if (n > 0) consume(std::string_view(buf.data(), n));
      if (ec) break;
    }
    d.close();
  };
  try {
    drain_one(*run.status, [&](std::string_view b) { status_events(run, run.parser.feed(b)); });
    status_events(run, run.parser.finish());
  } catch (const std::exception& e) {
    host_.event(role_.name + ": bwrap status: " + e.what());
  }
  drain_one(*run.out, [this](std::string_view b) { logger_->feed(role_.out, b); });
  logger_->end_of_stream(role_.out);
  drain_one(*run.err, [this](std::string_view b) { logger_->feed(role_.err, b); });
  logger_->end_of_stream(role_.err);
  if (run.report) {
    drain_one(*run.report, [&run](std::string_view b) { feed_report(run, b); });
  }
}

// ---- supervisor: hardware watchdog, probe, privileges -------------------------------
class RealHardwareWatchdog final : public HardwareWatchdogPort {
 public:
  int open(const std::string& device, int timeout_s) override { return hw_.open(device, timeout_s); }
  void pet() override { hw_.pet(); }
  void magic_close() override { hw_.magic_close(); }
  bool is_open() const override { return hw_.is_open(); }

 private:
  supervisor::HardwareWatchdog hw_;
};

class RealProber final : public ProberPort {
 public:
  void probe(asio::io_context& io, const supervisor::ProbeTarget& target, std::chrono::milliseconds timeout,
             Done done) override {
    supervisor::probe_once(io, target, timeout, std::move(done));
  }
};

class RealPrivileges final : public PrivilegesPort {
 public:
  std::string drop() override { return supervisor::drop_privileges(); }
};

Ports real_ports(asio::io_context& io, Host& host, const config::Config& cfg) {
  auto logger = std::make_shared<logs::Logger>(cfg.logs);  // the control socket reads what the payload writes
  Ports p;
  p.control = std::make_unique<RealControl>(io, host, logger);
  p.firewall = std::make_unique<RealFirewall>();
  p.gates = std::make_unique<RealGates>(host);
  p.spawner = std::make_unique<RealSpawner>(io, host, logger, payload_role);
  // Always made: a reload may turn the mux on.
  p.mux = std::make_unique<RealSpawner>(io, host, logger, mux_role);
  p.watchdog = std::make_unique<RealHardwareWatchdog>();
  p.prober = std::make_unique<RealProber>();
  p.privileges = std::make_unique<RealPrivileges>();
  p.attester = real_attester(io);
  return p;
}

}  // namespace
}  // namespace pisec::boot

namespace pisec::daemon {

int run(config::Config&& cfg) { return boot::run_daemon(std::move(cfg), boot::real_ports); }

}  // namespace pisec::daemon
