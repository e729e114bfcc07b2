#include "examples/faas/agent_client.h"

#include <cstring>
#include <thread>

#include "base/util/error.h"

namespace ember::faas {

namespace {

// The hybrid-vsock handshake: "CONNECT <port>\n" answered by "OK <host port>\n" (at most 32
// bytes read, one at a time so nothing of the agent's stream is consumed).
UniqueFd vsock_connect(const std::string& uds, Deadline deadline) {
  UniqueFd fd = connect_unix(uds);
  std::string hello = cat("CONNECT ", FAAS_AGENT_PORT, "\n");
  write_all(fd.get(), hello.data(), hello.size(), deadline, "vsock CONNECT");
  std::string line;
  char c = 0;
  while (line.size() < 32) {
    if (read_some(fd.get(), &c, 1, deadline, "vsock CONNECT answer") == 0) {
      fail("vsock: ember closed the connection to port ", FAAS_AGENT_PORT, " (no agent listening yet?)");
    }
    if (c == '\n') break;
    line += c;
  }
  if (line.rfind("OK ", 0) != 0) fail("vsock: unexpected answer to CONNECT: '", line, "'");
  return fd;
}

// Sends one request (a header, then its payload) and reads the reply.
AgentResult exchange(int fd, const std::string& frame, Deadline deadline) {
  write_all(fd, frame.data(), frame.size(), deadline, "sending the request to the agent");
  uint8_t r[FAAS_REPLY_HEADER_BYTES];
  read_exact(fd, r, sizeof r, deadline, "waiting for the agent's reply");
  AgentResult out;
  if (faas_decode_reply(r, sizeof r, &out.reply) != FAAS_DECODE_OK) fail("agent: malformed reply header");
  out.output.resize(out.reply.output_len);
  read_exact(fd, out.output.data(), out.output.size(), deadline, "reading the handler's output");
  return out;
}

AgentResult exchange(int fd, const std::string& handler, const std::string& body, uint32_t timeout_ms,
                     Deadline deadline) {
  faas_request q{timeout_ms, uint32_t(handler.size()), uint32_t(body.size())};
  uint8_t h[FAAS_REQUEST_HEADER_BYTES];
  faas_encode_request(&q, h);
  std::string frame(reinterpret_cast<char*>(h), sizeof h);
  frame += handler;
  frame += body;
  return exchange(fd, frame, deadline);
}

}  // namespace

AgentResult agent_invoke(const std::string& vsock_uds, const std::string& handler, const std::string& body,
                         uint32_t timeout_ms, Deadline deadline) {
  if (handler.empty()) fail("agent_invoke: empty handler");
  if (body.size() > FAAS_MAX_BODY_BYTES) fail("request body over ", FAAS_MAX_BODY_BYTES, " bytes");
  UniqueFd fd = vsock_connect(vsock_uds, deadline);
  return exchange(fd.get(), handler, body, timeout_ms, deadline);
}

void agent_configure_network(const std::string& vsock_uds, const faas_network& network, Deadline deadline) {
  uint8_t h[FAAS_REQUEST_HEADER_BYTES];
  faas_encode_network(&network, h);
  UniqueFd fd = vsock_connect(vsock_uds, deadline);
  AgentResult r = exchange(fd.get(), std::string(reinterpret_cast<char*>(h), sizeof h), deadline);
  if (r.reply.outcome != FAAS_CONFIGURED) fail("agent refused the network request (outcome ", r.reply.outcome, ", status ", r.reply.status, ")");
  if (r.reply.status != 0) fail("configuring the guest's eth0: ", std::strerror(r.reply.status));
}

Result<void> agent_wait_ready(const std::string& vsock_uds, Deadline deadline, const std::function<bool()>& vm_alive) {
  std::string why = "no attempt before the deadline";
  while (std::chrono::steady_clock::now() < deadline) {
    if (!vm_alive()) return Failure{"the VM ended"};
    try {
      UniqueFd fd = vsock_connect(vsock_uds, deadline);
      AgentResult r = exchange(fd.get(), "", "", 0, deadline);
      if (r.reply.outcome == FAAS_PONG) return {};
      why = cat("agent answered the ping with outcome ", r.reply.outcome);
    } catch (const Error& e) {
      why = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Failure{why};
}

}  // namespace ember::faas
