#include "pisec/hw_watchdog.hpp"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace pisec::supervisor {

HardwareWatchdog::~HardwareWatchdog() {
  // Closing without the magic character leaves the timer running: if the
  // daemon dies, the board reboots. That is the point.
  if (fd_ >= 0) ::close(fd_);
}

int HardwareWatchdog::open(const std::string& device, int timeout_s) {
  device_ = device;
  fd_ = ::open(device.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + device);
  int t = timeout_s;
  if (::ioctl(fd_, WDIOC_SETTIMEOUT, &t) != 0) {
    // Some drivers have a fixed timeout; read what it is instead.
    if (::ioctl(fd_, WDIOC_GETTIMEOUT, &t) != 0) t = timeout_s;
  }
  pet();
  return t;
}

void HardwareWatchdog::pet() {
  if (fd_ < 0) return;
  if (::ioctl(fd_, WDIOC_KEEPALIVE, 0) != 0) {
    // Not every driver has the ioctl; any write pets.
    [[maybe_unused]] auto n = ::write(fd_, "\0", 1);
  }
}

void HardwareWatchdog::magic_close() {
  if (fd_ < 0) return;
  [[maybe_unused]] auto n = ::write(fd_, "V", 1);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace pisec::supervisor
