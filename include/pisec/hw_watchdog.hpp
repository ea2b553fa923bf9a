#pragma once
// Thin adapter over a Linux watchdog device (/dev/watchdog). The supervisor
// pets it only while its own loop is healthy; an orderly stop magic-closes it.
#include <string>

#include "pisec/util.hpp"

namespace pisec::supervisor {

class HardwareWatchdog {
 public:
  HardwareWatchdog() = default;
  ~HardwareWatchdog();
  HardwareWatchdog(const HardwareWatchdog&) = delete;
  HardwareWatchdog& operator=(const HardwareWatchdog&) = delete;

  // Opens the device and sets its timeout; returns the timeout the driver
  // accepted (it may round), or throws std::system_error naming the device.
  int open(const std::string& device, int timeout_s);
  void pet();
  // Writes the magic 'V' so the driver stops the timer, then closes.
  void magic_close();
  bool is_open() const { return static_cast<bool>(fd_); }

 private:
  util::UniqueFd fd_;
  std::string device_;
};

}  // namespace pisec::supervisor
