// TOML launcher format and command-line flags.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "api/cli.h"
#include "api/toml_config.h"
#include "base/util/error.h"
#include "vmm/config_files.h"

namespace ember {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_toml_config(text, "vm.toml", "/cfg");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TomlConfig, FullConfig) {
  VmConfig c = parse_toml_config(R"(
[boot-source]
kernel_image_path = "kernels/vmlinux"
initrd_path = "/abs/initrd.gz"
boot_args = "console=ttyS0 quiet"

[machine-config]
vcpu_count = 4
mem_size_mib = 2048
huge_pages = "Transparent"
prefault = false
smt = false

[serial]
output = "file"
path = "console.log"
input = false
)",
                                 "vm.toml", "/cfg");
  EXPECT_EQ(c.boot.kernel_image_path, "/cfg/kernels/vmlinux");
  EXPECT_EQ(c.boot.initrd_path, "/abs/initrd.gz");
  EXPECT_EQ(c.boot.boot_args, "console=ttyS0 quiet");
  EXPECT_EQ(c.machine.vcpu_count, 4u);
  EXPECT_EQ(c.machine.mem_size_mib, 2048u);
  EXPECT_EQ(c.machine.huge_pages, HugePages::Transparent);
  EXPECT_EQ(c.machine.prefault, Prefault::Off);
  EXPECT_EQ(c.serial.output, SerialConfig::Output::File);
  EXPECT_EQ(c.serial.path, "/cfg/console.log");
  EXPECT_FALSE(c.serial.input);
  EXPECT_NO_THROW(validate(c));
}

TEST(TomlConfig, DefaultsMatchFirecracker) {
  VmConfig c = parse_toml_config("[boot-source]\nkernel_image_path = \"k\"\n", "vm.toml", "/cfg");
  EXPECT_EQ(c.machine.vcpu_count, 1u);
  EXPECT_EQ(c.machine.mem_size_mib, 128u);
  EXPECT_EQ(c.boot.boot_args, kDefaultBootArgs);
  EXPECT_EQ(c.machine.prefault, Prefault::Background);
  EXPECT_EQ(c.serial.output, SerialConfig::Output::Stdout);
}

TEST(TomlConfig, ErrorsNameKeyAndLine) {
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\nkernel_path = \"x\"\n"),
            "vm.toml:3: unknown key 'kernel_path' in [boot-source]");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[machine-config]\nvcpu_count = \"two\"\n"),
            "vm.toml:4: machine-config.vcpu_count must be an integer");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[machine-config]\nvcpu_count = 33\n"),
            "vm.toml:4: machine-config.vcpu_count must be between 1 and 32 (got 33)");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[machine-config]\nmem_size_mib = 0\n"),
            "vm.toml:4: machine-config.mem_size_mib must be between 2 and 1048576 (got 0)");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = 5\n"), "vm.toml:2: boot-source.kernel_image_path must be a string");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[drives]\n"),
            "vm.toml:3: unknown table or key 'drives' (expected [boot-source], [machine-config], [serial], [[drive]], [[net]], [vsock] or [restore])");
  EXPECT_EQ(error_of("[machine-config]\nvcpu_count = 1\n"), "vm.toml: [boot-source] kernel_image_path is required");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[machine-config]\nhuge_pages = \"1G\"\n"),
            "vm.toml:4: machine-config.huge_pages must be \"None\", \"Transparent\" or \"2M\" (got \"1G\")");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[machine-config]\nsmt = true\n"),
            "vm.toml:4: machine-config.smt = true is not supported: ember presents one thread per core");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[serial]\noutput = \"file\"\n"),
            "vm.toml: [serial] output = \"file\" needs a path");
  EXPECT_EQ(error_of("[boot-source]\nkernel_image_path = \"k\"\n[serial]\nrate_limiter = { size = 10 }\n"),
            "vm.toml:4: serial.rate_limiter needs size and refill_time");
}

TEST(TomlConfig, SerialRateLimiterIsATokenBucket) {
  VmConfig c = parse_toml_config(
      "[boot-source]\nkernel_image_path = \"k\"\n[serial]\n"
      "rate_limiter = { size = 4096, refill_time = 1000, one_time_burst = 100 }\n",
      "vm.toml", "/cfg");
  EXPECT_EQ(c.serial.rate_limiter, (virtio::TokenBucketConfig{.size = 4096, .one_time_burst = 100, .refill_time_ms = 1000}));
  EXPECT_EQ(c.serial.output, SerialConfig::Output::Stdout);
}

TEST(TomlConfig, SyntaxErrorsGiveLineAndColumn) {
  std::string e = error_of("[boot-source]\nkernel_image_path = \"k\n");
  EXPECT_EQ(e.rfind("vm.toml:2:", 0), 0u) << e;
  e = error_of("[boot-source]\nkernel_image_path = \"a\"\nkernel_image_path = \"b\"\n");
  EXPECT_EQ(e.rfind("vm.toml:3:", 0), 0u) << e;
}

// Found by toml_config_fuzz: toml++ 3.3.0 reached __builtin_unreachable() classifying
// some non-ASCII characters (U+025C, U+00E9, U+032A) where a key or whitespace may
// stand. The sanitized build (UBSan) aborted here; now each is a syntax error.
TEST(TomlConfig, NonAsciiOutsideStringsIsASyntaxError) {
  for (const char* text : {"[machine\xc9\x9c" "config]\n", "k\xc3\xa9y = 1\n", "\xcc\xaa", "a = 1 \xc3\xa9\n",
                           "s = \"\"\"\\\n\xc2\xa7\"\"\"\n"}) {
    std::string e = error_of(text);
    EXPECT_EQ(e.rfind("vm.toml:", 0), 0u) << e;
  }
  // Inside strings such characters are just text.
  EXPECT_EQ(parse_toml_config("[boot-source]\nkernel_image_path = \"/home/jos\xc3\xa9/k\"\n", "vm.toml", "/cfg")
                .boot.kernel_image_path,
            "/home/jos\xc3\xa9/k");
}

TEST(TomlConfig, MissingFile) {
  try {
    load_toml_config("/nonexistent/vm.toml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/vm.toml"), std::string::npos);
  }
}

TEST(Cli, FlagsOverrideFile) {
  VmConfig c = parse_toml_config("[boot-source]\nkernel_image_path = \"k\"\n", "vm.toml", "/cfg");
  CliOptions o = parse_cli({"--config", "vm.toml", "--vcpus", "2", "--mem-mib", "512", "--kernel", "/k2",
                            "--initrd", "/i", "--cmdline", "quiet", "--serial-out", "none", "--no-prefault"});
  apply_overrides(o, c);
  EXPECT_EQ(*o.config_path, "vm.toml");
  EXPECT_EQ(c.machine.vcpu_count, 2u);
  EXPECT_EQ(c.machine.mem_size_mib, 512u);
  EXPECT_EQ(c.boot.kernel_image_path, "/k2");
  EXPECT_EQ(c.boot.initrd_path, "/i");
  EXPECT_EQ(c.boot.boot_args, "quiet");
  EXPECT_EQ(c.serial.output, SerialConfig::Output::None);
  EXPECT_EQ(c.machine.prefault, Prefault::Off);
}

// ACPI is on unless the TOML file or --no-acpi turns it off (an ember setting).
TEST(TomlConfig, AcpiSwitch) {
  EXPECT_TRUE(parse_toml_config("[boot-source]\nkernel_image_path = \"k\"\n", "vm.toml", "/cfg").acpi);
  VmConfig off = parse_toml_config("[boot-source]\nkernel_image_path = \"k\"\nacpi = false\n", "vm.toml", "/cfg");
  EXPECT_FALSE(off.acpi);
  EXPECT_NE(error_of("[boot-source]\nkernel_image_path = \"k\"\nacpi = \"no\"\n").find("vm.toml:3"), std::string::npos);
  VmConfig c;
  apply_overrides(parse_cli({"--no-acpi"}), c);
  EXPECT_FALSE(c.acpi);
  EXPECT_FALSE(acpi_enabled(c));
}

TEST(Cli, NetFlagAddsInterfaces) {
  VmConfig c;
  apply_overrides(parse_cli({"--net", "iface_id=eth0,tap=tap0,mac=06:00:00:00:00:01", "--net", "iface_id=eth1,tap=t1"}),
                  c);
  ASSERT_EQ(c.nets.size(), 2u);
  EXPECT_EQ(c.nets[0].iface_id, "eth0");
  EXPECT_EQ(c.nets[0].host_dev_name, "tap0");
  EXPECT_EQ(c.nets[0].guest_mac, "06:00:00:00:00:01");
  EXPECT_EQ(c.nets[1].guest_mac, "");
  EXPECT_THROW(parse_cli({"--net", "iface_id=eth0"}), Error);
  EXPECT_THROW(parse_cli({"--net", "iface_id=eth0,tap=t,bogus=1"}), Error);
}

// ember's per-drive cache mode: TOML `cache`, --drive cache=; writeback by default.
TEST(TomlConfig, DriveCache) {
  const std::string head = "[boot-source]\nkernel_image_path = \"k\"\n[[drive]]\nid = \"d\"\npath = \"d.img\"\n";
  EXPECT_EQ(parse_toml_config(head, "vm.toml", "/cfg").drives.at(0).cache, DriveConfig::Cache::Writeback);
  EXPECT_EQ(parse_toml_config(head + "cache = \"none\"\n", "vm.toml", "/cfg").drives.at(0).cache,
            DriveConfig::Cache::None);
  EXPECT_EQ(parse_toml_config(head + "cache = \"writeback\"\n", "vm.toml", "/cfg").drives.at(0).cache,
            DriveConfig::Cache::Writeback);
  EXPECT_EQ(error_of(head + "cache = \"unsafe\"\n"),
            "vm.toml:6: drive.cache must be \"writeback\" or \"none\" (got \"unsafe\")");
  EXPECT_EQ(error_of(head + "cache = false\n"), "vm.toml:6: drive.cache must be a string");
  VmConfig c;
  apply_overrides(parse_cli({"--drive", "id=a,path=/a,cache=none", "--drive", "id=b,path=/b"}), c);
  ASSERT_EQ(c.drives.size(), 2u);
  EXPECT_EQ(c.drives[0].cache, DriveConfig::Cache::None);
  EXPECT_EQ(c.drives[1].cache, DriveConfig::Cache::Writeback);
  EXPECT_THROW(parse_cli({"--drive", "id=a,path=/a,cache=direct"}), Error);
}

TEST(Cli, BadFlags) {
  EXPECT_THROW(parse_cli({"--bogus"}), Error);
  EXPECT_THROW(parse_cli({"--vcpus"}), Error);
  EXPECT_THROW(parse_cli({"--vcpus", "two"}), Error);
  EXPECT_THROW(parse_cli({"--mem-mib", "-5"}), Error);
  EXPECT_THROW(parse_cli({"--mem-mib", "99999999999999999999999"}), Error);
}

TEST(Cli, VsockFlag) {
  VmConfig c = parse_toml_config("[boot-source]\nkernel_image_path = \"k\"\n[vsock]\nguest_cid = 9\nuds_path = \"/a\"\n",
                                 "vm.toml", "/cfg");
  apply_overrides(parse_cli({"--vsock", "cid=5,uds=/tmp/v.sock"}), c);
  ASSERT_TRUE(c.vsock);
  EXPECT_EQ(c.vsock->guest_cid, 5u);
  EXPECT_EQ(c.vsock->uds_path, "/tmp/v.sock");
  EXPECT_THROW(parse_cli({"--vsock", "cid=5"}), Error);
  EXPECT_THROW(parse_cli({"--vsock", "uds=/x"}), Error);
  EXPECT_THROW(parse_cli({"--vsock", "cid=x,uds=/x"}), Error);
  EXPECT_THROW(parse_cli({"--vsock", "cid=5,uds=/x,port=1"}), Error);
  c.vsock->guest_cid = 2;  // reserved for the host
  EXPECT_THROW(validate(c), Error);
}

TEST(Validate, RangesChecked) {
  VmConfig c;
  c.boot.kernel_image_path = "k";
  EXPECT_NO_THROW(validate(c));
  c.machine.vcpu_count = 0;
  EXPECT_THROW(validate(c), Error);
  c.machine.vcpu_count = 33;
  EXPECT_THROW(validate(c), Error);
  c.machine.vcpu_count = 1;
  c.machine.mem_size_mib = 1;
  EXPECT_THROW(validate(c), Error);
  c.machine.mem_size_mib = 129;
  c.machine.huge_pages = HugePages::Huge2M;
  EXPECT_THROW(validate(c), Error);
}

// 16 drives, 8 nets and vsock are each within their own limit but need 25 of the 19
// interrupts virtio devices have: refused when validated, not late in VM setup.
TEST(Validate, VirtioDevicesWithinTheInterruptBudget) {
  VmConfig c;
  c.boot.kernel_image_path = "k";
  for (int i = 0; i < 16; ++i) c.drives.push_back({"d" + std::to_string(i), "/p" + std::to_string(i)});
  EXPECT_NO_THROW(validate(c));
  c.nets.push_back({"n0", "tap0", ""});
  c.nets.push_back({"n1", "tap1", ""});
  c.nets.push_back({"n2", "tap2", ""});
  EXPECT_NO_THROW(validate(c));  // 19: every pin used
  c.vsock = VsockConfig{"", 3, "/tmp/v.sock"};
  try {
    validate(c);
    ADD_FAILURE() << "20 virtio devices accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("need 20 interrupts; ember has 19"), std::string::npos) << e.what();
  }
}


TEST(TomlConfig, NetAndVsock) {
  VmConfig c = parse_toml_config(R"(
[boot-source]
kernel_image_path = "/k"
[[net]]
iface_id = "eth0"
host_dev_name = "tap0"
guest_mac = "06:00:AC:10:00:02"
[[net]]
iface_id = "eth1"
host_dev_name = "tap1"
[vsock]
guest_cid = 3
uds_path = "v.sock"
)",
                                 "vm.toml", "/cfg");
  ASSERT_EQ(c.nets.size(), 2u);
  EXPECT_EQ(c.nets[0].iface_id, "eth0");
  EXPECT_EQ(c.nets[0].host_dev_name, "tap0");
  EXPECT_EQ(c.nets[0].guest_mac, "06:00:AC:10:00:02");
  EXPECT_EQ(c.nets[1].guest_mac, "");
  ASSERT_TRUE(c.vsock.has_value());
  EXPECT_EQ(c.vsock->guest_cid, 3u);
  EXPECT_EQ(c.vsock->uds_path, "/cfg/v.sock");
}

TEST(TomlConfig, NetAndVsockErrors) {
  const std::string boot = "[boot-source]\nkernel_image_path = \"/k\"\n";
  EXPECT_NE(error_of(boot + "[[net]]\nhost_dev_name = \"tap0\"\n").find(": a network interface has no iface_id"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[[net]]\niface_id = \"a\"\nhost_dev_name = \"this-name-is-too-long\"\n")
                .find("is not a valid interface name"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[[net]]\niface_id = \"a\"\nhost_dev_name = \"t\"\nguest_mac = \"06:00:zz:00:00:01\"\n")
                .find("guest_mac '06:00:zz:00:00:01' is not like"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[[net]]\niface_id = \"a\"\nhost_dev_name = \"t\"\nguest_mac = \"01:00:00:00:00:01\"\n")
                .find("multicast"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[[net]]\niface_id = \"a\"\nhost_dev_name = \"t\"\n[[net]]\niface_id = \"a\"\nhost_dev_name = \"u\"\n")
                .find("two network interfaces are called 'a'"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[[net]]\niface_id = \"a\"\nhost_dev_name = \"t\"\nmtu = 9000\n").find("unknown key 'mtu' in [net]"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[vsock]\nguest_cid = 2\nuds_path = \"/v\"\n").find("guest_cid must be between 3"),
            std::string::npos);
  EXPECT_NE(error_of(boot + "[vsock]\nuds_path = \"/v\"\n").find("[vsock] needs guest_cid"), std::string::npos);
  EXPECT_NE(error_of(boot + "[vsock]\nguest_cid = 5\n").find("vsock.uds_path is not set"), std::string::npos);
  EXPECT_NE(error_of(boot + "[vsock]\nguest_cid = 5\nuds_path = \"/" + std::string(120, 'x') + "\"\n").find("too long"),
            std::string::npos);
}

TEST(Validate, MacAddresses) {
  uint8_t mac[6];
  ASSERT_TRUE(parse_mac("aa:BB:0c:1d:Ee:ff", mac));
  EXPECT_EQ(mac[0], 0xaa);
  EXPECT_EQ(mac[1], 0xbb);
  EXPECT_EQ(mac[5], 0xff);
  EXPECT_FALSE(parse_mac("aa:bb:cc:dd:ee", mac));
  EXPECT_FALSE(parse_mac("aa-bb-cc-dd-ee-ff", mac));
  EXPECT_FALSE(parse_mac("aa:bb:cc:dd:ee:fg", mac));
}

// A snapshot load checks the drives only: the kernel and initrd a restored VM booted from may
// be gone, a drive may not.
TEST(ConfigFiles, ARestoreNeedsItsDrivesButNotItsKernel) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("ember-config-files-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "data.img") << std::string(4096, 'x');
  VmConfig config;
  config.boot.kernel_image_path = (dir / "gone-vmlinux").string();
  config.boot.initrd_path = (dir / "gone-initrd").string();
  DriveConfig drive;
  drive.drive_id = "data";
  drive.path_on_host = (dir / "data.img").string();
  config.drives.push_back(drive);
  EXPECT_NO_THROW(check_restore_files(config));
  EXPECT_THROW(check_files(config), ConfigError) << "a boot needs its kernel";
  fs::remove(dir / "data.img");
  try {
    check_restore_files(config);
    ADD_FAILURE() << "a missing drive was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.img"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember
