// examples/faas without KVM: registrations and their refusals, the agent protocol's encoder
// and decoder against hostile frames, the agent client against a fake agent behind a fake
// hybrid-vsock socket, the scheduler's caps, queue, snapshot wait and keep-alive, the metrics
// text, the routes, the front end's 413, and the state folder's cleanup.
#include <gtest/gtest.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/util/error.h"
#include "examples/faas/agent/protocol.h"
#include "examples/faas/agent_client.h"
#include "examples/faas/ember_vm.h"
#include "examples/faas/function_spec.h"
#include "examples/faas/http_front.h"
#include "examples/faas/metrics.h"
#include "examples/faas/routes.h"
#include "examples/faas/runtime.h"
#include "examples/faas/scheduler.h"
#include "examples/faas/vm_network.h"
#include "tests/unit/temp_dir.h"

namespace ember::faas {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::TempDir;

// ---------------------------------------------------------------- registrations

std::string spec_json(json extra = json::object()) {
  json j = {{"kernel", "/proc/self/exe"}, {"initramfs", "/proc/self/exe"}, {"handler", "cat"}};
  for (auto& [k, v] : extra.items()) j[k] = v;
  for (auto it = j.begin(); it != j.end();) it = it->is_null() ? j.erase(it) : std::next(it);
  return j.dump();
}

std::string spec_error(const std::string& body) {
  try {
    parse_function_spec(body);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FaasSpec, DefaultsAndEveryField) {
  FunctionSpec s = parse_function_spec(spec_json());
  EXPECT_EQ(s.mem_mib, 128u);
  EXPECT_EQ(s.max_vms, 4u);
  s = parse_function_spec(spec_json({{"mem_mib", 256}, {"vcpus", 2}, {"timeout_ms", 500}, {"keep_alive_ms", 0},
                                     {"max_vms", 9}, {"max_queue", 0}}));
  EXPECT_EQ(s.mem_mib, 256u);
  EXPECT_EQ(s.vcpus, 2u);
  EXPECT_EQ(s.timeout_ms, 500u);
  EXPECT_EQ(s.keep_alive_ms, 0u);
  EXPECT_EQ(s.max_vms, 9u);
  EXPECT_EQ(s.max_queue, 0u);
}

TEST(FaasSpec, RefusalsNameTheField) {
  EXPECT_NE(spec_error("{").find("not JSON"), std::string::npos);
  EXPECT_NE(spec_error("[]").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"mem_mb", 1}})).find("unknown field 'mem_mb'"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"handler", nullptr}})).find("function.handler is required"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"kernel", nullptr}})).find("function.kernel is required"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"mem_mib", "big"}})).find("function.mem_mib"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"mem_mib", 1}})).find("function.mem_mib"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"timeout_ms", -5}})).find("function.timeout_ms"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"max_vms", 0}})).find("function.max_vms"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"handler", ""}})).find("function.handler"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"handler", std::string(5000, 'x')}})).find("function.handler"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"rootfs", "/proc/self/exe"}})).find("exactly one of initramfs and rootfs"),
            std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"kernel", "/nonexistent/vmlinux"}})).find("function.kernel: cannot read"),
            std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"kernel", "vmlinux"}})).find("absolute"), std::string::npos);
}

// The code drive: a readable regular file of at least one sector, at registration and in
// PUT /functions/NAME/code ({"code": PATH}, nothing else).
TEST(FaasSpec, CodeDriveFile) {
  TempDir dir;
  std::string ok = dir.file("code.img"), small = dir.file("small.img");
  std::ofstream(ok) << std::string(4096, 'x');
  std::ofstream(small) << "echo";
  EXPECT_EQ(parse_function_spec(spec_json({{"code", ok}})).code, ok);
  EXPECT_EQ(parse_function_spec(spec_json()).code, "");
  EXPECT_NE(spec_error(spec_json({{"code", small}})).find("function.code: '" + small + "' is 4 bytes"), std::string::npos);
  EXPECT_NE(spec_error(spec_json({{"code", dir.file("")}})).find("not a regular file"), std::string::npos);
  EXPECT_EQ(parse_code_update(json{{"code", ok}}.dump()), ok);
  auto update_error = [](const std::string& body) {
    try {
      parse_code_update(body);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(update_error("{}").find("code.code is required"), std::string::npos) << update_error("{}");
  EXPECT_NE(update_error(json{{"code", ok}, {"x", 1}}.dump()).find("unknown field 'x'"), std::string::npos);
  EXPECT_NE(update_error(json{{"code", "/nonexistent"}}.dump()).find("cannot read"), std::string::npos);
  EXPECT_NE(update_error("nope").find("not JSON"), std::string::npos);
}

TEST(FaasSpec, FunctionNames) {
  EXPECT_TRUE(valid_function_name("a-b_C9"));
  EXPECT_FALSE(valid_function_name(""));
  EXPECT_FALSE(valid_function_name("a/b"));
  EXPECT_FALSE(valid_function_name(".."));
  EXPECT_FALSE(valid_function_name(std::string(65, 'a')));
}

// ---------------------------------------------------------------- protocol

TEST(FaasProtocol, RequestRoundTripAndHostileHeaders) {
  faas_request q{2000, 11, 5}, back{};
  uint8_t h[FAAS_REQUEST_HEADER_BYTES];
  faas_encode_request(&q, h);
  ASSERT_EQ(faas_decode_request(h, sizeof h, &back), FAAS_DECODE_OK);
  EXPECT_EQ(back.timeout_ms, 2000u);
  EXPECT_EQ(back.handler_len, 11u);
  EXPECT_EQ(back.body_len, 5u);
  for (size_t n = 0; n < sizeof h; n++) EXPECT_EQ(faas_decode_request(h, n, &back), FAAS_DECODE_SHORT) << n;
  uint8_t bad[FAAS_REQUEST_HEADER_BYTES];
  std::memcpy(bad, h, sizeof h);
  bad[0] ^= 1;
  EXPECT_EQ(faas_decode_request(bad, sizeof bad, &back), FAAS_DECODE_MAGIC);
  for (faas_request hostile : {faas_request{FAAS_MAX_TIMEOUT_MS + 1, 1, 1}, faas_request{1, FAAS_MAX_HANDLER_BYTES + 1, 1},
                               faas_request{1, 1, FAAS_MAX_BODY_BYTES + 1}, faas_request{1, 0xffffffffu, 0xffffffffu}}) {
    faas_encode_request(&hostile, bad);
    EXPECT_EQ(faas_decode_request(bad, sizeof bad, &back), FAAS_DECODE_TOO_LARGE);
  }
}

TEST(FaasProtocol, ReplyRoundTripAndHostileHeaders) {
  faas_reply r{FAAS_SIGNALED, 9, FAAS_FLAG_TRUNCATED, 123456, FAAS_MAX_OUTPUT_BYTES}, back{};
  uint8_t h[FAAS_REPLY_HEADER_BYTES];
  faas_encode_reply(&r, h);
  ASSERT_EQ(faas_decode_reply(h, sizeof h, &back), FAAS_DECODE_OK);
  EXPECT_EQ(back.outcome, uint32_t(FAAS_SIGNALED));
  EXPECT_EQ(back.status, 9);
  EXPECT_EQ(back.flags, FAAS_FLAG_TRUNCATED);
  EXPECT_EQ(back.run_us, 123456u);
  EXPECT_EQ(back.output_len, FAAS_MAX_OUTPUT_BYTES);
  r.status = -1;
  faas_encode_reply(&r, h);
  ASSERT_EQ(faas_decode_reply(h, sizeof h, &back), FAAS_DECODE_OK);
  EXPECT_EQ(back.status, -1);
  for (size_t n = 0; n < sizeof h; n++) EXPECT_EQ(faas_decode_reply(h, n, &back), FAAS_DECODE_SHORT) << n;
  for (faas_reply hostile : {faas_reply{0, 0, 0, 0, FAAS_MAX_OUTPUT_BYTES + 1}, faas_reply{0, 0, 0, 0, 0xffffffffu}}) {
    faas_encode_reply(&hostile, h);
    EXPECT_EQ(faas_decode_reply(h, sizeof h, &back), FAAS_DECODE_TOO_LARGE);
  }
  for (faas_reply hostile : {faas_reply{FAAS_CONFIGURED + 1, 0, 0, 0, 0}, faas_reply{0, 0, 2, 0, 0}}) {
    faas_encode_reply(&hostile, h);
    EXPECT_EQ(faas_decode_reply(h, sizeof h, &back), FAAS_DECODE_INVALID);
  }
  h[3] = 0;
  EXPECT_EQ(faas_decode_reply(h, sizeof h, &back), FAAS_DECODE_MAGIC);
}

// A fake agent behind a fake hybrid-vsock socket: answers CONNECT with `hello`, reads one
// request, then writes `reply` and closes.
class FakeAgent {
 public:
  FakeAgent(const std::string& path, std::string hello, std::string reply) {
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    EXPECT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(s.get(), 4), 0);
    thread_ = std::thread([s = std::move(s), hello, reply, this]() mutable {
      UniqueFd c(accept(s.get(), nullptr, nullptr));
      char line[64] = {};
      for (size_t i = 0; i < sizeof line - 1 && read(c.get(), line + i, 1) == 1 && line[i] != '\n'; i++) {}
      connect_line = line;
      (void)!send(c.get(), hello.data(), hello.size(), MSG_NOSIGNAL);
      uint8_t h[FAAS_REQUEST_HEADER_BYTES];
      faas_request q{};
      bool whole = read(c.get(), h, sizeof h) == ssize_t(sizeof h);
      if (whole) header.assign(reinterpret_cast<char*>(h), sizeof h);
      if (whole && faas_decode_request(h, sizeof h, &q) == FAAS_DECODE_OK) {
        std::string rest(q.handler_len + q.body_len, '\0');
        size_t got = 0;
        while (got < rest.size()) {
          ssize_t n = read(c.get(), rest.data() + got, rest.size() - got);
          if (n <= 0) break;
          got += size_t(n);
        }
        request = rest;
      }
      (void)!send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    });
  }
  ~FakeAgent() { thread_.join(); }
  std::string connect_line, header, request;

 private:
  std::thread thread_;
};

std::string reply_bytes(faas_reply r, const std::string& output) {
  uint8_t h[FAAS_REPLY_HEADER_BYTES];
  faas_encode_reply(&r, h);
  return std::string(reinterpret_cast<char*>(h), sizeof h) + output;
}

std::string invoke_error(const std::string& sock) {
  try {
    agent_invoke(sock, "tr a-z A-Z", "body", 1000, Clock::now() + 5s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FaasAgentClient, ExchangesOneRequestThroughTheVsockHandshake) {
  TempDir dir;
  AgentResult r;
  {
    FakeAgent agent(dir.file("v.sock"), "OK 1024\n", reply_bytes({FAAS_EXITED, 3, 0, 10, 5}, "HELLO"));
    r = agent_invoke(dir.file("v.sock"), "tr a-z A-Z", "hello", 1000, Clock::now() + 5s);
    EXPECT_EQ(agent.request, "tr a-z A-Zhello");
    EXPECT_EQ(agent.connect_line, "CONNECT 52\n");
  }
  EXPECT_EQ(r.reply.outcome, uint32_t(FAAS_EXITED));
  EXPECT_EQ(r.reply.status, 3);
  EXPECT_EQ(r.output, "HELLO");
}

TEST(FaasAgentClient, HostileOrBrokenAgentsAreErrors) {
  TempDir dir;
  std::string sock = dir.file("v.sock");
  {
    FakeAgent a(sock, "NO\n", "");
    EXPECT_NE(invoke_error(sock).find("unexpected answer to CONNECT"), std::string::npos);
  }
  unlink(sock.c_str());
  {
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_EXITED, 0, 0, 0, FAAS_MAX_OUTPUT_BYTES + 1}, ""));
    EXPECT_NE(invoke_error(sock).find("malformed reply"), std::string::npos);
  }
  unlink(sock.c_str());
  {
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_EXITED, 0, 0, 0, 100}, "short"));
    EXPECT_NE(invoke_error(sock).find("connection closed"), std::string::npos);
  }
  unlink(sock.c_str());
  {
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_EXITED, 0, 0, 0, 0}, "").substr(0, 10));
    EXPECT_NE(invoke_error(sock).find("connection closed"), std::string::npos);
  }
  EXPECT_NE(invoke_error(dir.file("none.sock")).find("connecting to"), std::string::npos);
}

TEST(FaasProtocol, NetworkRequestRoundTripAndRefusals) {
  faas_network n{0x0ac80006, 30, 0x0ac80005}, back{};
  uint8_t h[FAAS_REQUEST_HEADER_BYTES];
  faas_encode_network(&n, h);
  ASSERT_EQ(faas_decode_network(h, sizeof h, &back), FAAS_DECODE_OK);
  EXPECT_EQ(back.address, 0x0ac80006u);
  EXPECT_EQ(back.prefix_len, 30u);
  EXPECT_EQ(back.gateway, 0x0ac80005u);
  // An invocation's decoder refuses it (another magic), and the other way round.
  faas_request q{};
  EXPECT_EQ(faas_decode_request(h, sizeof h, &q), FAAS_DECODE_MAGIC);
  faas_request ping{0, 0, 0};
  uint8_t p[FAAS_REQUEST_HEADER_BYTES];
  faas_encode_request(&ping, p);
  EXPECT_EQ(faas_decode_network(p, sizeof p, &back), FAAS_DECODE_MAGIC);
  for (size_t len = 0; len < sizeof h; len++) EXPECT_EQ(faas_decode_network(h, len, &back), FAAS_DECODE_SHORT);
  for (faas_network hostile : {faas_network{0x0ac80006, 7, 0x0ac80005},    // prefix too short
                               faas_network{0x0ac80006, 31, 0x0ac80005},   // no room for two hosts
                               faas_network{0x0ac80006, 30, 0x0ac80009},   // gateway in another subnet
                               faas_network{0x0ac80006, 30, 0x0ac80006},   // gateway is the address
                               faas_network{0x0ac80004, 30, 0x0ac80005},   // the subnet's own address
                               faas_network{0x0ac80006, 30, 0x0ac80007}}) {  // gateway is the broadcast
    faas_encode_network(&hostile, h);
    EXPECT_EQ(faas_decode_network(h, sizeof h, &back), FAAS_DECODE_INVALID)
        << std::hex << hostile.address << "/" << std::dec << hostile.prefix_len << " via " << std::hex << hostile.gateway;
  }
}

std::string network_error(const std::string& sock) {
  try {
    agent_configure_network(sock, {0x0ac80002, 30, 0x0ac80001}, Clock::now() + 5s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FaasAgentClient, NetworkRequestAndTheGuestsAnswers) {
  TempDir dir;
  std::string sock = dir.file("v.sock");
  {
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_CONFIGURED, 0, 0, 0, 0}, ""));
    EXPECT_EQ(network_error(sock), "");
    faas_network sent{};
    ASSERT_EQ(a.header.size(), size_t(FAAS_REQUEST_HEADER_BYTES));
    ASSERT_EQ(faas_decode_network(reinterpret_cast<const uint8_t*>(a.header.data()), a.header.size(), &sent),
              FAAS_DECODE_OK);
    EXPECT_EQ(sent.address, 0x0ac80002u);
    EXPECT_EQ(sent.gateway, 0x0ac80001u);
  }
  unlink(sock.c_str());
  {
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_CONFIGURED, ENODEV, 0, 0, 0}, ""));
    EXPECT_NE(network_error(sock).find(std::strerror(ENODEV)), std::string::npos) << network_error(sock);
  }
  unlink(sock.c_str());
  {
    // An agent older than network requests refuses the magic.
    FakeAgent a(sock, "OK 1\n", reply_bytes({FAAS_BAD_REQUEST, FAAS_DECODE_MAGIC, 0, 0, 0}, ""));
    EXPECT_NE(network_error(sock).find("refused the network request"), std::string::npos);
  }
}

// ---------------------------------------------------------------- VM networks

TEST(FaasNetwork, SlotAddressesNamesAndAllocation) {
  SlotAddresses a = slot_addresses(0);
  EXPECT_EQ(ipv4_text(a.host), "10.200.0.1");
  EXPECT_EQ(ipv4_text(a.guest), "10.200.0.2");
  EXPECT_EQ(a.prefix_len, 30u);
  a = slot_addresses(kNetworkSlots - 1);
  EXPECT_EQ(ipv4_text(a.network), "10.200.255.252");
  EXPECT_EQ(ipv4_text(a.guest), "10.200.255.254");
  EXPECT_EQ(host_link_name(16383), "efaas16383");
  EXPECT_LE(host_link_name(16383).size(), 15u);  // IFNAMSIZ - 1
  EXPECT_EQ(host_link_mac(0x1234), "02:fa:a5:12:34:01");

  NetworkSlots slots;
  EXPECT_EQ(slots.take(), 0u);
  EXPECT_EQ(slots.take(), 1u);
  EXPECT_EQ(slots.take(), 2u);
  slots.give_back(1);
  EXPECT_EQ(slots.take(), 1u);  // the lowest free one again
  EXPECT_EQ(slots.in_use(), 3u);
  for (uint32_t i = 3; i < kNetworkSlots; i++) slots.take();
  EXPECT_THROW(slots.take(), Error);
  slots.give_back(kNetworkSlots + 5);  // not a slot: ignored
  EXPECT_EQ(slots.in_use(), size_t(kNetworkSlots));
}

bool link_exists(const std::string& name) { return std::filesystem::exists("/sys/class/net/" + name); }

bool mounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + path + " ") != std::string::npos) return true;
  }
  return false;
}

// The links of a namespace file, as a thread that entered it sees them (/proc/thread-self/net:
// /sys/class/net shows the namespace sysfs was mounted in).
std::string links_in(const std::string& netns) {
  std::string names;
  run_in_network_namespace(netns, [&] {
    std::ifstream dev("/proc/thread-self/net/dev");
    std::string line;
    while (std::getline(dev, line)) {
      size_t colon = line.find(':');
      size_t start = line.find_first_not_of(' ');
      if (colon != std::string::npos && start < colon) names += line.substr(start, colon - start) + " ";
    }
  });
  return names;
}

TEST(FaasNetwork, MakesTheNamespaceTapBridgeAndHostEndThenRemovesThem) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces, veth and taps need root";
  TempDir dir;
  auto slots = std::make_shared<NetworkSlots>();
  slots->take();  // slot 0 taken: the VM gets slot 1
  std::string path, link;
  {
    std::unique_ptr<VmNetwork> net = VmNetwork::create(dir.path, slots, 12345);
    EXPECT_EQ(net->slot(), 1u);
    path = net->netns_path();
    link = host_link_name(net->slot());
    EXPECT_EQ(path, dir.path + "/slot-1");
    EXPECT_TRUE(mounted(path));
    ASSERT_TRUE(link_exists(link));
    std::ifstream mac("/sys/class/net/" + link + "/address");
    std::string m;
    mac >> m;
    EXPECT_EQ(m, host_link_mac(1));
    std::string inside = links_in(path);
    for (const char* want : {"lo", "veth0", "br0", kVmTapName}) EXPECT_NE(inside.find(want), std::string::npos) << inside;
    EXPECT_EQ(inside.find(link), std::string::npos) << inside;
    EXPECT_EQ(slots->in_use(), 2u);
  }
  EXPECT_FALSE(link_exists(link));
  EXPECT_FALSE(mounted(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(slots->in_use(), 1u);
}

TEST(FaasNetwork, LeftoversOfAPreviousDaemonAreRemoved) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces, veth and taps need root";
  TempDir dir;
  auto slots = std::make_shared<NetworkSlots>();
  std::unique_ptr<VmNetwork> net = VmNetwork::create(dir.path, slots, 0);
  std::string path = net->netns_path(), link = host_link_name(net->slot());
  // A daemon that died keeps neither its objects nor their destructors: leak this one.
  (void)net.release();
  { std::ofstream(dir.file("stray")) << "x"; }
  EXPECT_TRUE(remove_leftover_networks(dir.path).empty());
  EXPECT_FALSE(link_exists(link));
  EXPECT_FALSE(mounted(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path));
}

// ---------------------------------------------------------------- scheduler

PoolLimits limits(uint32_t max_vms, uint32_t max_queue, std::chrono::milliseconds keep_alive = 1000ms) {
  return {max_vms, max_queue, keep_alive};
}

TEST(FaasScheduler, ColdThenRestoresWaitForTheSnapshotThenWarm) {
  Scheduler s(10);
  s.add_function("f", limits(3, 4));
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::ColdBoot);
  // While the snapshot is being made, a second invocation waits for it, then restores.
  auto waiter = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 10s).kind; });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(s.counts("f").waiting, 1u);
  s.snapshot_done("f", true);
  EXPECT_EQ(waiter.get(), Grant::Restore);
  EXPECT_TRUE(s.release("f", 7, true, Clock::now()));
  Grant g = s.acquire("f", Clock::now());
  EXPECT_EQ(g.kind, Grant::Warm);
  EXPECT_EQ(g.vm, 7u);
  EXPECT_EQ(s.counts("f").alive, 2u);
}

TEST(FaasScheduler, AFailedColdBootLetsTheNextOneTry) {
  Scheduler s(10);
  s.add_function("f", limits(2, 4));
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::ColdBoot);
  s.discard("f");
  s.snapshot_done("f", false);
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::ColdBoot);
  EXPECT_EQ(s.host_counts().alive, 1u);
}

TEST(FaasScheduler, CapQueueAnd429) {
  Scheduler s(10);
  s.add_function("f", limits(1, 2));
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::ColdBoot);
  s.snapshot_done("f", true);
  // The one VM is busy: two may wait (and time out here), a third is refused at once.
  auto w1 = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 300ms).kind; });
  auto w2 = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 300ms).kind; });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(s.acquire("f", Clock::now() + 10s).kind, Grant::QueueFull);
  EXPECT_EQ(w1.get(), Grant::TimedOut);
  EXPECT_EQ(w2.get(), Grant::TimedOut);
  // A waiter gets the VM when it is released.
  auto w3 = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 10s); });
  std::this_thread::sleep_for(50ms);
  s.release("f", 1, true, Clock::now());
  Grant g = w3.get();
  EXPECT_EQ(g.kind, Grant::Warm);
  EXPECT_EQ(g.vm, 1u);
}

TEST(FaasScheduler, ZeroQueueRefusesAtOnce) {
  Scheduler s(10);
  s.add_function("f", limits(1, 0));
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::ColdBoot);
  EXPECT_EQ(s.acquire("f", Clock::now() + 10s).kind, Grant::QueueFull);
}

TEST(FaasScheduler, KeepAliveExpiresIdleVms) {
  Scheduler s(10);
  s.add_function("f", limits(2, 2, 1000ms));
  auto t = Clock::now();
  s.acquire("f", t);
  s.snapshot_done("f", true);
  s.acquire("f", t);
  s.release("f", 1, true, t);
  s.release("f", 2, true, t + 800ms);
  EXPECT_TRUE(s.expire(t + 999ms).empty());
  std::vector<Expired> e = s.expire(t + 1000ms);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].vm, 1u);
  EXPECT_EQ(s.counts("f").alive, 1u);
  EXPECT_EQ(s.expire(t + 1800ms).size(), 1u);
  EXPECT_EQ(s.host_counts().alive, 0u);
}

TEST(FaasScheduler, HostCapEvictsAnotherFunctionsIdleVm) {
  Scheduler s(1);
  s.add_function("a", limits(4, 4));
  s.add_function("b", limits(4, 4));
  EXPECT_EQ(s.acquire("a", Clock::now()).kind, Grant::ColdBoot);
  // The host is full with a's busy VM: b waits.
  EXPECT_EQ(s.acquire("b", Clock::now() + 50ms).kind, Grant::TimedOut);
  s.release("a", 5, true, Clock::now());
  Grant g = s.acquire("b", Clock::now());
  EXPECT_EQ(g.kind, Grant::ColdBoot);
  EXPECT_EQ(g.evicted, std::vector<VmId>{5});
  EXPECT_EQ(s.host_counts().alive, 1u);
  EXPECT_EQ(s.counts("a").alive, 0u);
}

TEST(FaasScheduler, RemovingAFunctionReturnsItsIdleVmsAndWakesWaiters) {
  Scheduler s(10);
  s.add_function("f", limits(1, 4));
  s.acquire("f", Clock::now());
  auto waiter = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 10s).kind; });
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(s.remove_function("f").empty());
  EXPECT_EQ(waiter.get(), Grant::Gone);
  EXPECT_FALSE(s.release("f", 1, true, Clock::now()));  // its VM comes back: stop it
  // A waiter of a function deleted and registered again under the same name is told Gone.
  s.add_function("f", limits(1, 4));
  s.acquire("f", Clock::now());
  auto stale = std::async(std::launch::async, [&] { return s.acquire("f", Clock::now() + 10s).kind; });
  std::this_thread::sleep_for(50ms);
  s.remove_function("f");
  s.add_function("f", limits(1, 4));
  EXPECT_EQ(stale.get(), Grant::Gone);
  EXPECT_EQ(s.counts("f").waiting, 0u);
  s.remove_function("f");
  s.discard("f");
  EXPECT_EQ(s.host_counts().alive, 0u);
  EXPECT_EQ(s.acquire("f", Clock::now()).kind, Grant::Gone);
  s.add_function("g", limits(1, 4));
  s.acquire("g", Clock::now());
  s.release("g", 3, true, Clock::now());
  EXPECT_EQ(s.shutdown(), std::vector<VmId>{3});
  EXPECT_EQ(s.acquire("g", Clock::now()).kind, Grant::Gone);
}

// ---------------------------------------------------------------- metrics

TEST(FaasMetrics, PrometheusText) {
  Metrics m;
  m.cold_boots = 2;
  m.invoke_ms[int(VmKind::Warm)].observe(3);
  m.invoke_ms[int(VmKind::Warm)].observe(70000);
  std::string t = m.render({1, 2, 3, 4, 5});
  EXPECT_NE(t.find("faas_vms{state=\"starting\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("faas_vms{state=\"idle\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("# TYPE faas_cold_boots_total counter\nfaas_cold_boots_total 2\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_bucket{vm=\"warm\",le=\"1.000\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_bucket{vm=\"warm\",le=\"5.000\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_bucket{vm=\"warm\",le=\"60000.000\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_bucket{vm=\"warm\",le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_count{vm=\"warm\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_sum{vm=\"warm\"} 70003.000\n"), std::string::npos);
  EXPECT_NE(t.find("faas_invoke_ms_count{vm=\"cold\"} 0\n"), std::string::npos);
}

// ---------------------------------------------------------------- runtime, routes, front end

RuntimeOptions options(const TempDir& dir) {
  RuntimeOptions o;
  o.ember_bin = "/bin/false";
  o.state_dir = dir.file("state");
  return o;
}

TEST(FaasRuntime, RoutesWithoutKvm) {
  TempDir dir;
  Runtime rt(options(dir));
  auto req = [&](const char* m, const char* p, std::string body = "") {
    return route(rt, HttpRequest{m, p, std::move(body), true});
  };
  EXPECT_EQ(req("POST", "/functions/nope/invoke").status, 404);
  EXPECT_EQ(req("DELETE", "/functions/nope").status, 404);
  EXPECT_EQ(req("GET", "/functions/f").status, 405);
  EXPECT_EQ(req("GET", "/elsewhere").status, 404);
  EXPECT_EQ(req("POST", "/metrics").status, 405);
  ApiResponse bad = req("PUT", "/functions/f", R"({"kernel": "/proc/self/exe"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("function.handler is required"), std::string::npos) << bad.body;
  EXPECT_EQ(req("PUT", "/functions/bad%2Fname", spec_json()).status, 400);
  EXPECT_EQ(req("PUT", "/functions/f", spec_json()).status, 204);
  EXPECT_NE(req("GET", "/metrics").body.find("faas_functions 1\n"), std::string::npos);
  // ember here is /bin/false: the start fails with a message, nothing is left behind.
  ApiResponse r = req("POST", "/functions/f/invoke", "x");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_NE(r.body.find("cold boot of 'f' failed"), std::string::npos) << r.body;
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("state/vms")));
  EXPECT_NE(req("GET", "/metrics").body.find("faas_vm_start_failures_total 1\n"), std::string::npos);
  // Code updates: only PUT, only for a function registered with a code drive.
  EXPECT_EQ(req("PUT", "/functions/nope/code", "{}").status, 404);
  EXPECT_EQ(req("POST", "/functions/f/code", "{}").status, 405);
  ApiResponse no_drive = req("PUT", "/functions/f/code", json{{"code", "/proc/self/exe"}}.dump());
  EXPECT_EQ(no_drive.status, 400);
  EXPECT_NE(no_drive.body.find("without a code drive"), std::string::npos) << no_drive.body;
  EXPECT_EQ(req("DELETE", "/functions/f").status, 204);
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("state/functions")));
}

TEST(FaasRuntime, StateFolderLeftoversGoAndASecondDaemonIsRefused) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("state/vms/17"));
  std::filesystem::create_directories(dir.file("state/functions/f-3"));
  std::ofstream(dir.file("state/vms/17/pid")) << "999999999\n";
  std::ofstream(dir.file("state/functions/f-3/vm.mem")) << "x";
  Runtime rt(options(dir));
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("state/vms")));
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("state/functions")));
  try {
    Runtime second(options(dir));
    ADD_FAILURE() << "a second runtime took the same state folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(FaasRuntime, APreviousDaemonsVmNetworksGoAtStart) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces, veth and taps need root";
  TempDir dir;
  std::filesystem::create_directories(dir.file("state/netns"));
  // What a daemon killed with a VM alive leaves: the namespace mounted, the host link there.
  std::unique_ptr<VmNetwork> left = VmNetwork::create(dir.file("state/netns"), std::make_shared<NetworkSlots>(), 0);
  std::string link = host_link_name(left->slot());
  (void)left.release();
  ASSERT_TRUE(link_exists(link));
  Runtime rt(options(dir));
  EXPECT_FALSE(link_exists(link));
  EXPECT_FALSE(mounted(dir.file("state/netns/slot-0")));
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("state/netns")));
}

// What a jailed VM gets in its chroot: a hard link of a file it can read, else a copy it can.
TEST(FaasJail, PlaceFileLinksWhatTheVmCanReadAndCopiesTheRest) {
  if (geteuid() != 0) GTEST_SKIP() << "chown to another gid needs root";
  TempDir dir;
  std::ofstream(dir.file("open")) << "kernel";
  std::ofstream(dir.file("private")) << "secret image";
  chmod(dir.file("open").c_str(), 0644);
  chmod(dir.file("private").c_str(), 0600);
  place_file(dir.file("open"), dir.file("open-placed"), 4321);
  place_file(dir.file("private"), dir.file("private-placed"), 4321);
  struct stat a {}, b {}, c {};
  stat(dir.file("open").c_str(), &a);
  stat(dir.file("open-placed").c_str(), &b);
  EXPECT_EQ(a.st_ino, b.st_ino);  // linked
  stat(dir.file("private-placed").c_str(), &c);
  EXPECT_NE(c.st_ino, a.st_ino);
  EXPECT_EQ(c.st_gid, 4321u);
  EXPECT_EQ(c.st_mode & 0777, 0640u);
  std::ifstream in(dir.file("private-placed"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "secret image");
  EXPECT_THROW(place_file(dir.file("missing"), dir.file("x"), 1), Error);
}

TEST(FaasFront, OversizedBodyIs413AndOthersAreServed) {
  UniqueFd listener = listen_tcp("127.0.0.1:0");
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len);
  HttpFront front(std::move(listener), [](const HttpRequest& r) { return ApiResponse{200, "{\"len\":" + std::to_string(r.body.size()) + "}"}; },
                  FrontLimits{100, 16384, 8});
  std::thread t([&] { front.run(); });
  auto send_request = [&](const std::string& body) {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string req = "POST /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    (void)!send(c.get(), req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = recv(c.get(), buf, sizeof buf, 0)) > 0;) out.append(buf, size_t(n));
    return out;
  };
  EXPECT_EQ(send_request(std::string(200, 'x')).rfind("HTTP/1.1 413 Payload Too Large", 0), 0u);
  std::string ok = send_request("abc");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK", 0), 0u) << ok;
  EXPECT_NE(ok.find("{\"len\":3}"), std::string::npos);
  front.stop();
  t.join();
}

}  // namespace
}  // namespace ember::faas
