// The real kernel side of the entropy gate: getrandom(2), RNDADDENTROPY,
// and the few /sys files that say whether the kernel feeds hw_random itself.
#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <system_error>

#include "pisec/gates/entropy.hpp"
#include "pisec/util.hpp"

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004  // Linux 5.6; older kernels answer EINVAL
#endif

namespace pisec::entropy {

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// First line of a small text file, trimmed; nullopt when it cannot be read.
std::optional<std::string> read_line(const std::string& path) {
  auto text = util::read_text_file(path);
  if (!text) return std::nullopt;
  std::string line = text->substr(0, text->find('\n'));
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\0' ||
                           line.back() == '\r' || line.back() == '\t'))
    line.pop_back();
  return line;
}

std::optional<int> read_int(const std::string& path) {
  auto line = read_line(path);
  if (!line || line->empty()) return std::nullopt;
  try {
    std::size_t used = 0;
    int v = std::stoi(*line, &used);
    if (used != line->size()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// struct rand_pool_info ends in a flexible array, which C++ lacks: a fixed
// buffer with the same leading layout (two ints, then the bytes).
struct PoolInfo {
  int entropy_count;
  int buf_size;
  std::uint8_t buf[fips_block_bytes];
};
static_assert(offsetof(PoolInfo, buf) == 2 * sizeof(int));

class RealEntropyAdapter final : public EntropyAdapter {
 public:
  bool getrandom_nonblock(std::span<std::uint8_t> out) override {
    std::uint8_t probe = 0;
    std::span<std::uint8_t> dst = out.empty() ? std::span<std::uint8_t>(&probe, 1) : out;
    std::size_t got = 0;
    while (got < dst.size()) {
      ssize_t n = ::getrandom(dst.data() + got, dst.size() - got, GRND_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return false;
      if (n < 0) throw_errno(errno, "getrandom");
      got += static_cast<std::size_t>(n);
    }
    return true;
  }

  void getrandom_insecure(std::span<std::uint8_t> out) override {
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::getrandom(out.data() + got, out.size() - got, GRND_INSECURE);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EINVAL) return read_urandom(out.subspan(got));
      if (n < 0) throw_errno(errno, "getrandom(GRND_INSECURE)");
      got += static_cast<std::size_t>(n);
    }
  }

  void wait_crng_ready() override {
    std::uint8_t byte = 0;
    while (::getrandom(&byte, 1, 0) < 0) {
      if (errno != EINTR) throw_errno(errno, "getrandom");
    }
  }

  void add_entropy(std::span<const std::uint8_t> bytes, int credit_bits) override {
    if (bytes.size() > fips_block_bytes)
      throw std::invalid_argument("add_entropy: more than 2500 bytes at once");
    int fd = ::open("/dev/random", O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "open /dev/random");
    int rc = 0;
    int err = 0;
    if (credit_bits <= 0) {
      // A plain write mixes without crediting and needs no capability.
      std::size_t done = 0;
      while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          rc = -1;
          err = errno;
          break;
        }
        done += static_cast<std::size_t>(n);
      }
    } else {
      PoolInfo info{};
      info.entropy_count = credit_bits;
      info.buf_size = static_cast<int>(bytes.size());
      std::memcpy(info.buf, bytes.data(), bytes.size());
      rc = ::ioctl(fd, RNDADDENTROPY, &info);
      err = errno;
      ::explicit_bzero(info.buf, sizeof info.buf);
    }
    ::close(fd);
    if (rc != 0)
      throw_errno(err, credit_bits > 0 ? "RNDADDENTROPY on /dev/random (needs CAP_SYS_ADMIN)"
                                       : "write /dev/random");
  }

  std::string machine_id() override {
    // The Pi's SoC serial: burnt into the chip, not copied with the SD card.
    if (auto s = read_line("/sys/firmware/devicetree/base/serial-number"); s && !s->empty()) return *s;
    std::string serial;
    text::for_each_line(util::read_text_file("/proc/cpuinfo").value_or(""), [&](std::string_view line) {
      auto colon = line.find(':');
      if (!serial.empty() || !line.starts_with("Serial") || colon == std::string_view::npos) return;
      auto value = line.substr(colon + 1);
      value.remove_prefix(std::min(value.size(), value.find_first_not_of(" \t")));
      if (!value.empty() && value.find_first_not_of('0') != std::string_view::npos) serial = value;
    });
    if (!serial.empty()) return serial;
    // Hosts and VMs: the firmware UUID (root-only readable). /etc/machine-id is
    // not used: on Alpine diskless it travels inside the cloned .apkovl.
    if (auto s = read_line("/sys/class/dmi/id/product_uuid"); s && !s->empty()) return *s;
    return {};
  }

 private:
  static void read_urandom(std::span<std::uint8_t> out) {
    int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "open /dev/urandom");
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fd, out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int e = n < 0 ? errno : EIO;
        ::close(fd);
        throw_errno(e, "read /dev/urandom");
      }
      got += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
};

class NoCreditAdapter final : public EntropyAdapter {
 public:
  explicit NoCreditAdapter(std::shared_ptr<EntropyAdapter> inner) : inner_(std::move(inner)) {}
  bool getrandom_nonblock(std::span<std::uint8_t> out) override { return inner_->getrandom_nonblock(out); }
  void getrandom_insecure(std::span<std::uint8_t> out) override { inner_->getrandom_insecure(out); }
  void wait_crng_ready() override { inner_->wait_crng_ready(); }
  void add_entropy(std::span<const std::uint8_t> bytes, int) override { inner_->add_entropy(bytes, 0); }
  std::string machine_id() override { return inner_->machine_id(); }

 private:
  std::shared_ptr<EntropyAdapter> inner_;
};

}  // namespace

std::shared_ptr<EntropyAdapter> make_real_entropy_adapter() {
  return std::make_shared<RealEntropyAdapter>();
}

std::shared_ptr<EntropyAdapter> make_no_credit_adapter(std::shared_ptr<EntropyAdapter> inner) {
  return std::make_shared<NoCreditAdapter>(std::move(inner));
}

KernelHwrngFeed detect_kernel_hwrng_feed(const std::string& sysfs_root) {
  KernelHwrngFeed f;
  auto current = read_line(sysfs_root + "/class/misc/hw_random/rng_current");
  if (!current || current->empty() || *current == "none") return f;
  f.rng = *current;
  // rng_quality (Linux 5.19+) is the current device's effective quality;
  // older kernels only have the module-wide default.
  auto quality = read_int(sysfs_root + "/class/misc/hw_random/rng_quality");
  if (!quality) quality = read_int(sysfs_root + "/module/rng_core/parameters/default_quality");
  f.quality = quality.value_or(0);
  f.feeds = f.quality > 0;
  return f;
}

bool is_kernel_hwrng_device(const std::string& path) {
  if (path == "/dev/hwrng") return true;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) return false;
  return major(st.st_rdev) == 10 && minor(st.st_rdev) == 183;  // misc "hw_random"
}

}  // namespace pisec::entropy
