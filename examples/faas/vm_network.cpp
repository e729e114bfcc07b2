#include "examples/faas/vm_network.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <exception>
#include <functional>
#include <filesystem>
#include <thread>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember::faas {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kBase = 0x0ac80000;  // 10.200.0.0
constexpr size_t kMaxCommandOutput = 4096;

// Runs `ip -batch -` with `commands` on stdin, in the calling thread's network namespace (a
// child inherits it); throws Error with ip's output when it fails.
void run_ip_batch(const std::string& commands, const std::string& what) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) fail(what, ": pipe: ", std::strerror(errno));
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (pipe2(out, O_CLOEXEC) != 0) fail(what, ": pipe: ", std::strerror(errno));
  UniqueFd out_r(out[0]), out_w(out[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 2);
  char ip[] = "ip", batch[] = "-batch", dash[] = "-";
  char* argv[] = {ip, batch, dash, nullptr};
  // ip lives in /usr/sbin or /sbin, which a daemon started without them in PATH lacks.
  std::string path = cat(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin", ":/usr/sbin:/sbin");
  std::string path_var = "PATH=" + path;
  char* envp[] = {path_var.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "ip", &fa, nullptr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail(what, ": starting ip (iproute2): ", std::strerror(rc));
  in_r.reset();
  out_w.reset();
  // The batch is far below a pipe's capacity: written whole before ip's output is read.
  bool written = ::write(in_w.get(), commands.data(), commands.size()) == ssize_t(commands.size());
  in_w.reset();
  std::string output;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(out_r.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < kMaxCommandOutput) output.append(buf, size_t(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!written || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    fail(what, ": ip failed: ", output.empty() ? "no output" : output);
  }
}

// Runs fn on a thread of its own, which may change its network namespace: the daemon's other
// threads stay in the host's. What fn throws is rethrown here.
void on_own_thread(const std::function<void()>& fn) {
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      fn();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  t.join();
  if (failure) std::rethrow_exception(failure);
}

void unmount_and_remove(const std::string& path) {
  umount2(path.c_str(), MNT_DETACH);
  unlink(path.c_str());
}

void delete_host_link(uint32_t slot) {
  std::string link = host_link_name(slot);
  std::error_code ec;
  if (fs::exists("/sys/class/net/" + link, ec)) run_ip_batch(cat("link del ", link, "\n"), "deleting " + link);
}

}  // namespace

void run_in_network_namespace(const std::string& netns_path, const std::function<void()>& fn) {
  on_own_thread([&] {
    UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid() || setns(ns.get(), CLONE_NEWNET) != 0) {
      fail("entering the network namespace ", netns_path, ": ", std::strerror(errno));
    }
    fn();
  });
}

SlotAddresses slot_addresses(uint32_t slot) {
  uint32_t network = kBase + 4 * (slot % kNetworkSlots);
  return {network, network + 1, network + 2};
}

std::string ipv4_text(uint32_t a) { return cat(a >> 24, ".", (a >> 16) & 255, ".", (a >> 8) & 255, ".", a & 255); }

std::string host_link_name(uint32_t slot) { return cat("efaas", slot); }

std::string host_link_mac(uint32_t slot) {
  char mac[18];
  std::snprintf(mac, sizeof mac, "02:fa:a5:%02x:%02x:01", (slot >> 8) & 255, slot & 255);
  return mac;
}

uint32_t NetworkSlots::take() {
  std::lock_guard lock(mu_);
  for (uint32_t s = 0; s < kNetworkSlots; s++) {
    if (!used_[s]) {
      used_[s] = true;
      return s;
    }
  }
  fail("no free network slot: ", kNetworkSlots, " networked VMs are alive");
}

void NetworkSlots::give_back(uint32_t slot) {
  std::lock_guard lock(mu_);
  if (slot < kNetworkSlots) used_[slot] = false;
}

size_t NetworkSlots::in_use() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (bool u : used_) n += u;
  return n;
}

std::unique_ptr<VmNetwork> VmNetwork::create(const std::string& netns_dir, std::shared_ptr<NetworkSlots> slots,
                                             uid_t tap_uid) {
  uint32_t slot = slots->take();
  std::string path = cat(netns_dir, "/slot-", slot);
  std::unique_ptr<VmNetwork> net(new VmNetwork(slots, slot, path));
  // A leftover of a VM whose removal failed half-way would make every step below fail.
  unmount_and_remove(path);
  delete_host_link(slot);
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file.valid()) fail("creating ", path, ": ", std::strerror(errno));
  file.reset();
  std::string host_ns = cat("/proc/", getpid(), "/ns/net");  // the main thread's: the host's
  std::string link = host_link_name(slot);
  on_own_thread([&] {
    if (unshare(CLONE_NEWNET) != 0) fail("a network namespace for slot ", slot, ": unshare: ", std::strerror(errno));
    std::string own = cat("/proc/self/task/", long(syscall(SYS_gettid)), "/ns/net");
    if (mount(own.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      fail("keeping the network namespace at ", path, ": ", std::strerror(errno));
    }
    run_ip_batch(cat("link set lo up\n",
                     "link add veth0 type veth peer name ", link, " address ", host_link_mac(slot), " netns ", host_ns, "\n",
                     "link add br0 type bridge\n",
                     "tuntap add dev ", kVmTapName, " mode tap user ", tap_uid, "\n",
                     "link set veth0 master br0\n",
                     "link set ", kVmTapName, " master br0\n",
                     "link set veth0 up\n",
                     "link set ", kVmTapName, " up\n",
                     "link set br0 up\n"),
                 cat("the VM network in ", path));
  });
  SlotAddresses a = slot_addresses(slot);
  run_ip_batch(cat("addr add ", ipv4_text(a.host), "/", a.prefix_len, " dev ", link, "\n", "link set ", link, " up\n"),
               cat("the host end ", link));
  return net;
}

VmNetwork::~VmNetwork() {
  try {
    delete_host_link(slot_);
  } catch (const Error&) {
    // The namespace's removal below deletes the pair too, once its last process is gone.
  }
  unmount_and_remove(netns_path_);
  slots_->give_back(slot_);
}

std::vector<std::string> remove_leftover_networks(const std::string& netns_dir) {
  std::vector<std::string> problems;
  std::error_code ec;
  if (!fs::is_directory(netns_dir, ec)) return problems;
  for (const auto& entry : fs::directory_iterator(netns_dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("slot-", 0) == 0) {
      char* end = nullptr;
      unsigned long slot = std::strtoul(name.c_str() + 5, &end, 10);
      if (end && *end == 0 && slot < kNetworkSlots) {
        try {
          delete_host_link(uint32_t(slot));
        } catch (const Error& e) {
          problems.push_back(e.what());
        }
      }
    }
    unmount_and_remove(entry.path().string());
    if (fs::exists(entry.path(), ec)) problems.push_back(cat("cannot remove ", entry.path().string()));
  }
  return problems;
}

}  // namespace ember::faas
