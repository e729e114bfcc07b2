// The one way ember starts a thread: with a role (what the thread does, and so which
// system calls it needs: ember installs one seccomp filter per role, vmm/seccomp/) and a
// name (at most 15 characters; shown in log lines and /proc/<pid>/task/*/comm).
#pragma once

#include <string>
#include <thread>
#include <utility>

namespace ember {

enum class ThreadRole {
  Main,      // parses arguments, waits for InstanceStart, runs the VM's control loop
  Machine,   // builds the KVM VM, devices and vCPUs while the main thread reads the kernel
  Loader,    // helps read kernel and initrd pieces into guest memory, then ends
  Vcpu,      // KVM_RUN and exit dispatch
  Event,     // virtio queues, backends, io_uring
  Api,       // the HTTP API socket
  Metrics,   // periodic metrics flush
  Stdin,     // host stdin to the UART
  Console,   // guest console to the host's output
  Prefault,  // populates guest RAM in the background
};

const char* thread_role_name(ThreadRole role);
// The calling thread's role (Main for threads ember did not start).
ThreadRole current_thread_role();
// Its name, as given to start_thread (or the kernel's, for the main thread).
const std::string& current_thread_name();
// Names the calling thread, records its role and restricts it to that role (below);
// start_thread does this first thing.
void enter_thread(ThreadRole role, const std::string& name);

// What restricting a thread to its role means is set once by the program (ember's main:
// install the role's seccomp filter; it ends ember if that fails). Unset, as in unit
// tests, threads run unrestricted.
using RoleRestrictor = void (*)(ThreadRole);
void set_role_restrictor(RoleRestrictor restrictor);
// Restricts the calling thread; the main thread calls it itself once every other thread
// of the running VM exists (threads inherit their creator's filter).
void restrict_current_thread(ThreadRole role);

template <typename F>
std::thread start_thread(ThreadRole role, std::string name, F&& fn) {
  return std::thread([role, name = std::move(name), fn = std::forward<F>(fn)]() mutable {
    enter_thread(role, name);
    fn();
  });
}

}  // namespace ember
