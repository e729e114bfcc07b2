// A function VM's network: its own network namespace (a file under STATE/netns the jailer
// joins), holding the tap ember opens ("tap0", owned by the VM's uid) bridged to one end of a
// veth pair whose other end ("efaas<slot>") is in the host's namespace with the VM's gateway
// address. Every VM's guest sees the same tap name and MAC, so clones restored from one
// snapshot need no network override; each is on its own link, and the agent gives the guest
// its slot's address after every start.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ember::faas {

// The name every VM's tap has inside its namespace.
inline constexpr const char* kVmTapName = "tap0";

// Slot s owns the /30 at 10.200.0.0 + 4s: the host end is .1 of it, the guest .2.
struct SlotAddresses {
  uint32_t network, host, guest;
  uint32_t prefix_len = 30;
};
inline constexpr uint32_t kNetworkSlots = 16384;  // 10.200.0.0/16
SlotAddresses slot_addresses(uint32_t slot);
std::string ipv4_text(uint32_t address);
// The host end's link name and (locally administered, fixed per slot) MAC.
std::string host_link_name(uint32_t slot);
std::string host_link_mac(uint32_t slot);

// Which slots VMs alive now hold; safe from many threads.
class NetworkSlots {
 public:
  // The lowest free slot; throws Error when all kNetworkSlots are taken.
  uint32_t take();
  void give_back(uint32_t slot);
  size_t in_use() const;

 private:
  mutable std::mutex mu_;
  std::vector<bool> used_ = std::vector<bool>(kNetworkSlots);
};

class VmNetwork {
 public:
  // Creates the namespace at `netns_dir`/slot-<n>, the veth pair, the bridge and the tap (owned
  // by tap_uid). Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (ember-faas as root). Throws Error
  // naming the step that failed, having removed what it had made.
  static std::unique_ptr<VmNetwork> create(const std::string& netns_dir, std::shared_ptr<NetworkSlots> slots,
                                           uid_t tap_uid);
  // Deletes the host end (its peer goes with it) and unmounts the namespace; the tap and the
  // bridge go when the last process in it (ember) has exited.
  ~VmNetwork();
  VmNetwork(const VmNetwork&) = delete;
  VmNetwork& operator=(const VmNetwork&) = delete;

  const std::string& netns_path() const { return netns_path_; }
  uint32_t slot() const { return slot_; }
  SlotAddresses addresses() const { return slot_addresses(slot_); }

 private:
  VmNetwork(std::shared_ptr<NetworkSlots> slots, uint32_t slot, std::string netns_path)
      : slots_(std::move(slots)), slot_(slot), netns_path_(std::move(netns_path)) {}
  std::shared_ptr<NetworkSlots> slots_;
  uint32_t slot_;
  std::string netns_path_;
};

// Runs fn on a thread that has entered the namespace at netns_path (a process it starts is in
// that namespace); the caller's thread stays where it is. Throws what fn throws, or Error.
void run_in_network_namespace(const std::string& netns_path, const std::function<void()>& fn);

// What a previous daemon left in netns_dir: each slot-<n> namespace unmounted and removed, and
// its host link deleted. Names what it could not remove in the returned lines.
std::vector<std::string> remove_leftover_networks(const std::string& netns_dir);

}  // namespace ember::faas
