// ember's answers against Firecracker's, endpoint by endpoint, in the shape of Firecracker's
// own API tests (tests/integration_tests/functional/test_api.py and the request parsers'
// unit tests): a request, the status Firecracker gives, and the fault text or document.
// Where ember deliberately answers otherwise, the case says so and README.md lists it.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "api/http_request_parser.h"
#include "api/request_router.h"
#include "tests/unit/fake_vm.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

struct Case {
  const char* method;
  const char* path;
  std::string body;
  int status;
  std::string fault;  // for a 400: a substring of fault_message ("" = any)
};

// Real files, as PUT /boot-source and PUT /drives open them.
class Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    vm.real_files = true;
    dir = fs::temp_directory_path() / ("ember-parity-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "vmlinux") << "not checked for its format until InstanceStart";
    std::ofstream(dir / "initrd") << "x";
    std::ofstream(dir / "root.img") << std::string(4096, '\0');
    std::ofstream(dir / "ro.img") << std::string(4096, '\0');
    fs::permissions(dir / "ro.img", fs::perms::owner_read);
    ::mkfifo((dir / "fifo").c_str(), 0600);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string p(const char* name) const { return (dir / name).string(); }
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body = "") {
    return router.handle({method, path, body});
  }
  void run(const std::vector<Case>& cases) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.method) + " " + c.path + " " + c.body);
      ApiResponse r = call(c.method, c.path, c.body);
      EXPECT_EQ(r.status, c.status) << r.body;
      if (c.status == 400) {
        Json j = Json::parse(r.body);
        ASSERT_TRUE(j.contains("fault_message")) << r.body;
        EXPECT_NE(j.at("fault_message").get<std::string>().find(c.fault), std::string::npos) << r.body;
      } else if (c.status == 204) {
        EXPECT_EQ(r.body, "");
      }
    }
  }
  void start() {
    ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": ")" + p("vmlinux") + "\"}").status, 204);
    vm.real_files = false;  // the fake builds nothing; the kernel's format is not what is tested here
    ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  }

  fs::path dir;
  FakeVm vm;
  RequestRouter router{vm, FullVmConfig{}, "parity-vm", "1.0.0"};
};

TEST_F(Parity, BootSourceOpensItsFilesWhenPut) {
  std::string missing = p("missing");
  run({
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + p("vmlinux") + "\"}", 204, ""},
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + missing + "\"}", 400,
       "cannot open kernel '" + missing + "': No such file or directory"},
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + p("vmlinux") + R"(", "initrd_path": ")" + missing + "\"}",
       400, "cannot open initrd '" + missing + "'"},
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + p("vmlinux") + R"(", "initrd_path": ")" + p("initrd") + "\"}",
       204, ""},
      // A FIFO is refused at once rather than waited on.
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + p("fifo") + "\"}", 400, "is not a regular file (it is a FIFO)"},
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + dir.string() + "\"}", 400, "(it is a directory)"},
      {"PUT", "/boot-source", R"({"boot_args": "console=ttyS0"})", 400, "kernel_image_path is required"},
      {"PUT", "/boot-source", "", 400, "Empty PUT request."},
  });
  // A refused PUT leaves the last accepted boot source in place.
  EXPECT_EQ(Json::parse(call("GET", "/vm/config").body).at("boot-source").at("initrd_path"), p("initrd"));
}

TEST_F(Parity, DrivesOpenTheirFileWhenPutAndFollowFirecrackersRules) {
  std::string missing = p("missing");
  run({
      {"PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ")" + p("root.img") +
                                    R"(", "is_root_device": true, "is_read_only": false})", 204, ""},
      {"PUT", "/drives/data", R"({"drive_id": "data", "path_on_host": ")" + missing + R"(", "is_root_device": false})",
       400, "cannot open drive 'data' at '" + missing + "': No such file or directory"},
      {"PUT", "/drives/fifo", R"({"drive_id": "fifo", "path_on_host": ")" + p("fifo") + R"(", "is_root_device": false})",
       400, "is neither a regular file nor a block device (it is a FIFO)"},
      // is_root_device is required by Firecracker's Drive object.
      {"PUT", "/drives/data", R"({"drive_id": "data", "path_on_host": ")" + p("root.img") + "\"}", 400,
       "drive.is_root_device is required"},
      // Ids: letters, digits and '_' only, in the path.
      {"PUT", "/drives/my-disk", R"({"drive_id": "my-disk", "path_on_host": "/x", "is_root_device": false})", 400,
       "API Resource IDs can only contain alphanumeric characters and underscores."},
      {"PUT", "/drives/a.b", R"({"drive_id": "a.b", "path_on_host": "/x", "is_root_device": false})", 400,
       "alphanumeric characters and underscores"},
      {"PUT", "/drives/", R"({"drive_id": "", "path_on_host": "/x", "is_root_device": false})", 400,
       "The ID cannot be empty."},
      {"PUT", "/drives/disk_2", R"({"drive_id": "disk_2", "path_on_host": ")" + p("root.img") +
                                    R"(", "is_root_device": false})", 204, ""},
      {"PUT", "/drives/other", R"({"drive_id": "rootfs", "path_on_host": "/x", "is_root_device": false})", 400,
       "differs from 'other'"},
      // Firecracker's PATCH changes a running VM's drive; before InstanceStart it is refused.
      {"PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/x"})", 400,
       "The requested operation is not supported before starting the microVM."},
      {"PATCH", "/drives/rootfs", "", 400, "Empty PATCH request."},
  });
}

// Opened as the device will open it: read-write unless is_read_only.
TEST_F(Parity, AReadOnlyFileIsAcceptedOnlyForAReadOnlyDrive) {
  if (::geteuid() == 0) GTEST_SKIP() << "root opens a read-only file for writing";
  run({
      {"PUT", "/drives/ro", R"({"drive_id": "ro", "path_on_host": ")" + p("ro.img") +
                                R"(", "is_root_device": false, "is_read_only": false})", 400,
       "cannot open drive 'ro' at '" + p("ro.img") + "': Permission denied"},
      {"PUT", "/drives/ro", R"({"drive_id": "ro", "path_on_host": ")" + p("ro.img") +
                                R"(", "is_root_device": false, "is_read_only": true})", 204, ""},
  });
}

TEST_F(Parity, NetworkInterfaceIds) {
  run({
      {"PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})", 204, ""},
      {"PUT", "/network-interfaces/eth-1", R"({"iface_id": "eth-1", "host_dev_name": "tap1"})", 400,
       "API Resource IDs can only contain alphanumeric characters and underscores."},
      {"PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})", 400,
       "The requested operation is not supported before starting the microVM."},
  });
}

TEST_F(Parity, MachineConfig) {
  run({
      {"PUT", "/machine-config", R"({"mem_size_mib": 1024})", 400, "vcpu_count is required"},
      {"PUT", "/machine-config", R"({"vcpu_count": 8})", 400, "mem_size_mib is required"},
      {"PUT", "/machine-config", R"({"vcpu_count": 8, "mem_size_mib": 1024, "huge_pages": "7M"})", 400, "huge_pages"},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 257, "huge_pages": "2M"})", 400,
       "multiple of 2"},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 257, "huge_pages": "Transparent"})", 400,
       "multiple of 2"},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": "2M"})", 204, ""},
      {"PUT", "/machine-config", R"({"vcpu_count": 33, "mem_size_mib": 256})", 400, "vcpu_count"},
      {"PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 256})", 400, "vcpu_count"},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 0})", 400, "mem_size_mib"},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256, "prefault": "sync"})", 400,
       "unknown field 'prefault'"},
      {"PATCH", "/machine-config", "{}", 400, "Empty PATCH request."},
      {"PATCH", "/machine-config", R"({"vcpu_count": 4})", 204, ""},
      {"PATCH", "/machine-config", R"({"mem_size_mib": 255})", 400, "multiple of 2"},  // huge_pages 2M stays
  });
  Json m = Json::parse(call("GET", "/machine-config").body);
  EXPECT_EQ(m, (Json{{"vcpu_count", 4}, {"mem_size_mib", 256}, {"smt", false}, {"track_dirty_pages", false},
                     {"huge_pages", "2M"}}));
}

TEST_F(Parity, DeprecatedFieldsAnswerWithADeprecationHeader) {
  ApiResponse r = call("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "None"})");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.deprecated);
  r = call("PATCH", "/machine-config", R"({"cpu_template": "None"})");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.deprecated);
  EXPECT_FALSE(call("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})").deprecated);
  r = call("PUT", "/vsock", R"({"vsock_id": "v", "guest_cid": 3, "uds_path": "/tmp/v.sock"})");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.deprecated);
  EXPECT_FALSE(call("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": "/tmp/v.sock"})").deprecated);
  std::string wire = http_response(204, "", true, true);
  EXPECT_NE(wire.find("\r\nDeprecation: true\r\n"), std::string::npos) << wire;
  EXPECT_EQ(http_response(204, "", true).find("Deprecation"), std::string::npos);
}

TEST_F(Parity, BodiesWhereNoneBelongsAndNoneWhereOneDoes) {
  run({
      {"GET", "/", "{}", 400, "GET request cannot have a body."},
      {"GET", "/machine-config", R"({"vcpu_count": 1})", 400, "GET request cannot have a body."},
      {"GET", "/vm/config", "{}", 400, "GET request cannot have a body."},
      {"PUT", "/actions", "", 400, "Empty PUT request."},
      {"PATCH", "/vm", "", 400, "Empty PATCH request."},
      {"GET", "/version", "", 200, ""},
  });
}

TEST_F(Parity, LoggerLevelsInAnyCaseAndMetricsWithEmitId) {
  run({
      {"PUT", "/logger", R"({"level": "DEBUG"})", 204, ""},
      {"PUT", "/logger", R"({"level": "warning"})", 204, ""},
      {"PUT", "/logger", R"({"level": "tRaCe"})", 204, ""},
      {"PUT", "/logger", R"({"level": "Verbose"})", 400, "logger.level"},
      {"PUT", "/logger", R"({"module": "api_server"})", 400, "module"},
      {"PUT", "/metrics", R"({"metrics_path": "/tmp/m", "emit_id": "yes"})", 400, "metrics.emit_id"},
      {"PUT", "/metrics", R"({"metrics_path": "/tmp/m", "properties": {"k": 1}})", 400, "metrics.properties.k"},
      {"PUT", "/metrics", R"({"metrics_path": "/tmp/m", "emit_id": true, "properties": {"host": "h1"}})", 204, ""},
  });
  ASSERT_TRUE(vm.metrics);
  EXPECT_TRUE(vm.metrics->emit_id);
  EXPECT_EQ(vm.metrics->properties.at("host"), "h1");
  Json line = Json::parse(metrics_line(5, {}, "parity-vm", vm.metrics->properties));
  EXPECT_EQ(line, (Json{{"utc_timestamp_ms", 5}, {"id", "parity-vm"}, {"properties", {{"host", "h1"}}}}));
}

TEST_F(Parity, UnimplementedFeaturesAre400NamingTheFeature) {
  run({
      {"PUT", "/balloon", R"({"amount_mib": 1, "deflate_on_oom": false})", 400, "the balloon device"},
      {"GET", "/balloon/statistics", "", 400, "the balloon device"},
      {"PUT", "/mmds", "{}", 400, "MMDS"},
      {"PUT", "/mmds/config", R"({"network_interfaces": ["eth0"]})", 400, "MMDS"},
      {"PUT", "/entropy", "{}", 400, "entropy device"},
      {"PUT", "/cpu-config", "{}", 400, "CPU templates"},
      {"PUT", "/pmem/p0", "{}", 400, "pmem"},
      {"PUT", "/hotplug/memory", "{}", 400, "memory hotplug"},
      {"PUT", "/snapshot/create", "{}", 400, "snapshot_path is required"},
      {"PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"})", 400,
       "cpu_template"},
  });
}

// The document loads back into Firecracker: only Firecracker's keys, the root drive first.
TEST_F(Parity, VmConfigIsFirecrackersDocument) {
  run({
      {"PUT", "/drives/data", R"({"drive_id": "data", "path_on_host": ")" + p("root.img") +
                                  R"(", "is_root_device": false})", 204, ""},
      {"PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ")" + p("root.img") +
                                    R"(", "is_root_device": true})", 204, ""},
  });
  Json c = Json::parse(call("GET", "/vm/config").body);
  ASSERT_EQ(c.at("drives").size(), 2u);
  EXPECT_EQ(c.at("drives")[0].at("drive_id"), "rootfs");
  EXPECT_EQ(c.at("drives")[1].at("drive_id"), "data");
  EXPECT_FALSE(c.at("machine-config").contains("prefault"));
  for (auto it = c.begin(); it != c.end(); ++it) {
    EXPECT_TRUE(it.key() == "boot-source" || it.key() == "machine-config" || it.key() == "drives" ||
                it.key() == "network-interfaces" || it.key() == "vsock" || it.key() == "logger" || it.key() == "metrics")
        << it.key();
  }
}

TEST_F(Parity, AfterStart) {
  ASSERT_EQ(call("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ")" + p("root.img") +
                                              R"(", "is_root_device": true})").status, 204);
  start();
  run({
      {"PUT", "/boot-source", R"({"kernel_image_path": ")" + p("vmlinux") + "\"}", 400, "only allowed before InstanceStart"},
      {"PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})", 400, "only allowed before InstanceStart"},
      {"PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ")" + p("root.img") + "\"}", 204, ""},
      {"PUT", "/actions", R"({"action_type": "InstanceStart"})", 400, "already started"},
      {"PATCH", "/vm", R"({"state": "Paused"})", 204, ""},
      {"PATCH", "/vm", R"({"state": "Resumed"})", 204, ""},
  });
}

// PATCH /drives with path_on_host after InstanceStart (Firecracker's test_patch_drive):
// the new file is checked as a PUT checks it, a refusal names drive, path and reason and
// leaves the drive on its file, and an accepted one is what GET /vm/config shows.
TEST_F(Parity, PatchingPathOnHostAfterStartOpensTheNewFileLikeAPut) {
  ASSERT_EQ(call("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ")" + p("root.img") +
                                              R"(", "is_root_device": true})").status, 204);
  start();
  vm.real_files = true;
  std::ofstream(dir / "other.img") << std::string(8192, 'o');
  std::string missing = p("missing");
  auto patch = [](const std::string& path) { return R"({"drive_id": "rootfs", "path_on_host": ")" + path + "\"}"; };
  run({
      {"PATCH", "/drives/rootfs", patch(missing), 400,
       "cannot open drive 'rootfs' at '" + missing + "': No such file or directory"},
      {"PATCH", "/drives/rootfs", patch(p("fifo")), 400,
       "drive 'rootfs' at '" + p("fifo") + "' is neither a regular file nor a block device (it is a FIFO)"},
      {"PATCH", "/drives/rootfs", patch(dir.string()), 400, "cannot open drive 'rootfs' at '" + dir.string() + "'"},
      {"PATCH", "/drives/other", R"({"drive_id": "other", "path_on_host": ")" + p("other.img") + "\"}", 400,
       "no drive is called 'other'"},
  });
  EXPECT_EQ(Json::parse(call("GET", "/vm/config").body).at("drives")[0].at("path_on_host"), p("root.img"));
  if (::geteuid() != 0) {
    run({{"PATCH", "/drives/rootfs", patch(p("ro.img")), 400,
          "cannot open drive 'rootfs' at '" + p("ro.img") + "': Permission denied"}});
  }
  run({{"PATCH", "/drives/rootfs", patch(p("other.img")), 204, ""}});
  EXPECT_EQ(Json::parse(call("GET", "/vm/config").body).at("drives")[0].at("path_on_host"), p("other.img"));
}

}  // namespace
}  // namespace ember
