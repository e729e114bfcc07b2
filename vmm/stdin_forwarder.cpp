#include "vmm/stdin_forwarder.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util/eventfd.h"
#include "base/util/log.h"
#include "base/util/thread.h"

namespace ember {

StdinForwarder::StdinForwarder(Serial& serial) : serial_(serial) {
  struct stat st{};
  if (::fstat(STDIN_FILENO, &st) < 0) return;
  bool tty = ::isatty(STDIN_FILENO);
  if (!tty && !S_ISFIFO(st.st_mode)) return;
  if (tty && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
    termios raw = saved_;
    // Raw input for the guest, but keep ISIG so Ctrl-C still stops ember.
    raw.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) restore_terminal_ = true;
  }
  stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_.valid()) return;
  thread_ = start_thread(ThreadRole::Stdin, "ember-stdin", [this] { run(); });
}

StdinForwarder::~StdinForwarder() {
  if (thread_.joinable()) {
    signal_eventfd(stop_.get());
    thread_.join();
  }
  if (restore_terminal_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

void StdinForwarder::run() {
  uint8_t buf[256];
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EOF or error: stop forwarding, the guest keeps running
    size_t taken = serial_.enqueue_input(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    if (taken < static_cast<size_t>(n)) log::warn("serial input overrun: guest is not reading its console");
  }
}

}  // namespace ember
