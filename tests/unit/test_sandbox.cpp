#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <fcntl.h>

#include "pisec/sandbox.hpp"

using namespace pisec;
using sandbox::build_bwrap_argv;
using Args = std::vector<std::string>;

namespace {

sandbox::SandboxEnv test_env() {
  sandbox::SandboxEnv env;
  env.bwrap_path = "/usr/bin/bwrap";
  env.init_host_path = "/usr/sbin/pisecd";
  env.seccomp_fd = 3;
  env.json_status_fd = 4;
  return env;
}

// The flags every sandbox gets, before the environment.
const Args common_head = {"/usr/bin/bwrap", "--unshare-user", "--uid", "65534", "--gid",
                          "65534", "--disable-userns", "--unshare-pid", "--unshare-ipc",
                          "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
                          "--new-session", "--cap-drop", "ALL", "--as-pid-1", "--clearenv"};

Args concat(std::initializer_list<Args> parts) {
  Args out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("bwrap argv for read-only binds, line by line", "[sandbox]") {
  config::Payload p;
  p.command = {"/srv/app/app", "--listen", ":8080"};
  p.ro_binds = {"/usr", "/lib", "/srv/app"};
  p.env = {{"LANG", "C.UTF-8"}};
  Args want = concat({common_head,
                      {"--setenv", "LANG", "C.UTF-8"},
                      {"--setenv", "PATH", sandbox::default_path_env},
                      {"--hostname", "payload"},
                      {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"},
                      {"--ro-bind", "/usr", "/usr"},
                      {"--ro-bind", "/lib", "/lib"},
                      {"--ro-bind", "/srv/app", "/srv/app"},
                      {"--ro-bind", "/usr/sbin/pisecd", "/dev/.pisec/init"},
                      {"--remount-ro", "/"},
                      {"--seccomp", "3", "--json-status-fd", "4", "--chdir", "/"},
                      {"--", "/dev/.pisec/init", "init", "--grace-ms", "1000", "--"},
                      {"/srv/app/app", "--listen", ":8080"}});
  CHECK(build_bwrap_argv(p, test_env()) == want);
}

TEST_CASE("bwrap argv for a payload rootfs with writable paths", "[sandbox]") {
  config::Payload p;
  p.command = {"/app"};
  p.rootfs = "/srv/rootfs";
  p.rw_paths = {"/var/lib/app", "/run/app"};
  p.uid = 1000;
  p.gid = 1001;
  p.env = {{"PATH", "/bin"}, {"A", "1"}};
  p.hostname = "web";
  p.cwd = "/var/lib/app";
  auto env = test_env();
  env.require_cgroup_namespace = true;
  env.disable_userns = false;
  Args head = common_head;
  head[3] = "1000";
  head[5] = "1001";
  head.erase(head.begin() + 6);  // no --disable-userns
  std::replace(head.begin(), head.end(), std::string("--unshare-cgroup-try"),
               std::string("--unshare-cgroup"));
  Args want = concat({head,
                      {"--setenv", "A", "1", "--setenv", "PATH", "/bin"},  // no default PATH
                      {"--hostname", "web"},
                      {"--ro-bind", "/srv/rootfs", "/"},
                      {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"},
                      {"--bind", "/var/lib/app", "/var/lib/app", "--bind", "/run/app", "/run/app"},
                      {"--ro-bind", "/usr/sbin/pisecd", "/dev/.pisec/init"},
                      // the rootfs bind is read-only already: no --remount-ro
                      {"--seccomp", "3", "--json-status-fd", "4", "--chdir", "/var/lib/app"},
                      {"--", "/dev/.pisec/init", "init", "--grace-ms", "1000", "--", "/app"}});
  CHECK(build_bwrap_argv(p, env) == want);
}

TEST_CASE("bwrap argv never shares-nothing the network, never runs bwrap's reaper", "[sandbox]") {
  config::Payload p;
  p.command = {"/app"};
  auto argv = build_bwrap_argv(p, test_env());
  auto has = [&argv](const std::string& f) {
    return std::find(argv.begin(), argv.end(), f) != argv.end();
  };
  CHECK_FALSE(has("--unshare-net"));
  CHECK_FALSE(has("--unshare-all"));
  CHECK(has("--as-pid-1"));
  CHECK(has("--die-with-parent"));
}

TEST_CASE("bwrap argv for tini and for an init path", "[sandbox]") {
  config::Payload p;
  p.command = {"/app", "x"};
  p.init = "tini";
  auto argv = build_bwrap_argv(p, test_env());
  auto tail = Args(argv.end() - 6, argv.end());
  CHECK(tail == Args{"--", "/dev/.pisec/init", "-g", "--", "/app", "x"});

  p.init = "/sbin/my-init";
  argv = build_bwrap_argv(p, test_env());
  CHECK(Args(argv.end() - 5, argv.end()) == Args{"--", "/sbin/my-init", "--", "/app", "x"});
  // A path init is not bound in: it must be inside the sandbox already.
  CHECK(std::find(argv.begin(), argv.end(), "/dev/.pisec/init") == argv.end());
}

TEST_CASE("seccomp plan denies the built-in list on this architecture", "[sandbox]") {
  auto plan = sandbox::plan_seccomp({});
  auto denied = [&plan](const char* name) {
    return std::find(plan.denied_names.begin(), plan.denied_names.end(), name) !=
           plan.denied_names.end();
  };
  for (const char* name : {"mount", "umount2", "pivot_root", "ptrace", "unshare", "setns",
                           "clock_settime", "settimeofday", "kexec_load", "init_module", "bpf",
                           "perf_event_open", "keyctl", "open_by_handle_at", "io_uring_setup",
                           "reboot", "swapon", "userfaultfd"})
    CHECK(denied(name));
  CHECK(plan.warnings.empty());
  CHECK(plan.denied_names.size() == plan.denied_syscalls.size());
  // Each denied number is the real syscall of that name here.
  for (std::size_t i = 0; i < plan.denied_names.size(); ++i)
    CHECK(seccomp_syscall_resolve_name(plan.denied_names[i].c_str()) == plan.denied_syscalls[i]);
  // Time64 twins exist only on 32-bit ARM: denied there, absent elsewhere.
  bool has64 = seccomp_syscall_resolve_name("clock_settime64") >= 0;
  CHECK(denied("clock_settime64") == has64);
}

TEST_CASE("seccomp plan: user names, unknown names, other-arch names", "[sandbox]") {
  auto plan = sandbox::plan_seccomp({"chmod", "ptrace"});  // duplicate of a built-in: once
  CHECK(std::count(plan.denied_names.begin(), plan.denied_names.end(), "chmod") == 1);
  CHECK(std::count(plan.denied_names.begin(), plan.denied_names.end(), "ptrace") == 1);

  CHECK_THROWS_WITH(sandbox::plan_seccomp({"no_such_syscall"}),
                    Catch::Contains("no_such_syscall") && Catch::Contains("unknown"));

  // A name libseccomp knows but this architecture lacks: skipped, warned.
  const char* foreign = seccomp_syscall_resolve_name("clock_settime64") >= 0 ? "arch_prctl"
                                                                              : "clock_settime64";
  if (seccomp_syscall_resolve_name(foreign) < 0) {
    auto p2 = sandbox::plan_seccomp({foreign});
    REQUIRE(p2.warnings.size() == 1);
    CHECK_THAT(p2.warnings[0], Catch::Contains(foreign));
  }
}

TEST_CASE("seccomp program compiles to classic BPF", "[sandbox]") {
  auto bpf = sandbox::compile_seccomp_bpf(sandbox::plan_seccomp({"chmod"}));
  // struct sock_filter is 8 bytes; the deny list needs dozens of instructions.
  CHECK(bpf.size() % 8 == 0);
  CHECK(bpf.size() > 8 * 40);
}

TEST_CASE("a compiled seccomp program names the deny list it was made for", "[sandbox]") {
  const std::vector<std::string> deny = {"chmod", "fchmodat"};
  auto program = sandbox::compile_seccomp_program(deny);
  CHECK(program.deny == deny);
  CHECK(program.bpf == sandbox::compile_seccomp_bpf(sandbox::plan_seccomp(deny)));
  CHECK(program.bpf != sandbox::compile_seccomp_program({"chmod"}).bpf);
  // The built-in list: every name libseccomp knows, and the shocker escape in it.
  auto builtin = sandbox::builtin_seccomp_denies();
  CHECK(builtin.size() > 40);
  for (const char* name : builtin) CHECK(sandbox::seccomp_name_error(name).empty());
  CHECK(std::find_if(builtin.begin(), builtin.end(), [](const char* n) {
          return std::string_view(n) == "open_by_handle_at";
        }) != builtin.end());
  CHECK_THROWS_AS(sandbox::compile_seccomp_program({"no_such_syscall"}), sandbox::SeccompError);
}

namespace {
// What a child under the compiled filter sees; bit set = as expected.
enum : int {
  unshare_denied = 1,      // unshare(0): a no-op unfiltered, EPERM filtered
  settime_denied = 2,      // clock_settime(-1): EINVAL unfiltered (never sets a clock), EPERM filtered
  extra_denied = 4,        // the user's seccomp_deny entry (chmod)
  getpid_works = 8,
  write_works = 16,
  filter_refused = 64,     // the kernel (or qemu-user) would not install it
};

int run_under_filter(const std::vector<std::uint8_t>& bpf, const std::string& file) {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(bpf.size() / sizeof(sock_filter));
  std::vector<sock_filter> insns(prog.len);
  std::memcpy(insns.data(), bpf.data(), bpf.size());
  prog.filter = insns.data();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return filter_refused;
  int r = 0;
  if (syscall(SYS_unshare, 0) == -1 && errno == EPERM) r |= unshare_denied;
  timespec ts{};
  if (clock_settime(static_cast<clockid_t>(-1), &ts) == -1 && errno == EPERM) r |= settime_denied;
  if (syscall(SYS_fchmodat, AT_FDCWD, file.c_str(), 0600, 0) == -1 && errno == EPERM) r |= extra_denied;
  if (syscall(SYS_getpid) > 0) r |= getpid_works;
  int fds[2];
  if (pipe(fds) == 0 && write(fds[1], "x", 1) == 1) r |= write_works;
  return r;
}
}  // namespace

TEST_CASE("the compiled filter denies what it lists and allows the rest, in a real process", "[sandbox]") {
  char path[] = "/tmp/pisec-seccomp-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  auto bpf = sandbox::compile_seccomp_bpf(sandbox::plan_seccomp({"fchmodat"}));
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(run_under_filter(bpf, path));
  int st = 0;
  REQUIRE(waitpid(child, &st, 0) == child);
  unlink(path);
  REQUIRE(WIFEXITED(st));
  const int r = WEXITSTATUS(st);
#if defined(__x86_64__) || defined(__aarch64__)
  REQUIRE(r != filter_refused);  // native: seccomp filters must install
#else
  if (r == filter_refused) {
    WARN("seccomp filters cannot be installed here (qemu-user refuses PR_SET_SECCOMP)");
    return;
  }
#endif
  CHECK((r & unshare_denied) != 0);
  CHECK((r & settime_denied) != 0);
  CHECK((r & extra_denied) != 0);
  CHECK((r & getpid_works) != 0);
  CHECK((r & write_works) != 0);
}

TEST_CASE("status fd parser: records, split reads, exit-code", "[sandbox]") {
  sandbox::StatusFdParser parser;
  auto e1 = parser.feed("{ \"child-pid\": 9627, \"mnt-namespace\": 4026532316 }\n{ \"exit");
  REQUIRE(e1.size() == 1);
  CHECK(e1[0].kind == sandbox::StatusEvent::Kind::child_pid);
  CHECK(e1[0].value == 9627);
  auto e2 = parser.feed("-code\": 143 }\n");
  REQUIRE(e2.size() == 1);
  CHECK(e2[0].kind == sandbox::StatusEvent::Kind::exit_code);
  CHECK(e2[0].value == 143);
  CHECK(parser.finish().empty());

  sandbox::StatusFdParser unterminated;
  CHECK(unterminated.feed("{ \"exit-code\": 0 }").empty());
  auto last = unterminated.finish();
  REQUIRE(last.size() == 1);
  CHECK(last[0].value == 0);

  sandbox::StatusFdParser bad;
  CHECK_THROWS_WITH(bad.feed("not json\n"), Catch::Contains("not json"));
}

TEST_CASE("classify_exit tells bwrap's failures from the payload's codes", "[sandbox]") {
  auto exited = [](int code) { return code << 8; };  // a wait status for exit(code)
  auto e = sandbox::classify_exit(exited(1), std::nullopt);  // "Can't find source path"
  CHECK(e.setup_failed);
  e = sandbox::classify_exit(exited(1), 1L);  // the payload's own exit(1)
  CHECK_FALSE(e.setup_failed);
  CHECK(e.code == 1);
  CHECK(e.signal == 0);
  e = sandbox::classify_exit(exited(137), 137L);  // init SIGKILLed
  CHECK(e.signal == SIGKILL);
  e = sandbox::classify_exit(SIGKILL, std::nullopt);  // bwrap itself killed
  CHECK(e.setup_failed);
  CHECK(e.signal == SIGKILL);
}

TEST_CASE("init exit status and forwarded signals", "[sandbox]") {
  CHECK(sandbox::exit_status_for(3 << 8) == 3);
  CHECK(sandbox::exit_status_for(SIGTERM) == 128 + SIGTERM);
  const auto& f = sandbox::init_forwarded_signals();
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT})
    CHECK(std::find(f.begin(), f.end(), sig) != f.end());
  CHECK(std::find(f.begin(), f.end(), SIGCHLD) == f.end());
}

TEST_CASE("init forwards SIGTERM and exits with the child's status (not PID 1)", "[sandbox]") {
  // Runs the real init in a child process of the test: subreaper mode.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = sandbox::run_init({200, -1, {"/bin/sh", "-c", "kill -TERM $PPID; sleep 5"}});
    _exit(rc);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  // sh sent SIGTERM to init, init forwarded it to sh's group: sh died of it.
  CHECK(WEXITSTATUS(status) == 128 + SIGTERM);
}

TEST_CASE("the builtin init gets the orphan-report fd; reports are cumulative", "[sandbox]") {
  config::Payload p;
  p.command = {"/app"};
  auto env = test_env();
  env.init_report_fd = 6;
  Args argv = build_bwrap_argv(p, env);
  auto init = std::find(argv.begin(), argv.end(), "/dev/.pisec/init");
  init = std::find(init + 1, argv.end(), "/dev/.pisec/init");  // the exec'd one, after "--"
  REQUIRE(init != argv.end());
  CHECK(Args(init, argv.end()) ==
        Args{"/dev/.pisec/init", "init", "--grace-ms", "1000", "--report-fd", "6", "--", "/app"});
  p.init = "tini";
  Args tini = build_bwrap_argv(p, env);
  CHECK(std::find(tini.begin(), tini.end(), "--report-fd") == tini.end());

  CHECK(sandbox::parse_init_report("") == -1);
  CHECK(sandbox::parse_init_report("reaped 1\nreaped 2\n") == 2);
  CHECK(sandbox::parse_init_report("reaped 7\nreap") == 7);  // a torn last line is ignored
  CHECK(sandbox::parse_init_report("garbage reaped x\n") == -1);
}

TEST_CASE("binds go on top of the fresh /tmp, parents before children", "[sandbox]") {
  config::Payload p;
  p.command = {"/tmp/boot/app"};
  p.ro_binds = {"/tmp/boot/app-data", "/usr", "/tmp/boot"};
  Args argv = build_bwrap_argv(p, test_env());
  auto at = [&argv](const std::string& w) { return std::find(argv.begin(), argv.end(), w) - argv.begin(); };
  CHECK(at("--tmpfs") < at("/tmp/boot"));
  CHECK(at("/usr") < at("/tmp/boot"));
  CHECK(at("/tmp/boot") < at("/tmp/boot/app-data"));
}

TEST_CASE("max_memory: the cgroup2 mount and the daemon's own cgroup are read from /proc", "[sandbox]") {
  using pisec::sandbox::cgroup2_mount_point;
  using pisec::sandbox::cgroup2_own_path;
  // A hybrid host: v1 controllers, and a v2 hierarchy at .../unified.
  const std::string hybrid =
      "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
      "35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:7 - cgroup2 cgroup2 rw\n";
  CHECK(cgroup2_mount_point(hybrid) == "/sys/fs/cgroup/unified");
  CHECK(cgroup2_mount_point("36 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n") == "/sys/fs/cgroup");
  // A bind of a subtree is not the hierarchy's root: not used.
  CHECK_FALSE(cgroup2_mount_point("40 25 0:30 /sub /mnt/cg rw - cgroup2 cgroup2 rw\n").has_value());
  CHECK_FALSE(cgroup2_mount_point(hybrid.substr(0, hybrid.rfind("31 30"))).has_value());

  CHECK(cgroup2_own_path("4:memory:/x\n0::/pisecd\n") == "/pisecd");
  CHECK(cgroup2_own_path("0::/\n") == "/");
  CHECK_FALSE(cgroup2_own_path("4:memory:/x\n1:name=systemd:/\n").has_value());
}

TEST_CASE("max_memory: the cgroup path when memory is offered, RLIMIT_AS with the reason otherwise", "[sandbox]") {
  // A fake cgroupfs in a temp dir: the decisions and the files written, not the kernel.
  char tmpl[] = "/tmp/pisec-cgroup-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string root = tmpl;
  auto put = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  auto get = [](const std::string& path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
  };
  REQUIRE(::mkdir((root + "/fs").c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/fs/svc").c_str(), 0755) == 0);
  put(root + "/mountinfo", "31 30 0:27 / " + root + "/fs rw - cgroup2 cgroup2 rw\n");
  put(root + "/cgroup", "0::/svc\n");
  const sandbox::CgroupProcFiles proc{root + "/mountinfo", root + "/cgroup"};

  put(root + "/fs/svc/cgroup.controllers", "hugetlb\n");
  auto m = sandbox::prepare_memory_limit(64ULL << 20, "pisecd-payload", proc);
  CHECK(m.kind == sandbox::MemoryLimit::Kind::rlimit_as);
  CHECK(m.note == "max_memory 64 MiB: enforced by RLIMIT_AS (no cgroup v2 memory.max: " + root +
                      "/fs/svc is offered no memory controller (cgroup.controllers: \"hugetlb\"))");

  put(root + "/fs/svc/cgroup.controllers", "cpu memory pids\n");
  put(root + "/fs/svc/cgroup.subtree_control", "memory\n");
  // The kernel makes these files with the directory; here they are made first.
  REQUIRE(::mkdir((root + "/fs/svc/pisecd-payload").c_str(), 0755) == 0);
  for (const char* f : {"memory.max", "memory.swap.max", "memory.oom.group", "cgroup.procs"})
    put(root + "/fs/svc/pisecd-payload/" + f, "");
  m = sandbox::prepare_memory_limit(64ULL << 20, "pisecd-payload", proc);
  CHECK(m.kind == sandbox::MemoryLimit::Kind::cgroup);
  CHECK(m.group == root + "/fs/svc/pisecd-payload");
  CHECK(m.note == "max_memory 64 MiB: enforced by cgroup v2 memory.max in " + root + "/fs/svc/pisecd-payload");
  CHECK(static_cast<bool>(m.procs_fd));
  CHECK(get(root + "/fs/svc/pisecd-payload/memory.max") == std::to_string(64ULL << 20));
  CHECK(get(root + "/fs/svc/pisecd-payload/memory.swap.max") == "0");
  CHECK(get(root + "/fs/svc/pisecd-payload/memory.oom.group") == "1");

  CHECK(sandbox::prepare_memory_limit(0, "pisecd-payload", proc).kind == sandbox::MemoryLimit::Kind::none);
  put(root + "/cgroup", "4:memory:/x\n");
  CHECK(sandbox::prepare_memory_limit(64ULL << 20, "pisecd-payload", proc).note ==
        "max_memory 64 MiB: enforced by RLIMIT_AS (no cgroup v2 memory.max: this process is in no cgroup v2 group)");
  std::filesystem::remove_all(root);
}
