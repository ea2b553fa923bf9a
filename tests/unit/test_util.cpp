#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <string>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sys/stat.h>
#include <cstdint>
#include <alloca.h>
#include <algorithm>
#include <sys/mman.h>
#include <cerrno>
#include <csignal>
#include <unistd.h>

#include "pisec/util.hpp"

using namespace pisec;

namespace {
const std::string fffd = "\xEF\xBF\xBD";
// What nlohmann's replacing serialiser makes of a string (the JSON boundary).
std::string via_json(const std::string& s) {
  return nlohmann::json::parse(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}
}  // namespace

TEST_CASE("valid_utf8: each ill-formed subpart becomes one U+FFFD, as the JSON writer does", "[util][utf8]") {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"plain ascii", "plain ascii"},
      {"caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80"},  // kept
      {"a\xff" "b", "a" + fffd + "b"},
      {"lone \x80 cont", "lone " + fffd + " cont"},
      {"overlong \xc0\xaf", "overlong " + fffd + fffd},
      {"overlong3 \xe0\x80\xaf", "overlong3 " + fffd + fffd + fffd},
      {"surrogate \xed\xa0\x80", "surrogate " + fffd + fffd + fffd},
      {"too big \xf4\x90\x80\x80", "too big " + fffd + fffd + fffd + fffd},
      {"cut \xf0\x9f\x98 end", "cut " + fffd + " end"},
      {"cut at end \xf0\x9f\x98", "cut at end " + fffd},
      {"cut then lead \xe2\x80\xc3\xa9", "cut then lead " + fffd + "\xc3\xa9"},
      {std::string("nul\0in", 6), std::string("nul\0in", 6)},
  };
  for (const auto& c : cases) {
    INFO(c.in);
    CHECK(text::valid_utf8(c.in) == c.out);
    CHECK(via_json(c.in) == c.out);
  }
}

TEST_CASE("printable: controls become '?', tab stays, text and U+FFFD otherwise as valid_utf8", "[util][utf8]") {
  CHECK(text::printable("a\tb") == "a\tb");
  CHECK(text::printable("\x1b]0;pwned\x07") == "?]0;pwned?");
  CHECK(text::printable("\x1b[2J\r\n") == "?[2J??");
  CHECK(text::printable(std::string("\0\x7f", 2)) == "??");
  CHECK(text::printable("c1 \xc2\x9b" "2J \xc2\x9d" "0;x \xc2\x85") == "c1 ?2J ?0;x ?");
  CHECK(text::printable("nbsp \xc2\xa0 ok") == "nbsp \xc2\xa0 ok");  // U+00A0 is not a control
  CHECK(text::printable("raw csi \x9b" "2J") == "raw csi " + fffd + "2J");
  CHECK(text::printable("caf\xc3\xa9 \xff") == "caf\xc3\xa9 " + fffd);
}

TEST_CASE("UTC without 32-bit time_t: past 2038, before 1970, with milliseconds", "[util]") {
  CHECK(pisec::util::format_utc(2214172799) == "2040-02-29T23:59:59Z");
  CHECK(pisec::util::format_utc(2214172799, false) == "2040-02-29 23:59:59 UTC");
  CHECK(pisec::util::format_utc_ms(2214172799123) == "2040-02-29T23:59:59.123Z");
  CHECK(pisec::util::format_utc_ms(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(pisec::util::parse_utc("2040-02-29T23:59:59Z") == 2214172799);
}

TEST_CASE("write_file_atomic replaces the file, never what a symlink points to", "[util]") {
  char tmpl[] = "/tmp/pisec-util-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string victim = dir + "/victim", path = dir + "/state";
  std::ofstream(victim) << "keep me";
  REQUIRE(::symlink(victim.c_str(), path.c_str()) == 0);
  pisec::util::write_file_atomic(path, "1795341600\n", 0600);
  std::ifstream in(path), v(victim);
  std::string got((std::istreambuf_iterator<char>(in)), {}), kept((std::istreambuf_iterator<char>(v)), {});
  CHECK(got == "1795341600\n");
  CHECK(kept == "keep me");
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_THROWS_WITH(pisec::util::write_file_atomic(dir + "/missing/x", "", 0600),
                    Catch::Contains("missing/x: cannot open its directory"));
  std::filesystem::remove_all(dir);
}

namespace {
// Writes `kib` KiB of this thread's stack, one frame per KiB (alloca: on the
// real stack even where ASan moves locals to its fake stack); 1 when every
// frame still held what it wrote once the deeper ones returned.
[[gnu::noinline]] int touch_stack(int kib) {
  auto* block = static_cast<volatile char*>(alloca(1024));
  for (int i = 0; i < 1024; ++i) block[i] = static_cast<char>(kib);
  const int deeper = kib <= 1 ? 1 : touch_stack(kib - 1);
  return deeper == 1 && block[7] == static_cast<char>(kib) && block[1000] == static_cast<char>(kib) ? 1 : 0;
}
}  // namespace

TEST_CASE("release_unused_stack gives the pages of deep frames back and the stack still works", "[util][memory]") {
  REQUIRE(touch_stack(512) == 1);
  // Pages 64 to 448 KiB below this frame: written just now, unused again.
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  const std::uintptr_t lo = (here - 448 * 1024) & ~(page - 1), hi = (here - 64 * 1024) & ~(page - 1);
  const std::size_t pages = (hi - lo) / page;
  auto resident = [&] {
    std::vector<unsigned char> v(pages);
    REQUIRE(mincore(reinterpret_cast<void*>(lo), hi - lo, v.data()) == 0);
    return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [](unsigned char c) { return (c & 1) != 0; }));
  };
  CHECK(resident() == pages);
  const std::size_t released = util::release_unused_stack();
  CHECK(released >= 448 * 1024);
  CHECK(resident() == 0);
  // The released pages read as zeros and are faulted in again on use.
  CHECK(touch_stack(512) == 1);
  CHECK(resident() == pages);
}

TEST_CASE("write_all writes everything or says why", "[util]") {
  int p[2];
  REQUIRE(pipe(p) == 0);
  const std::string big(40000, 'x');
  CHECK(util::write_all(p[1], "hello"));
  char buf[8] = {};
  CHECK(read(p[0], buf, sizeof buf) == 5);
  CHECK(std::string(buf, 5) == "hello");
  close(p[0]);
  signal(SIGPIPE, SIG_IGN);
  errno = 0;
  CHECK_FALSE(util::write_all(p[1], big));
  CHECK(errno == EPIPE);
  close(p[1]);
  CHECK_FALSE(util::write_all(-1, "x"));
  CHECK(errno == EBADF);
}
