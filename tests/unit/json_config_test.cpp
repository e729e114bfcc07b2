// Firecracker's JSON VM description: parsing, errors naming the field, round trip,
// and equality with the same VM written in TOML.
#include <gtest/gtest.h>

#include <cstdio>
#include <tuple>

#include "api/cli.h"
#include "api/json_config.h"
#include "api/toml_config.h"
#include "base/util/error.h"

namespace ember {
namespace {

std::string error_of(const std::string& text) {
  try {
    full_config_from_json(parse_json(text, "test"));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kFullJson = R"({
  "boot-source": {"kernel_image_path": "/k/vmlinux", "initrd_path": "/k/initrd.gz", "boot_args": "console=ttyS0 quiet"},
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "huge_pages": "Transparent", "track_dirty_pages": true},
  "drives": [{"drive_id": "rootfs", "path_on_host": "/img/root.ext4", "is_root_device": true, "is_read_only": true,
              "io_engine": "Sync"},
             {"drive_id": "data", "path_on_host": "/img/data.ext4", "is_root_device": false, "cache": "none"}],
  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}],
  "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"},
  "logger": {"log_path": "/tmp/ember.log", "level": "Info", "show_level": true},
  "metrics": {"metrics_path": "/tmp/ember.metrics"}
})";

TEST(JsonConfig, FullDocument) {
  FullVmConfig c = full_config_from_json(parse_json(kFullJson, "test"));
  EXPECT_EQ(c.vm.boot.kernel_image_path, "/k/vmlinux");
  EXPECT_EQ(c.vm.boot.initrd_path, "/k/initrd.gz");
  EXPECT_EQ(c.vm.machine.vcpu_count, 2u);
  EXPECT_EQ(c.vm.machine.mem_size_mib, 256u);
  EXPECT_EQ(c.vm.machine.huge_pages, HugePages::Transparent);
  EXPECT_TRUE(c.vm.machine.track_dirty_pages);
  EXPECT_EQ(to_json(c).at("machine-config").at("track_dirty_pages"), true);
  ASSERT_EQ(c.vm.drives.size(), 2u);
  EXPECT_TRUE(c.vm.drives[0].is_root_device);
  EXPECT_TRUE(c.vm.drives[0].is_read_only);
  EXPECT_EQ(c.vm.drives[0].io_engine, DriveConfig::IoEngine::Sync);
  EXPECT_EQ(c.vm.drives[1].io_engine, DriveConfig::IoEngine::IoUring);
  EXPECT_EQ(c.vm.drives[0].cache, DriveConfig::Cache::Writeback);
  EXPECT_EQ(c.vm.drives[1].cache, DriveConfig::Cache::None);
  // ember's "cache" goes out only when it is not the default, so Firecracker's shape is kept.
  EXPECT_FALSE(to_json(c).at("drives").at(0).contains("cache"));
  EXPECT_EQ(to_json(c).at("drives").at(1).at("cache"), "none");
  ASSERT_EQ(c.vm.nets.size(), 1u);
  EXPECT_EQ(c.vm.nets[0].host_dev_name, "tap0");
  ASSERT_TRUE(c.vm.vsock);
  EXPECT_EQ(c.vm.vsock->uds_path, "/tmp/v.sock");
  ASSERT_TRUE(c.logger);
  EXPECT_EQ(c.logger->level, log::Level::Info);
  EXPECT_TRUE(c.logger->show_level);
  ASSERT_TRUE(c.metrics);
  EXPECT_EQ(c.metrics->metrics_path, "/tmp/ember.metrics");
}

// Both of Firecracker's cache types are taken: ember always offers flush and honours it, which
// is Firecracker's "Writeback", and GET /vm/config says so.
TEST(JsonConfig, CacheTypeUnsafeOrWriteback) {
  for (const char* type : {"Unsafe", "Writeback"}) {
    DriveConfig d = drive_from_json(parse_json(std::string(R"({"drive_id": "d", "path_on_host": "/d", "is_root_device": false,
                                                                "cache_type": ")") + type + "\"}",
                                               "t"));
    EXPECT_EQ(to_json(d).at("cache_type"), "Writeback") << type;
  }
  try {
    drive_from_json(parse_json(R"({"drive_id": "d", "path_on_host": "/d", "is_root_device": false, "cache_type": "None"})", "t"));
    ADD_FAILURE() << "cache_type None was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache_type must be \"Unsafe\" or \"Writeback\" (got \"None\")"), std::string::npos)
        << e.what();
  }
}

TEST(JsonConfig, DefaultsMatchFirecracker) {
  FullVmConfig c = full_config_from_json(parse_json(R"({"boot-source": {"kernel_image_path": "/k"}})", "t"));
  EXPECT_EQ(c.vm.boot.boot_args, kDefaultBootArgs);
  EXPECT_EQ(c.vm.machine.vcpu_count, 1u);
  EXPECT_EQ(c.vm.machine.mem_size_mib, 128u);
  EXPECT_FALSE(c.logger);
}

TEST(JsonConfig, ErrorsNameTheField) {
  EXPECT_NE(error_of("{").find("invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("[]").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{}").find("\"boot-source\" is required"), std::string::npos);
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k", "colour": 1}})"),
            "boot-source: unknown field 'colour'");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": 7}})"), "boot-source.kernel_image_path must be a string");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": "2", "mem_size_mib": 64}})"),
            "machine-config.vcpu_count must be a whole number between 1 and 32");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 1.5, "mem_size_mib": 64}})"),
            "machine-config.vcpu_count must be a whole number between 1 and 32");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 33, "mem_size_mib": 64}})"),
            "machine-config.vcpu_count must be between 1 and 32 (got 33)");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": -1, "mem_size_mib": 64}})"),
            "machine-config.vcpu_count must be a whole number between 1 and 32");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 1}})"),
            "machine-config.mem_size_mib is required");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "balloon": {"amount_mib": 1}})"),
            "VM config.balloon is not supported by ember");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "surprise": 1})"), "VM config: unknown field 'surprise'");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"},
      "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false, "rate_limiter": {"x": 1}}]})"),
            "drive.rate_limiter: unknown field 'x'");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"},
      "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false, "cache": "None"}]})"),
            "drive.cache must be \"writeback\" or \"none\" (got \"None\")");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"},
      "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false, "cache": true}]})"),
            "drive.cache must be a string");
  // Rules over the whole configuration are checked once, when the VM is started (validate(),
  // called by VmmRunner for every front end), not by the parser.
  FullVmConfig two_roots = full_config_from_json(parse_json(R"({"boot-source": {"kernel_image_path": "/k"},
      "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": true},
                 {"drive_id": "b", "path_on_host": "/b", "is_root_device": true}]})", "t"));
  try {
    validate(two_roots.vm);
    ADD_FAILURE() << "two root drives passed validation";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "only one drive can be the root device (2 are)");
  }
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": {}})"), "drives must be a JSON array");
  EXPECT_NE(error_of(R"({"boot-source": {"kernel_image_path": "/k"},
      "network-interfaces": [{"iface_id": "e", "host_dev_name": "tap0", "guest_mac": "nope"}]})").find("guest_mac"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "vsock": {"guest_cid": 2, "uds_path": "/v"}})")
                .find("guest_cid must be between 3"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "logger": {"level": "Loud"}})").find("logger.level"),
            std::string::npos);
}

TEST(JsonConfig, SerialIsFirecrackersSerialDevice) {
  FullVmConfig c = full_config_from_json(parse_json(
      R"({"boot-source": {"kernel_image_path": "/k"},
          "serial": {"serial_out_path": "/tmp/console", "rate_limiter": {"size": 2048, "refill_time": 100}}})",
      "test"));
  EXPECT_EQ(c.vm.serial.output, SerialConfig::Output::File);
  EXPECT_EQ(c.vm.serial.path, "/tmp/console");
  EXPECT_EQ(c.vm.serial.rate_limiter, (virtio::TokenBucketConfig{.size = 2048, .refill_time_ms = 100}));
  Json out = to_json(c);
  EXPECT_EQ(out.at("serial").at("serial_out_path"), "/tmp/console");
  EXPECT_EQ(out.at("serial").at("rate_limiter").at("size"), 2048);
  EXPECT_EQ(to_json(full_config_from_json(parse_json(out.dump(), "again"))), out);
  EXPECT_FALSE(to_json(full_config_from_json(parse_json(R"({"boot-source": {"kernel_image_path": "/k"}})", "t")))
                   .contains("serial"));
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "serial": {"serial_out_path": ""}})"),
            "serial.serial_out_path must not be empty");
  EXPECT_EQ(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "serial": {"path": "/x"}})"),
            "serial: unknown field 'path'");
  EXPECT_NE(error_of(R"({"boot-source": {"kernel_image_path": "/k"}, "serial": {"rate_limiter": {"size": 5}}})")
                .find("serial.rate_limiter.refill_time"),
            std::string::npos);
}

TEST(JsonConfig, RoundTripsThroughItsOwnOutput) {
  FullVmConfig first = full_config_from_json(parse_json(kFullJson, "test"));
  Json once = to_json(first);
  FullVmConfig second = full_config_from_json(parse_json(once.dump(), "again"));
  EXPECT_EQ(to_json(second), once);
}

TEST(JsonConfig, MachineConfigPatchKeepsTheRest) {
  MachineConfig base;
  base.vcpu_count = 4;
  base.mem_size_mib = 512;
  MachineConfig m = machine_config_from_json(parse_json(R"({"mem_size_mib": 1024})", "t"), base, true);
  EXPECT_EQ(m.vcpu_count, 4u);
  EXPECT_EQ(m.mem_size_mib, 1024u);
}

TEST(JsonConfig, SameVmInTomlAndJsonIsEqual) {
  VmConfig toml = parse_toml_config(R"(
[boot-source]
kernel_image_path = "/k/vmlinux"
initrd_path = "/k/initrd.gz"
boot_args = "console=ttyS0 quiet"

[machine-config]
vcpu_count = 2
mem_size_mib = 256
huge_pages = "Transparent"
track_dirty_pages = true

[[drive]]
drive_id = "rootfs"
path_on_host = "/img/root.ext4"
is_root_device = true
is_read_only = true
io_engine = "sync"

[[drive]]
id = "data"
path = "/img/data.ext4"
cache = "none"

[[net]]
iface_id = "eth0"
host_dev_name = "tap0"
guest_mac = "06:00:ac:10:00:02"

[vsock]
guest_cid = 3
uds_path = "/tmp/v.sock"
)",
                                    "vm.toml", "/");
  FullVmConfig json = full_config_from_json(parse_json(kFullJson, "test"));
  FullVmConfig from_toml{toml, json.logger, json.metrics};
  EXPECT_EQ(to_json(from_toml), to_json(json));
  EXPECT_EQ(toml.serial.output, json.vm.serial.output);
  EXPECT_EQ(toml.serial.input, json.vm.serial.input);
  EXPECT_EQ(toml.machine.prefault, json.vm.machine.prefault);
}

}  // namespace
}  // namespace ember

namespace ember {
namespace {

TEST(ApiCli, FirecrackerStyleFlags) {
  CliOptions o = parse_cli({"--api-sock", "/tmp/s", "--id", "vm7", "--level", "Debug", "--log-path", "/tmp/l",
                            "--metrics-path", "/tmp/m"});
  EXPECT_EQ(o.api_sock, "/tmp/s");
  EXPECT_EQ(o.instance_id, "vm7");
  EXPECT_EQ(o.log_level, "Debug");
  EXPECT_EQ(o.log_path, "/tmp/l");
  EXPECT_EQ(o.metrics_path, "/tmp/m");
  EXPECT_EQ(parse_cli({"--log-level", "info"}).log_level, "info");
  EXPECT_TRUE(parse_cli({"--config-file", "vm.json", "--no-api"}).no_api);
  EXPECT_THROW(parse_cli({"--no-api", "--api-sock", "/tmp/s"}), Error);
  EXPECT_THROW(parse_cli({"--config", "a.toml", "--config-file", "b.json"}), Error);
}

// Where Firecracker would serve /run/firecracker.socket, ember does too; its own ways to give
// a VM (TOML, flags, --restore) keep booting without an API, as before.
TEST(ApiCli, DefaultApiSocketWhereFirecrackerServesIt) {
  auto sock = [](std::vector<std::string> args) { return api_socket_path(parse_cli(args)); };
  const std::optional<std::string> fc = "/run/firecracker.socket";
  EXPECT_EQ(sock({}), fc);
  EXPECT_EQ(sock({"--id", "vm1"}), fc);  // as ember-jailer runs it with no ember options
  EXPECT_EQ(sock({"--id", "vm1", "--config-file", "/fcConfig.json"}), fc);  // Kata's jailed Go runtime
  EXPECT_EQ(sock({"--config-file", "vm.json", "--log-path", "/l", "--level", "Debug", "--metrics-path", "/m"}), fc);
  EXPECT_EQ(sock({"--config-file", "vm.json", "--api-sock", "/tmp/s"}), "/tmp/s");
  EXPECT_EQ(sock({"--api-sock", "/tmp/s", "--config", "vm.toml"}), "/tmp/s");
  EXPECT_EQ(sock({"--config-file", "vm.json", "--no-api"}), std::nullopt);
  EXPECT_EQ(sock({"--no-api"}), std::nullopt);
  EXPECT_EQ(sock({"--config", "vm.toml"}), std::nullopt);
  EXPECT_EQ(sock({"--kernel", "vmlinux"}), std::nullopt);
  EXPECT_EQ(sock({"--config-file", "vm.json", "--vcpus", "2"}), std::nullopt);
  EXPECT_EQ(sock({"--drive", "id=d,path=x"}), std::nullopt);
  EXPECT_EQ(sock({"--restore", "vm.snap", "--mem-file", "vm.mem"}), std::nullopt);
}

// Kata Containers' Go runtime runs `<path> --version`, takes the second space-separated word of
// the first line, drops a leading "v", and wants a semantic version of at least 0.21.1.
TEST(ApiCli, VersionLineKataAcceptsThatStillSaysEmber) {
  EXPECT_EQ(version_text("0.1.0"), "Firecracker v1.12.1 API, served by ember 0.1.0\n");
  std::string printed;
  if (FILE* p = ::popen(EMBER_BINARY " --version", "r")) {
    char buf[256];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) printed.append(buf, n);
    EXPECT_EQ(::pclose(p), 0);
  }
  EXPECT_EQ(printed, version_text(EMBER_VERSION));
  std::string first_line = printed.substr(0, printed.find('\n'));
  std::vector<std::string> fields;
  for (size_t start = 0, space;; start = space + 1) {
    space = first_line.find(' ', start);
    fields.push_back(first_line.substr(start, space - start));
    if (space == std::string::npos) break;
  }
  ASSERT_GT(fields.size(), 1u);
  std::string version = fields[1].substr(fields[1].rfind('v', 0) == 0 ? 1 : 0);
  unsigned major = 0, minor = 0, patch = 0;
  char rest = 0;
  ASSERT_EQ(std::sscanf(version.c_str(), "%u.%u.%u%c", &major, &minor, &patch, &rest), 3) << version;
  EXPECT_GE(std::make_tuple(major, minor, patch), std::make_tuple(0u, 21u, 1u));
  EXPECT_NE(first_line.find("ember " EMBER_VERSION), std::string::npos);
}

// Firecracker's flags that shape the API: honoured, or refused saying why.
TEST(ApiCli, FirecrackerApiFlags) {
  EXPECT_EQ(parse_cli({}).http_api_max_payload_size, 51200u);
  CliOptions o = parse_cli({"--http-api-max-payload-size", "250", "--show-level", "--show-log-origin", "--boot-timer"});
  EXPECT_EQ(o.http_api_max_payload_size, 250u);
  EXPECT_TRUE(o.show_level);
  EXPECT_TRUE(o.show_log_origin);
  EXPECT_TRUE(o.boot_timer);
  EXPECT_THROW(parse_cli({"--http-api-max-payload-size", "0"}), Error);
  EXPECT_THROW(parse_cli({"--http-api-max-payload-size", "big"}), Error);
  for (const char* flag : {"--module", "--start-time-us", "--start-time-cpu-us", "--parent-cpu-time-us"}) {
    try {
      parse_cli({flag, "1"});
      ADD_FAILURE() << flag << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(flag) + " is not supported by ember: "), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace ember
