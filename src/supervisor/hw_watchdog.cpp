#include "pisec/supervisor.hpp"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace pisec::supervisor {

// fd_ closes itself without the magic character, which leaves the timer
// running: if the daemon dies, the board reboots. That is the point.
HardwareWatchdog::~HardwareWatchdog() = default;

int HardwareWatchdog::open(const std::string& device, int timeout_s) {
  device_ = device;
  fd_.reset(::open(device.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd_) throw std::system_error(errno, std::generic_category(), "open " + device);
  int t = timeout_s;
  if (::ioctl(fd_.get(), WDIOC_SETTIMEOUT, &t) != 0) {
    // Some drivers have a fixed timeout; read what it is instead.
    if (::ioctl(fd_.get(), WDIOC_GETTIMEOUT, &t) != 0) t = timeout_s;
  }
  pet();
  return t;
}

void HardwareWatchdog::pet() {
  if (!fd_) return;
  if (::ioctl(fd_.get(), WDIOC_KEEPALIVE, 0) != 0) {
    // Not every driver has the ioctl; any write pets.
    [[maybe_unused]] auto n = ::write(fd_.get(), "\0", 1);
  }
}

void HardwareWatchdog::magic_close() {
  if (!fd_) return;
  [[maybe_unused]] auto n = ::write(fd_.get(), "V", 1);
  fd_.reset();
}

}  // namespace pisec::supervisor
