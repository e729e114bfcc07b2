#include "vmm/util/thread.h"

#include <pthread.h>

namespace ember {

namespace {
thread_local ThreadRole t_role = ThreadRole::Main;
}  // namespace

const char* thread_role_name(ThreadRole role) {
  switch (role) {
    case ThreadRole::Main: return "main";
    case ThreadRole::Machine: return "machine";
    case ThreadRole::Loader: return "loader";
    case ThreadRole::Vcpu: return "vcpu";
    case ThreadRole::Event: return "event";
    case ThreadRole::Api: return "api";
    case ThreadRole::Metrics: return "metrics";
    case ThreadRole::Stdin: return "stdin";
    case ThreadRole::Console: return "console";
    case ThreadRole::Prefault: return "prefault";
  }
  return "unknown";
}

ThreadRole current_thread_role() { return t_role; }

void enter_thread(ThreadRole role, const std::string& name) {
  t_role = role;
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace ember
