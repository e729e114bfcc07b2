// Rate limiters as every front end takes them: TOML ([[drive]] and [[net]]), the JSON
// config file, PUT and PATCH of drives and network interfaces (handed to the VMM after
// InstanceStart) and GET /vm/config; every invalid value refused naming its field.
#include <gtest/gtest.h>

#include "api/json_config.h"
#include "api/request_router.h"
#include "api/toml_config.h"
#include "base/util/error.h"
#include "tests/unit/router_fixture.h"

namespace ember {
namespace {

constexpr const char* kTomlHead = "[boot-source]\nkernel_image_path = \"k\"\n";

std::string toml_error(const std::string& text) {
  try {
    parse_toml_config(kTomlHead + text, "vm.toml", "/cfg");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string json_error(const std::string& limiter) {
  try {
    full_config_from_json(parse_json(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a",
        "path_on_host": "/a", "is_root_device": false, "rate_limiter": )" + limiter + "}]}",
                                     "t"));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RateLimiterToml, DrivesAndNetsTakeThemInlineOrAsSubTables) {
  VmConfig c = parse_toml_config(std::string(kTomlHead) + R"(
[[drive]]
id = "data"
path = "data.img"
rate_limiter = { bandwidth = { size = 1048576, refill_time = 1000 }, ops = { size = 100, one_time_burst = 50, refill_time = 1000 } }

[[net]]
iface_id = "eth0"
host_dev_name = "tap0"
[net.tx_rate_limiter.bandwidth]
size = 65536
refill_time = 100
)",
                                 "vm.toml", "/cfg");
  ASSERT_EQ(c.drives.size(), 1u);
  EXPECT_EQ(c.drives[0].rate_limiter.bandwidth, (TokenBucketConfig{1048576, 0, 1000}));
  EXPECT_EQ(c.drives[0].rate_limiter.ops, (TokenBucketConfig{100, 50, 1000}));
  ASSERT_EQ(c.nets.size(), 1u);
  EXPECT_EQ(c.nets[0].tx_rate_limiter.bandwidth, (TokenBucketConfig{65536, 0, 100}));
  EXPECT_FALSE(c.nets[0].rx_rate_limiter.enabled());
}

struct Refusal {
  const char* value;  // the rate limiter as written
  const char* message;
};

TEST(RateLimiterToml, InvalidValuesNameTheFileLineAndField) {
  const Refusal cases[] = {
      {"{ ops = { size = -1, refill_time = 10 } }",
       "drive.rate_limiter.ops.size must be between 0 and 1099511627776 (got -1)"},
      {"{ ops = { size = 1.5, refill_time = 10 } }", "drive.rate_limiter.ops.size must be an integer"},
      {"{ ops = { size = \"10\", refill_time = 10 } }", "drive.rate_limiter.ops.size must be an integer"},
      {"{ bandwidth = { size = 10, refill_time = 0 } }",
       "drive.rate_limiter.bandwidth.refill_time must not be 0 when size is not (the bucket would never refill)"},
      {"{ bandwidth = { size = 1099511627777, refill_time = 10 } }",
       "drive.rate_limiter.bandwidth.size must be between 0 and 1099511627776 (got 1099511627777)"},
      {"{ ops = { size = 1, refill_time = 3600001 } }",
       "drive.rate_limiter.ops.refill_time must be between 0 and 3600000 (got 3600001)"},
      {"{ ops = { size = 1, one_time_burst = -5, refill_time = 1 } }",
       "drive.rate_limiter.ops.one_time_burst must be between 0 and 1099511627776 (got -5)"},
      {"{ ops = { size = 1 } }", "drive.rate_limiter.ops needs size and refill_time"},
      {"{ ops = { size = 1, refill_time = 1, rate = 2 } }", "unknown key 'rate' in [drive.rate_limiter.ops]"},
      {"{ iops = { size = 1, refill_time = 1 } }", "unknown key 'iops' in [drive.rate_limiter]"},
      {"5", "[drive.rate_limiter] must be a table"},
  };
  for (const Refusal& c : cases) {
    EXPECT_EQ(toml_error(std::string("[[drive]]\nid = \"d\"\npath = \"d.img\"\nrate_limiter = ") + c.value + "\n"),
              std::string("vm.toml:6: ") + c.message);
  }
  EXPECT_EQ(toml_error("[[net]]\niface_id = \"e\"\nhost_dev_name = \"tap0\"\n"
                       "rx_rate_limiter = { ops = { size = 1, refill_time = 0 } }\n"),
            "vm.toml:6: net.rx_rate_limiter.ops.refill_time must not be 0 when size is not (the bucket would never "
            "refill)");
}

TEST(RateLimiterJson, ConfigFileTakesThemAndWritesThemBack) {
  FullVmConfig c = full_config_from_json(parse_json(R"({"boot-source": {"kernel_image_path": "/k"},
      "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false,
                  "rate_limiter": {"bandwidth": {"size": 4096, "refill_time": 100}}}],
      "network-interfaces": [{"iface_id": "e", "host_dev_name": "tap0",
                              "rx_rate_limiter": {"ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}},
                              "tx_rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}]})",
                                                    "t"));
  EXPECT_EQ(c.vm.drives[0].rate_limiter.bandwidth, (TokenBucketConfig{4096, 0, 100}));
  EXPECT_EQ(c.vm.nets[0].rx_rate_limiter.ops, (TokenBucketConfig{10, 5, 1000}));
  Json out = to_json(c);
  EXPECT_EQ(out["drives"][0]["rate_limiter"],
            Json::parse(R"({"bandwidth": {"size": 4096, "one_time_burst": 0, "refill_time": 100}})"));
  EXPECT_EQ(out["network-interfaces"][0]["rx_rate_limiter"],
            Json::parse(R"({"ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}})"));
  EXPECT_FALSE(out["network-interfaces"][0].contains("tx_rate_limiter"));  // size 0 limits nothing
  EXPECT_EQ(to_json(full_config_from_json(out)), out);
}

TEST(RateLimiterJson, InvalidValuesNameTheField) {
  const char* whole = "drive.rate_limiter.ops.size must be a whole number between 0 and 1099511627776";
  const Refusal cases[] = {
      {R"({"ops": {"size": -1, "refill_time": 10}})", whole},
      {R"({"ops": {"size": 2.5, "refill_time": 10}})", whole},
      {R"({"ops": {"size": "2", "refill_time": 10}})", whole},
      {R"({"bandwidth": {"size": 100, "refill_time": 0}})",
       "drive.rate_limiter.bandwidth.refill_time must not be 0 when size is not (the bucket would never refill)"},
      {R"({"bandwidth": {"size": 1099511627777, "refill_time": 10}})",
       "drive.rate_limiter.bandwidth.size must be between 0 and 1099511627776 (got 1099511627777)"},
      {R"({"bandwidth": {"size": 1, "refill_time": 3600001}})",
       "drive.rate_limiter.bandwidth.refill_time must be between 0 and 3600000 (got 3600001)"},
      {R"({"bandwidth": {"size": 1, "one_time_burst": -1, "refill_time": 1}})",
       "drive.rate_limiter.bandwidth.one_time_burst must be a whole number between 0 and 1099511627776"},
      {R"({"bandwidth": {"refill_time": 1}})", "drive.rate_limiter.bandwidth.size is required"},
      {R"({"bandwidth": {"size": 1}})", "drive.rate_limiter.bandwidth.refill_time is required"},
      {R"({"bandwidth": {"size": 1, "refill_time": 1, "burst": 1}})",
       "drive.rate_limiter.bandwidth: unknown field 'burst'"},
      {R"({"iops": {}})", "drive.rate_limiter: unknown field 'iops'"},
      {R"([1])", "drive.rate_limiter must be a JSON object"},
  };
  for (const Refusal& c : cases) EXPECT_EQ(json_error(c.value), c.message) << c.value;
}

// The configuration checked at InstanceStart catches values no parser saw (flags, code).
TEST(RateLimiterConfig, ValidateRefusesABucketThatNeverRefills) {
  VmConfig c;
  c.boot.kernel_image_path = "/k";
  c.drives.push_back({"d", "/d"});
  c.drives[0].rate_limiter.ops = TokenBucketConfig{5, 0, 0};
  EXPECT_THROW(validate(c), ConfigError);
  c.drives[0].rate_limiter.ops->refill_time_ms = 10;
  c.nets.push_back({"e", "tap0", ""});
  c.nets[0].tx_rate_limiter.bandwidth = TokenBucketConfig{virtio::kMaxBucketTokens + 1, 0, 10};
  EXPECT_THROW(validate(c), ConfigError);
}

class RateLimiterApi : public RouterFixture {
 protected:
  Json vm_config() { return Json::parse(call("GET", "/vm/config").body); }
  void configure(bool start) {
    ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/k/vmlinux"})").status, 204);
    ASSERT_EQ(call("PUT", "/drives/data", R"({"drive_id": "data", "path_on_host": "/d", "is_root_device": false,
        "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 1000}, "ops": {"size": 100, "refill_time": 1000}}})")
                  .status,
              204);
    ASSERT_EQ(call("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0",
        "rx_rate_limiter": {"ops": {"size": 1000, "refill_time": 1000}}})")
                  .status,
              204);
    if (start) ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  }
};

TEST_F(RateLimiterApi, PutTakesThemAndInstanceStartPassesThemOn) {
  configure(true);
  ASSERT_TRUE(vm.started_with);
  EXPECT_EQ(vm.started_with->drives[0].rate_limiter.ops, (TokenBucketConfig{100, 0, 1000}));
  EXPECT_EQ(vm.started_with->nets[0].rx_rate_limiter.ops, (TokenBucketConfig{1000, 0, 1000}));
  Json c = vm_config();
  EXPECT_EQ(c["drives"][0]["rate_limiter"]["bandwidth"]["size"], 1048576);
  EXPECT_EQ(c["network-interfaces"][0]["rx_rate_limiter"]["ops"]["refill_time"], 1000);
}

TEST_F(RateLimiterApi, PutRefusesInvalidValuesNamingTheField) {
  ASSERT_EQ(call("PUT", "/boot-source", R"({"kernel_image_path": "/k/vmlinux"})").status, 204);
  EXPECT_EQ(fault("PUT", "/drives/d", R"({"drive_id": "d", "path_on_host": "/d", "is_root_device": false,
      "rate_limiter": {"ops": {"size": 10, "refill_time": 0}}})"),
            "drive.rate_limiter.ops.refill_time must not be 0 when size is not (the bucket would never refill)");
  EXPECT_EQ(fault("PUT", "/network-interfaces/e", R"({"iface_id": "e", "host_dev_name": "tap0",
      "tx_rate_limiter": {"bandwidth": {"size": -3, "refill_time": 10}}})"),
            "network-interface.tx_rate_limiter.bandwidth.size must be a whole number between 0 and 1099511627776");
  EXPECT_EQ(fault("PUT", "/network-interfaces/e", R"({"iface_id": "e", "host_dev_name": "tap0",
      "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 1}, "extra": 1}})"),
            "network-interface.rx_rate_limiter: unknown field 'extra'");
  EXPECT_EQ(vm_config()["drives"], Json::array());
}

TEST_F(RateLimiterApi, PatchBeforeStartIsRefusedAsFirecracker) {
  configure(false);
  EXPECT_EQ(fault("PATCH", "/drives/data", R"({"drive_id": "data", "rate_limiter": {"ops": {"size": 1, "refill_time": 1}}})"),
            "The requested operation is not supported before starting the microVM.");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth0",
                  R"({"iface_id": "eth0", "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 1}}})"),
            "The requested operation is not supported before starting the microVM.");
  EXPECT_TRUE(vm.drive_limiter_updates.empty());
}

TEST_F(RateLimiterApi, PatchUpdatesTheRunningDeviceAndTheConfiguration) {
  configure(true);
  // Only ops named: the device replaces that bucket, bandwidth is untouched.
  ASSERT_EQ(call("PATCH", "/drives/data", R"({"drive_id": "data", "rate_limiter": {"ops": {"size": 5, "refill_time": 100}}})")
                .status,
            204);
  ASSERT_EQ(vm.drive_limiter_updates.size(), 1u);
  EXPECT_EQ(vm.drive_limiter_updates[0].id, "data");
  EXPECT_EQ(vm.drive_limiter_updates[0].update.ops, (TokenBucketConfig{5, 0, 100}));
  EXPECT_FALSE(vm.drive_limiter_updates[0].update.bandwidth);
  Json drive = vm_config()["drives"][0];
  EXPECT_EQ(drive["rate_limiter"]["ops"]["size"], 5);
  EXPECT_EQ(drive["rate_limiter"]["bandwidth"]["size"], 1048576);
  // Size 0 turns a bucket off; the path may be repeated, not changed.
  ASSERT_EQ(call("PATCH", "/drives/data", R"({"drive_id": "data", "path_on_host": "/d",
      "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}})")
                .status,
            204);
  EXPECT_FALSE(vm_config()["drives"][0]["rate_limiter"].contains("bandwidth"));

  ASSERT_EQ(call("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0",
      "tx_rate_limiter": {"bandwidth": {"size": 65536, "one_time_burst": 1024, "refill_time": 10}}})")
                .status,
            204);
  ASSERT_EQ(vm.net_limiter_updates.size(), 1u);
  EXPECT_FALSE(vm.net_limiter_updates[0].rx.enabled());
  EXPECT_EQ(vm.net_limiter_updates[0].tx.bandwidth, (TokenBucketConfig{65536, 1024, 10}));
  Json net = vm_config()["network-interfaces"][0];
  EXPECT_EQ(net["rx_rate_limiter"]["ops"]["size"], 1000);
  EXPECT_EQ(net["tx_rate_limiter"]["bandwidth"]["one_time_burst"], 1024);
  // Naming only the interface changes nothing and reaches no device.
  EXPECT_EQ(call("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})").status, 204);
  EXPECT_EQ(vm.net_limiter_updates.size(), 1u);
}

TEST_F(RateLimiterApi, InvalidPatchIsRefusedAndChangesNothing) {
  configure(true);
  EXPECT_EQ(fault("PATCH", "/drives/data", R"({"drive_id": "data", "rate_limiter": {"ops": {"size": 1, "refill_time": 0}}})"),
            "drive.rate_limiter.ops.refill_time must not be 0 when size is not (the bucket would never refill)");
  EXPECT_EQ(fault("PATCH", "/drives/data", R"({"drive_id": "data", "rate_limiter": {"ops": {"size": 1}}})"),
            "drive.rate_limiter.ops.refill_time is required");
  EXPECT_EQ(fault("PATCH", "/drives/data", R"({"drive_id": "other", "rate_limiter": {}})"),
            "drive.drive_id differs from 'data' in the path");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth0",
                  R"({"iface_id": "eth0", "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 1.5}}})"),
            "network-interface.rx_rate_limiter.ops.refill_time must be a whole number between 0 and 3600000");
  EXPECT_EQ(fault("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "mtu": 9000})"),
            "network-interface: unknown field 'mtu'");
  EXPECT_TRUE(vm.drive_limiter_updates.empty());
  EXPECT_TRUE(vm.net_limiter_updates.empty());
  EXPECT_EQ(vm_config()["drives"][0]["rate_limiter"]["ops"]["size"], 100);
}

}  // namespace
}  // namespace ember
