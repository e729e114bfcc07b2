#include "virtio/net/tap.h"

#include <fcntl.h>
#include <net/if.h>  // before linux/if_tun.h, which would pull in linux/if.h
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <climits>
#include <cstring>

#include "base/util/error.h"
#include "virtio/net/net_header.h"

namespace ember::virtio::net {

UniqueFd open_tap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) fail("tap device name '", name, "' must be 1 to 15 characters");
  // TUNSETIFF would create a missing device when ember has CAP_NET_ADMIN; a
  // misspelt name must be an error instead.
  if (::if_nametoindex(name.c_str()) == 0) {
    fail("tap device '", name, "' does not exist (create it first, e.g. `ip tuntap add dev ", name, " mode tap`)");
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) fail("cannot open /dev/net/tun for tap device '", name, "': ", errno_text());
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &request) < 0) {
    int err = errno;
    fail("cannot attach to tap device '", name, "': ", errno_text(err),
         err == EBUSY ? " (already in use by another process?)"
                      : err == EINVAL ? " (is it a tap device, not tun or something else?)" : "");
  }
  int header_size = static_cast<int>(kNetHeaderSize);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &header_size) < 0) {
    fail("tap device '", name, "': TUNSETVNETHDRSZ ", header_size, ": ", errno_text());
  }
  // A tap write waits only for send-buffer space: unlimited, it never waits, which lets the
  // event thread write small frames itself (NetDeviceOptions::tap_writes_never_block). A tap
  // opened fresh has this already; an existing persistent one keeps whatever TUNSETSNDBUF an
  // earlier user left.
  int unlimited = INT_MAX;
  if (::ioctl(fd.get(), TUNSETSNDBUF, &unlimited) < 0) {
    fail("tap device '", name, "': TUNSETSNDBUF: ", errno_text());
  }
  if (int err = set_tap_offloads(fd.get(), 0)) fail("tap device '", name, "': TUNSETOFFLOAD: ", errno_text(err));
  return fd;
}

int set_tap_offloads(int fd, unsigned flags) {
  return ::ioctl(fd, TUNSETOFFLOAD, flags) < 0 ? errno : 0;
}

}  // namespace ember::virtio::net
