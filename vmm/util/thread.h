// The one way ember starts a thread: with a role (what the thread does, and so which
// system calls it needs: the jailing issue installs one seccomp filter per role here)
// and a name (at most 15 characters; shown in log lines and /proc/<pid>/task/*/comm).
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
// Names the calling thread and records its role; start_thread does this first thing.
void enter_thread(ThreadRole role, const std::string& name);

template <typename F>
std::thread start_thread(ThreadRole role, std::string name, F&& fn) {
  return std::thread([role, name = std::move(name), fn = std::forward<F>(fn)]() mutable {
    enter_thread(role, name);
    fn();
  });
}

}  // namespace ember
