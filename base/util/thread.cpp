#include "base/util/thread.h"

#include <pthread.h>

#include <atomic>

namespace ember {

namespace {
thread_local ThreadRole t_role = ThreadRole::Main;
thread_local std::string t_name;  // kept here: a restricted thread may not ask the kernel
std::atomic<RoleRestrictor> g_restrictor{nullptr};
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
  t_name = name.substr(0, 15);
  pthread_setname_np(pthread_self(), t_name.c_str());
  restrict_current_thread(role);
}

void set_role_restrictor(RoleRestrictor restrictor) { g_restrictor = restrictor; }

const std::string& current_thread_name() {
  if (t_name.empty()) {
    char buf[16] = {};
    if (pthread_getname_np(pthread_self(), buf, sizeof(buf)) != 0 || !buf[0]) t_name = "?";
    else t_name = buf;
  }
  return t_name;
}

void restrict_current_thread(ThreadRole role) {
  t_role = role;
  current_thread_name();  // asked now, while the thread may still ask
  if (RoleRestrictor r = g_restrictor.load()) r(role);
}

}  // namespace ember
