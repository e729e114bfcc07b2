// Forwards host stdin to the guest's serial port on its own thread, with the
// terminal in raw mode (restored on destruction) when stdin is a terminal.
#pragma once

#include <termios.h>

#include <thread>

#include "base/util/unique_fd.h"
#include "vmm/devices/serial.h"

namespace ember {

class StdinForwarder {
 public:
  // Does nothing unless stdin is a terminal or a pipe.
  explicit StdinForwarder(Serial& serial);
  ~StdinForwarder();
  StdinForwarder(const StdinForwarder&) = delete;
  StdinForwarder& operator=(const StdinForwarder&) = delete;

 private:
  void run();
  Serial& serial_;
  UniqueFd stop_;
  std::thread thread_;
  bool restore_terminal_ = false;
  termios saved_{};
};

}  // namespace ember
