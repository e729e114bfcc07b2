// Snapshots from the front ends' side: PUT /snapshot/create and /snapshot/load through the
// router (against the fake VMM), the launcher's --restore flags, and the configuration
// section a snapshot carries.
#include <gtest/gtest.h>

#include "api/cli.h"
#include "api/request_router.h"
#include "api/toml_config.h"
#include "tests/unit/router_fixture.h"
#include "vmm/snapshot/vm_config_state.h"

namespace ember {
namespace {

class SnapshotApi : public RouterFixture {
 protected:
  void start_and_pause() {
    ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/k/vmlinux"})").status, 204);
    ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
    ASSERT_EQ(call("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  }
};

TEST_F(SnapshotApi, CreateOnAPausedVmPassesTheRequestOn) {
  start_and_pause();
  ASSERT_EQ(call("PUT", "/snapshot/create",
                 R"({"snapshot_type": "Full", "snapshot_path": "/s/vm.snap", "mem_file_path": "/s/vm.mem"})")
                .status,
            204);
  ASSERT_EQ(vm.snapshots.size(), 1u);
  EXPECT_EQ(vm.snapshots[0].snapshot_path, "/s/vm.snap");
  EXPECT_EQ(vm.snapshots[0].mem_file_path, "/s/vm.mem");
  EXPECT_EQ(vm.snapshots[0].type, SnapshotCreateParams::Type::Full);
  // snapshot_type defaults to Full, as in Firecracker.
  ASSERT_EQ(call("PUT", "/snapshot/create", R"({"snapshot_path": "/s/b", "mem_file_path": "/s/c"})").status, 204);
  EXPECT_EQ(vm.snapshots[1].type, SnapshotCreateParams::Type::Full);
}

TEST_F(SnapshotApi, CreateIsRefusedUnlessPausedAndForMalformedBodies) {
  const std::string body = R"({"snapshot_path": "/s/a", "mem_file_path": "/s/b"})";
  EXPECT_NE(fault("PUT", "/snapshot/create", body).find("needs a paused VM (it is Not started)"), std::string::npos);
  ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/k/vmlinux"})").status, 204);
  ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  EXPECT_NE(fault("PUT", "/snapshot/create", body).find("needs a paused VM (it is Running)"), std::string::npos);
  ASSERT_EQ(call("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_NE(fault("PUT", "/snapshot/create", R"({"mem_file_path": "/s/b"})").find("snapshot_path is required"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/create", R"({"snapshot_path": "/s/a"})").find("mem_file_path is required"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/create", R"({"snapshot_path": "/s/a", "mem_file_path": "/s/a"})").find("same file"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/create", R"({"snapshot_type": "Half", "snapshot_path": "/a", "mem_file_path": "/b"})")
                .find("snapshot_type must be \"Full\" or \"Diff\""),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/create", R"({"snapshot_path": "/a", "mem_file_path": "/b", "colour": 1})")
                .find("unknown field 'colour'"),
            std::string::npos);
  EXPECT_EQ(fault("GET", "/snapshot/create", ""), "GET is not allowed on /snapshot/create");
  EXPECT_TRUE(vm.snapshots.empty());
}

TEST_F(SnapshotApi, LoadTakesEveryFirecrackerFieldAndSetsTheConfiguration) {
  vm.snapshot_config.machine.mem_size_mib = 256;
  vm.snapshot_config.boot.kernel_image_path = "/k/from-the-snapshot";
  ASSERT_EQ(call("PUT", "/snapshot/load", R"({
      "snapshot_path": "/s/vm.snap",
      "mem_backend": {"backend_type": "Uffd", "backend_path": "/run/uffd.sock"},
      "track_dirty_pages": true, "resume_vm": true,
      "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap7"}],
      "vsock_override": {"uds_path": "/run/v.sock"}})")
                .status,
            204);
  ASSERT_TRUE(vm.loaded);
  EXPECT_EQ(vm.loaded->snapshot_path, "/s/vm.snap");
  EXPECT_EQ(vm.loaded->backend, SnapshotLoadParams::Backend::Uffd);
  EXPECT_EQ(vm.loaded->backend_path, "/run/uffd.sock");
  EXPECT_TRUE(vm.loaded->track_dirty_pages);
  EXPECT_TRUE(vm.loaded->resume_vm);
  ASSERT_EQ(vm.loaded->network_overrides.size(), 1u);
  EXPECT_EQ(vm.loaded->network_overrides[0].host_dev_name, "tap7");
  EXPECT_EQ(vm.loaded->vsock_uds_path, "/run/v.sock");
  // GET /vm/config shows the restored VM.
  Json config = Json::parse(call("GET", "/vm/config").body);
  EXPECT_EQ(config.at("machine-config").at("mem_size_mib"), 256);
  EXPECT_EQ(config.at("boot-source").at("kernel_image_path"), "/k/from-the-snapshot");
  // Only once.
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m"})").find("already Running"),
            std::string::npos);
}

TEST_F(SnapshotApi, LoadAcceptsTheOlderMemFilePathAndDefaultsToPaused) {
  ASSERT_EQ(call("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m"})").status, 204);
  EXPECT_EQ(vm.loaded->backend, SnapshotLoadParams::Backend::File);
  EXPECT_EQ(vm.loaded->backend_path, "/m");
  EXPECT_FALSE(vm.loaded->resume_vm);
  EXPECT_EQ(vm.state(), InstanceState::Paused);
}

TEST_F(SnapshotApi, LoadIsRefusedAfterConfigurationAndForMalformedBodies) {
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s"})").find("mem_backend is required"), std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/load",
                  R"({"snapshot_path": "/s", "mem_file_path": "/m", "mem_backend": {"backend_type": "File", "backend_path": "/m"}})")
                .find("not both"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_backend": {"backend_type": "Disk", "backend_path": "/m"}})")
                .find("backend_type must be \"File\" or \"Uffd\""),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m", "network_overrides": {}})")
                .find("network_overrides must be a JSON array"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m", "network_overrides": [{"iface_id": "a"}]})")
                .find("host_dev_name is required"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m", "resume_vm": "yes"})")
                .find("resume_vm must be true or false"),
            std::string::npos);
  EXPECT_FALSE(vm.loaded);
  // A configured VM cannot be replaced by a snapshot.
  ASSERT_EQ(call("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})").status, 204);
  EXPECT_NE(fault("PUT", "/snapshot/load", R"({"snapshot_path": "/s", "mem_file_path": "/m"})")
                .find("only allowed before anything of the VM is configured"),
            std::string::npos);
  EXPECT_FALSE(vm.loaded);
}

TEST(SnapshotCli, RestoreFlags) {
  EXPECT_FALSE(restore_request(parse_cli({"--kernel", "k"})));
  auto p = restore_request(parse_cli({"--restore", "s.snap", "--mem-file", "s.mem"}));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->snapshot_path, "s.snap");
  EXPECT_EQ(p->backend, SnapshotLoadParams::Backend::File);
  EXPECT_EQ(p->backend_path, "s.mem");
  EXPECT_TRUE(p->resume_vm);
  p = restore_request(parse_cli({"--restore", "s.snap", "--uffd-socket", "u.sock", "--restore-paused"}));
  EXPECT_EQ(p->backend, SnapshotLoadParams::Backend::Uffd);
  EXPECT_FALSE(p->resume_vm);
  EXPECT_THROW(restore_request(parse_cli({"--restore", "s"})), Error);
  EXPECT_THROW(restore_request(parse_cli({"--restore", "s", "--mem-file", "m", "--uffd-socket", "u"})), Error);
  EXPECT_THROW(restore_request(parse_cli({"--restore", "s", "--mem-file", "m", "--kernel", "k"})), Error);
  EXPECT_THROW(restore_request(parse_cli({"--mem-file", "m"})), Error);
}

// The launcher's TOML [restore]: the snapshot/load request's fields, relative paths from the
// file's folder, and only [serial] beside it.
TEST(SnapshotToml, RestoreTableIsTheLoadRequest) {
  TomlLaunch launch = parse_toml_launch(R"(
[restore]
snapshot_path = "vm.snap"
mem_file_path = "/m/vm.mem"
track_dirty_pages = true
vsock_override = { uds_path = "v.sock" }
network_overrides = [ { iface_id = "eth0", host_dev_name = "tap7" } ]

[serial]
output = "none"
)",
                                        "r.toml", "/cfg");
  ASSERT_TRUE(launch.restore);
  const SnapshotLoadParams& p = *launch.restore;
  EXPECT_EQ(p.snapshot_path, "/cfg/vm.snap");
  EXPECT_EQ(p.backend, SnapshotLoadParams::Backend::File);
  EXPECT_EQ(p.backend_path, "/m/vm.mem");
  EXPECT_TRUE(p.resume_vm) << "a launcher runs what it restores unless told otherwise";
  EXPECT_TRUE(p.track_dirty_pages);
  EXPECT_EQ(p.vsock_uds_path, "/cfg/v.sock");
  ASSERT_EQ(p.network_overrides.size(), 1u);
  EXPECT_EQ(p.network_overrides[0].host_dev_name, "tap7");
  EXPECT_EQ(launch.vm.serial.output, SerialConfig::Output::None);

  launch = parse_toml_launch("[restore]\nsnapshot_path = \"/s\"\nuffd_socket = \"/u.sock\"\nresume_vm = false\n", "r.toml", "/");
  EXPECT_EQ(launch.restore->backend, SnapshotLoadParams::Backend::Uffd);
  EXPECT_FALSE(launch.restore->resume_vm);
  EXPECT_FALSE(parse_toml_launch("[boot-source]\nkernel_image_path = \"/k\"\n", "b.toml", "/").restore);
}

TEST(SnapshotToml, RestoreTableRefusals) {
  auto error = [](const std::string& text) {
    try {
      parse_toml_launch(text, "r.toml", "/");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string ok = "[restore]\nsnapshot_path = \"/s\"\nmem_file_path = \"/m\"\n";
  EXPECT_NE(error(ok + "[boot-source]\nkernel_image_path = \"/k\"\n").find("[boot-source] (line 4) cannot go with [restore]"),
            std::string::npos);
  EXPECT_NE(error("[[drive]]\nid = \"d\"\npath = \"/d\"\n" + ok).find("[drive] (line 1) cannot go with [restore]"),
            std::string::npos);
  EXPECT_NE(error("[restore]\nmem_file_path = \"/m\"\n").find("needs snapshot_path"), std::string::npos);
  EXPECT_NE(error("[restore]\nsnapshot_path = \"/s\"\n").find("one of mem_file_path or uffd_socket"), std::string::npos);
  EXPECT_NE(error(ok + "uffd_socket = \"/u\"\n").find("one of mem_file_path or uffd_socket"), std::string::npos);
  EXPECT_NE(error(ok + "resume = true\n").find("unknown key 'resume' in [restore]"), std::string::npos);
  EXPECT_NE(error(ok + "network_overrides = [ { iface_id = \"eth0\" } ]\n").find("needs iface_id and host_dev_name"),
            std::string::npos);
  EXPECT_NE(error(ok + "vsock_override = { path = \"/v\" }\n").find("unknown key 'path'"), std::string::npos);
  try {
    parse_toml_config(ok, "r.toml", "/");
    ADD_FAILURE() << "parse_toml_config accepted [restore]";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[restore] is for the launcher"), std::string::npos);
  }
}

VmConfig sample_config() {
  VmConfig c;
  c.machine.vcpu_count = 2;
  c.machine.mem_size_mib = 300;
  c.machine.huge_pages = HugePages::Transparent;
  c.boot.kernel_image_path = "/k/vmlinux";
  c.boot.initrd_path = "/k/initrd";
  c.acpi = false;
  DriveConfig d;
  d.drive_id = "rootfs";
  d.path_on_host = "/d/root.img";
  d.is_read_only = d.is_root_device = true;
  d.io_engine = DriveConfig::IoEngine::Sync;
  d.rate_limiter.ops = virtio::TokenBucketConfig{100, 5, 1000};
  c.drives.push_back(d);
  NetConfig n;
  n.iface_id = "eth0";
  n.host_dev_name = "tap0";
  n.guest_mac = "06:00:00:00:00:01";
  n.tx_rate_limiter.bandwidth = virtio::TokenBucketConfig{1 << 20, 0, 100};
  c.nets.push_back(n);
  c.vsock = VsockConfig{"v", 7, "/run/v.sock"};
  return c;
}

TEST(SnapshotConfig, RoundTripsEveryFieldButTheConsole) {
  snapshot::StateWriter w;
  VmConfig c = sample_config();
  c.serial.output = SerialConfig::Output::None;
  snapshot::write_state(w, c);
  snapshot::StateReader r(w.data(), "test");
  VmConfig back = snapshot::read_vm_config(r);
  EXPECT_EQ(back.machine.vcpu_count, 2u);
  EXPECT_EQ(back.machine.mem_size_mib, 300u);
  EXPECT_EQ(back.machine.huge_pages, HugePages::Transparent);
  EXPECT_EQ(back.boot.kernel_image_path, "/k/vmlinux");
  EXPECT_EQ(back.boot.initrd_path, "/k/initrd");
  EXPECT_FALSE(back.acpi);
  ASSERT_EQ(back.drives.size(), 1u);
  EXPECT_EQ(back.drives[0].path_on_host, "/d/root.img");
  EXPECT_TRUE(back.drives[0].is_read_only && back.drives[0].is_root_device);
  EXPECT_EQ(back.drives[0].io_engine, DriveConfig::IoEngine::Sync);
  EXPECT_EQ(back.nets[0].guest_mac, "06:00:00:00:00:01");
  EXPECT_EQ(back.drives[0].rate_limiter, c.drives[0].rate_limiter);
  EXPECT_FALSE(back.drives[0].rate_limiter.bandwidth);
  EXPECT_EQ(back.nets[0].tx_rate_limiter, c.nets[0].tx_rate_limiter);
  EXPECT_FALSE(back.nets[0].rx_rate_limiter.enabled());
  ASSERT_TRUE(back.vsock);
  EXPECT_EQ(back.vsock->guest_cid, 7u);
  EXPECT_EQ(back.serial.output, SerialConfig::Output::Stdout);  // not saved: the restoring ember's choice
}

TEST(SnapshotConfig, EveryTruncationAndOutOfRangeValuesAreRefused) {
  snapshot::StateWriter w;
  snapshot::write_state(w, sample_config());
  const auto& bytes = w.data();
  for (size_t n = 0; n < bytes.size(); ++n) {
    snapshot::StateReader r(std::span<const uint8_t>(bytes.data(), n), "cut");
    EXPECT_THROW(snapshot::read_vm_config(r), Error) << "prefix of " << n << " bytes";
  }
  auto corrupt = bytes;
  corrupt[4 + 8 + 1] = 9;  // huge_pages
  snapshot::StateReader r(corrupt, "snapshot x: section config");
  try {
    snapshot::read_vm_config(r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "snapshot x: section config: huge_pages: unknown value 9");
  }
}

TEST(SnapshotConfig, OverridesMustNameWhatTheSnapshotHas) {
  VmConfig c = sample_config();
  SnapshotLoadParams p;
  p.network_overrides.push_back({"eth0", "tap9"});
  p.vsock_uds_path = "/run/new.sock";
  p.track_dirty_pages = true;
  snapshot::apply_overrides(c, p);
  EXPECT_TRUE(c.machine.track_dirty_pages) << "tracking is the load request's choice";
  EXPECT_EQ(c.nets[0].host_dev_name, "tap9");
  EXPECT_EQ(c.vsock->uds_path, "/run/new.sock");
  p.network_overrides = {{"eth1", "tap9"}};
  EXPECT_THROW(snapshot::apply_overrides(c, p), Error);
  c.vsock.reset();
  p.network_overrides.clear();
  EXPECT_THROW(snapshot::apply_overrides(c, p), Error);
}

}  // namespace
}  // namespace ember
