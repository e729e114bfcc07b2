// Every API endpoint through the request router, against a fake VMM.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "api/request_router.h"
#include "base/util/error.h"
#include "tests/unit/router_fixture.h"

namespace ember {
namespace {

class Router : public RouterFixture {
 protected:
  void configure_and_start() {
    ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/k/vmlinux", "boot_args": "console=ttyS0"})").status, 204);
    ASSERT_EQ(call("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})").status, 204);
    ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  }
};

TEST_F(Router, InstanceInfoAndVersion) {
  ApiResponse r = call("GET", "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Json::parse(r.body),
            (Json{{"id", "vm-1"}, {"state", "Not started"}, {"vmm_version", "0.1.0"}, {"app_name", "ember"}}));
  r = call("GET", "/version");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Json::parse(r.body), (Json{{"firecracker_version", "0.1.0"}}));
  configure_and_start();
  EXPECT_EQ(Json::parse(call("GET", "/").body).at("state"), "Running");
  ASSERT_EQ(call("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(Json::parse(call("GET", "/").body).at("state"), "Paused");
}

TEST_F(Router, ConfigureThenStart) {
  configure_and_start();
  ASSERT_TRUE(vm.started_with);
  EXPECT_EQ(vm.started_with->boot.kernel_image_path, "/k/vmlinux");
  EXPECT_EQ(vm.started_with->machine.vcpu_count, 2u);
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "InstanceStart"})"), "InstanceStart: the VM is already started");
}

TEST_F(Router, StartWithoutKernelOrFailingStartIs400AndRetryable) {
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "InstanceStart"})"), "boot-source.kernel_image_path is not set");
  ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/missing"})").status, 204);
  vm.fail_start = true;
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "InstanceStart"})"), "cannot open kernel '/missing'");
  EXPECT_EQ(Json::parse(call("GET", "/").body).at("state"), "Not started");
  vm.fail_start = false;
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
}

TEST_F(Router, MachineConfigPutPatchGet) {
  EXPECT_EQ(call("PUT", "/machine-config", R"({"vcpu_count": 4, "mem_size_mib": 512, "smt": false})").status, 204);
  EXPECT_EQ(call("PATCH", "/machine-config", R"({"mem_size_mib": 1024})").status, 204);
  Json m = Json::parse(call("GET", "/machine-config").body);
  EXPECT_EQ(m.at("vcpu_count"), 4);
  EXPECT_EQ(m.at("mem_size_mib"), 1024);
  EXPECT_EQ(fault("PUT", "/machine-config", R"({"vcpu_count": 4})"), "machine-config.mem_size_mib is required");
  EXPECT_EQ(fault("PATCH", "/machine-config", R"({"vcpu_count": "4"})"),
            "machine-config.vcpu_count must be a whole number between 1 and 32");
  EXPECT_EQ(fault("PATCH", "/machine-config", R"({"vcpus": 4})"), "machine-config: unknown field 'vcpus'");
  EXPECT_EQ(fault("PATCH", "/machine-config", R"({"smt": true})"),
            "machine-config.smt = true is not supported: ember presents one thread per core");
  EXPECT_EQ(fault("DELETE", "/machine-config"), "DELETE is not allowed on /machine-config");
}

// --prefault (or TOML prefault) is not in Firecracker's JSON: PUT /machine-config keeps it.
TEST(RouterPrefault, PutMachineConfigKeepsTheCommandLinePrefault) {
  FakeVm vm;
  FullVmConfig initial;
  initial.vm.machine.prefault = Prefault::Off;
  RequestRouter router{vm, initial, "vm-1", "0.1.0"};
  ASSERT_EQ(router.handle({"PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})"}).status, 204);
  ASSERT_EQ(router.handle({"PUT", "/boot-source", R"({"kernel_image_path": "/k"})"}).status, 204);
  ASSERT_EQ(router.handle({"PUT", "/actions", R"({"action_type": "InstanceStart"})"}).status, 204);
  ASSERT_TRUE(vm.started_with);
  EXPECT_EQ(vm.started_with->machine.prefault, Prefault::Off);
}

TEST_F(Router, BodiesMustBeJsonObjects) {
  EXPECT_EQ(fault("PUT", "/boot-source"), "Empty PUT request.");
  EXPECT_NE(fault("PUT", "/boot-source", "{\"kernel_image_path\": ").find("invalid JSON"), std::string::npos);
  EXPECT_EQ(fault("PUT", "/boot-source", "[1]"), "boot-source must be a JSON object");
  EXPECT_EQ(fault("PUT", "/boot-source", R"({"kernel_image_path": "/k", "extra": true})"),
            "boot-source: unknown field 'extra'");
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "Reboot"})"),
            "actions.action_type \"Reboot\" is not one of InstanceStart, SendCtrlAltDel, FlushMetrics");
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": 1})"),
            "actions.action_type must be a string: InstanceStart, SendCtrlAltDel or FlushMetrics");
}

TEST_F(Router, Drives) {
  EXPECT_EQ(call("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/a", "is_root_device": true, "is_read_only": false})").status, 204);
  EXPECT_EQ(call("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/b", "is_root_device": true})").status, 204);
  EXPECT_EQ(fault("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/c"})"),
            "The requested operation is not supported before starting the microVM.");
  Json cfg = Json::parse(call("GET", "/vm/config").body);
  ASSERT_EQ(cfg.at("drives").size(), 1u);
  EXPECT_EQ(cfg.at("drives")[0].at("path_on_host"), "/b");
  EXPECT_EQ(fault("PUT", "/drives/other", R"({"drive_id": "rootfs", "path_on_host": "/a", "is_root_device": false})"),
            "drive_id 'rootfs' in the body differs from 'other' in the path");
  EXPECT_EQ(fault("PUT", "/drives/second", R"({"drive_id": "second", "path_on_host": "/a", "is_root_device": true})"),
            "only one drive can be the root device (2 are)");
  EXPECT_EQ(fault("PATCH", "/drives/nope", R"({"drive_id": "nope", "path_on_host": "/a"})"), "no drive is called 'nope'");
  EXPECT_EQ(fault("PUT", "/drives/x", R"({"drive_id": "x", "path_on_host": "/a", "partuuid": "1"})"),
            "drive.partuuid is not supported by ember");
  EXPECT_EQ(fault("GET", "/drives/rootfs"), "GET is not allowed on /drives/rootfs");
  configure_and_start();
  EXPECT_EQ(fault("PUT", "/drives/data", R"({"drive_id": "data", "path_on_host": "/d", "is_root_device": false})"),
            "PUT /drives is only allowed before InstanceStart");
  // After InstanceStart, path_on_host swaps the drive's file (even the same path: reopened).
  EXPECT_EQ(call("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/b"})").status, 204);
  EXPECT_EQ(call("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/new"})").status, 204);
  ASSERT_EQ(vm.drive_files.size(), 2u);
  EXPECT_EQ(vm.drive_files[1].id, "rootfs");
  EXPECT_EQ(vm.drive_files[1].path, "/new");
  EXPECT_EQ(Json::parse(call("GET", "/vm/config").body).at("drives")[0].at("path_on_host"), "/new");
  // A rate limiter alone opens nothing.
  EXPECT_EQ(call("PATCH", "/drives/rootfs",
                 R"({"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 10, "refill_time": 100}}})")
                .status,
            204);
  EXPECT_EQ(vm.drive_files.size(), 2u);
  EXPECT_EQ(fault("PATCH", "/drives/nope", R"({"drive_id": "nope", "path_on_host": "/a"})"), "no drive is called 'nope'");
  // Paused too: the swap needs no running vCPU.
  EXPECT_EQ(call("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(call("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/p"})").status, 204);
  EXPECT_EQ(vm.drive_files.size(), 3u);
}

TEST_F(Router, NetworkInterfaces) {
  EXPECT_EQ(call("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})").status, 204);
  EXPECT_EQ(fault("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap0"})"),
            "network interfaces 'eth0' and 'eth1' both use tap 'tap0'");
  EXPECT_EQ(fault("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap1", "mtu": 9000})"),
            "network-interface.mtu is not supported by ember");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})"),
            "The requested operation is not supported before starting the microVM.");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "rx_rate_limiter": {}})"),
            "The requested operation is not supported before starting the microVM.");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth9", R"({"iface_id": "eth9"})"), "no network interface is called 'eth9'");
  configure_and_start();
  EXPECT_EQ(call("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})").status, 204);
  EXPECT_EQ(fault("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap1"})"),
            "PUT /network-interfaces is only allowed before InstanceStart");
}

TEST_F(Router, Vsock) {
  EXPECT_EQ(call("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": "/tmp/v.sock"})").status, 204);
  EXPECT_EQ(Json::parse(call("GET", "/vm/config").body).at("vsock").at("uds_path"), "/tmp/v.sock");
  EXPECT_EQ(fault("PUT", "/vsock", R"({"uds_path": "/tmp/v.sock"})"), "vsock.guest_cid is required");
  configure_and_start();
  EXPECT_EQ(fault("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": "/tmp/v.sock"})"),
            "PUT /vsock is only allowed before InstanceStart");
}

TEST_F(Router, LoggerAndMetrics) {
  EXPECT_EQ(call("PUT", "/logger", R"({"log_path": "/tmp/l", "level": "Debug", "show_level": true})").status, 204);
  ASSERT_TRUE(vm.logger);
  EXPECT_EQ(vm.logger->level, log::Level::Debug);
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "FlushMetrics"})"), "metrics are not set up");
  EXPECT_EQ(call("PUT", "/metrics", R"({"metrics_path": "/tmp/m"})").status, 204);
  EXPECT_EQ(fault("PUT", "/metrics", R"({"metrics_path": "/tmp/m"})"), "metrics are already set up");
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "FlushMetrics"})").status, 204);
  EXPECT_EQ(vm.flushes, 1);
  EXPECT_EQ(fault("PUT", "/logger", R"({"log_path": 5})"), "logger.log_path must be a string");
  configure_and_start();
  EXPECT_EQ(fault("PUT", "/logger", R"({"log_path": "/tmp/l"})"), "PUT /logger is only allowed before InstanceStart");
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "FlushMetrics"})").status, 204);
}

TEST_F(Router, SerialOutputAndItsRateLimiter) {
  std::string path = ::testing::TempDir() + "router-serial.txt";
  std::remove(path.c_str());
  vm.real_files = true;  // opened as VmmRunner opens it, on the main thread
  EXPECT_EQ(call("PUT", "/serial",
                 R"({"serial_out_path": ")" + path + R"(", "rate_limiter": {"size": 100, "refill_time": 10}})")
                .status,
            204);
  EXPECT_TRUE(std::ifstream(path).good()) << "opened, so a bad path is this request's error";
  Json serial = Json::parse(call("GET", "/vm/config").body).at("serial");
  EXPECT_EQ(serial.at("serial_out_path"), path);
  EXPECT_EQ(serial.at("rate_limiter").at("size"), 100);
  EXPECT_NE(fault("PUT", "/serial", R"({"serial_out_path": "/nonexistent-dir/console"})")
                .find("cannot open serial.serial_out_path '/nonexistent-dir/console'"),
            std::string::npos);
  EXPECT_EQ(fault("PUT", "/serial", R"({"rate_limiter": {"size": 100, "refill_time": 0}})").find("refill_time"),
            std::string("serial.rate_limiter.").size());
  EXPECT_EQ(fault("GET", "/serial"), "GET is not allowed on /serial");
  vm.real_files = false;  // the kernel below is not a file
  configure_and_start();
  EXPECT_EQ(fault("PUT", "/serial", "{}"), "PUT /serial is only allowed before InstanceStart");
  std::remove(path.c_str());
}

TEST_F(Router, PauseResumeCtrlAltDel) {
  EXPECT_EQ(fault("PATCH", "/vm", R"({"state": "Paused"})"), "PATCH /vm: the VM is not started");
  EXPECT_EQ(fault("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})"),
            "SendCtrlAltDel needs a running VM (it is Not started)");
  configure_and_start();
  EXPECT_EQ(call("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(call("PATCH", "/vm", R"({"state": "Resumed"})").status, 204);
  EXPECT_EQ(vm.pauses, 1);
  EXPECT_EQ(vm.resumes, 1);
  EXPECT_EQ(fault("PATCH", "/vm", R"({"state": "Stopped"})"), "vm.state must be \"Paused\" or \"Resumed\" (got \"Stopped\")");
  EXPECT_EQ(fault("PATCH", "/vm", R"({"state": "Paused", "when": 1})"), "vm: unknown field 'when'");
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})").status, 204);
  EXPECT_EQ(vm.ctrl_alt_dels, 1);
}

TEST_F(Router, UnsupportedAndUnknownEndpointsAre400) {
  EXPECT_EQ(fault("PUT", "/snapshot/other", "{}"), "unknown endpoint PUT /snapshot/other");
  EXPECT_EQ(fault("GET", "/balloon/statistics"), "the balloon device (/balloon) is not supported by ember");
  EXPECT_EQ(fault("GET", "/nothing"), "unknown endpoint GET /nothing");
  EXPECT_EQ(fault("GET", "/drives/a/b"), "unknown path /drives/a/b");
  EXPECT_EQ(call("GET", "/machine-config?x=1").status, 200);
}

TEST_F(Router, CountsRequestsByEndpointAndStatus) {
  call("GET", "/");
  call("GET", "/");
  call("PUT", "/machine-config", "{}");
  call("PUT", "/boot-source", R"({"kernel_image_path": "/k"})");
  MetricGroups m;
  router.collect_metrics(m);
  EXPECT_EQ(m["api"]["get_root_200"], 2u);
  EXPECT_EQ(m["api"]["put_machine_config_400"], 1u);
  EXPECT_EQ(m["api"]["put_boot_source_204"], 1u);
}

TEST_F(Router, VmConfigReflectsTheConfiguration) {
  configure_and_start();
  Json c = Json::parse(call("GET", "/vm/config").body);
  EXPECT_EQ(c.at("boot-source").at("kernel_image_path"), "/k/vmlinux");
  EXPECT_EQ(c.at("machine-config").at("vcpu_count"), 2);
  FullVmConfig again = full_config_from_json(c);
  EXPECT_EQ(to_json(again), c);
}

}  // namespace
}  // namespace ember
