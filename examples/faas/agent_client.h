// The daemon's side of PROTOCOL.md: reach the agent through ember's hybrid-vsock socket
// (CONNECT <port>, OK <n>) and exchange one request and reply.
#pragma once

#include <functional>
#include <string>

#include "base/util/result.h"
#include "examples/faas/agent/protocol.h"
#include "examples/faas/socket_io.h"

namespace ember::faas {

struct AgentResult {
  faas_reply reply{};
  std::string output;  // at most FAAS_MAX_OUTPUT_BYTES
};

// Runs `handler` with `body` on stdin. The agent kills the handler at timeout_ms; `deadline`
// bounds the whole exchange on this side. Throws Error when the agent cannot be reached or
// answers something that is not a reply.
AgentResult agent_invoke(const std::string& vsock_uds, const std::string& handler, const std::string& body,
                         uint32_t timeout_ms, Deadline deadline);
// Gives the guest's eth0 this address and default route (a network request); throws Error when
// the agent cannot be reached, refuses the request or the guest kernel refuses a step.
void agent_configure_network(const std::string& vsock_uds, const faas_network& network, Deadline deadline);
// A ping (a request with no handler), retried until the agent answers or `deadline` (a guest
// still booting has no listener yet: ember closes the connection); refused with the last
// error when it never answers. Gives up early when vm_alive() turns false.
Result<void> agent_wait_ready(const std::string& vsock_uds, Deadline deadline, const std::function<bool()>& vm_alive);

}  // namespace ember::faas
