// The log line format and outputs (file, FIFO), and the metrics file.
#include <gtest/gtest.h>

#include "tests/unit/log_capture.h"
#include <pthread.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/util/error.h"
#include "base/util/log.h"
#include "vmm/metrics.h"
#include "vmm/metrics_writer.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class LogOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember-log-" + std::to_string(::getpid()));
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  test::RestoreLogConfig restore;  // destroyed after TearDown
  fs::path dir;
};

TEST_F(LogOutput, TimestampThreadLevelAndOrigin) {
  fs::path file = dir / "ember.log";
  log::configure({file.string(), log::Level::Info, true, true});
  std::thread([] {
    pthread_setname_np(pthread_self(), "test-thread");
    log::info("hello from a thread");
    log::debug("not shown at Info");
  }).join();
  std::string text = read_all(file);
  std::regex line(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \[ember:test-thread\] INFO .*log_metrics_test\.cpp:\d+ hello from a thread\n$)");
  EXPECT_TRUE(std::regex_match(text, line)) << text;
}

TEST_F(LogOutput, LevelAndOriginHiddenAsFirecrackerDefaults) {
  fs::path file = dir / "plain.log";
  log::configure({file.string(), log::Level::Warn, false, false});
  log::warn("plain");
  log::info("filtered");
  std::string text = read_all(file);
  EXPECT_NE(text.find("] plain\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("filtered"), std::string::npos);
  log::configure({file.string(), log::Level::Off, false, false});
  log::error("silenced");
  EXPECT_EQ(read_all(file).find("silenced"), std::string::npos);
}

TEST_F(LogOutput, FifoWithoutReaderNeitherBlocksNorFails) {
  fs::path fifo = dir / "log.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  log::configure({fifo.string(), log::Level::Info, false, false});
  for (int i = 0; i < 10000; ++i) log::info("filling the pipe with a line that nobody reads");  // returns
}

TEST_F(LogOutput, UnopenablePathIsAnErrorNamingIt) {
  try {
    log::configure({(dir / "missing" / "x.log").string(), std::nullopt, false, false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open log_path"), std::string::npos) << e.what();
  }
}

TEST(LogLevels, FirecrackerAndEmberNames) {
  log::Level l;
  EXPECT_TRUE(log::parse_level("Warning", l));
  EXPECT_EQ(l, log::Level::Warn);
  EXPECT_TRUE(log::parse_level("Trace", l));
  EXPECT_EQ(l, log::Level::Debug);
  EXPECT_TRUE(log::parse_level("Off", l));
  EXPECT_EQ(l, log::Level::Off);
  EXPECT_FALSE(log::parse_level("loud", l));
}

TEST(Metrics, OneJsonObjectPerLine) {
  MetricGroups g;
  g["vcpu"]["exit_io"] = 7;
  g["block_\"odd\""]["read_bytes"] = 4096;
  nlohmann::json j = nlohmann::json::parse(metrics_line(1234, g));
  EXPECT_EQ(j.at("utc_timestamp_ms"), 1234);
  EXPECT_EQ(j.at("vcpu").at("exit_io"), 7);
  EXPECT_EQ(j.at("block_\"odd\"").at("read_bytes"), 4096);
}

// Firecracker's "block" and "net" groups: every drive's, every interface's counters summed by
// name; other groups untouched, no empty aggregate when there is no such device.
TEST(Metrics, DeviceTotalsSumEachKindOfDevice) {
  MetricGroups g = {{"block_rootfs", {{"read_bytes", 4096}, {"read_count", 1}}},
                    {"block_scratch", {{"read_bytes", 512}, {"execute_fails", 2}}},
                    {"net_eth0", {{"rx_bytes_count", 100}}},
                    {"net_eth1", {{"rx_bytes_count", 23}, {"tap_write_fails", 1}}},
                    {"vsock", {{"conns_added", 3}}},
                    {"vcpu", {{"exit_io", 9}}}};
  add_device_totals(g);
  EXPECT_EQ(g["block"], (std::map<std::string, uint64_t>{{"read_bytes", 4608}, {"read_count", 1}, {"execute_fails", 2}}));
  EXPECT_EQ(g["net"], (std::map<std::string, uint64_t>{{"rx_bytes_count", 123}, {"tap_write_fails", 1}}));
  EXPECT_EQ(g["block_rootfs"]["read_bytes"], 4096u);  // the per-device groups stay
  EXPECT_EQ(g["vsock"], (std::map<std::string, uint64_t>{{"conns_added", 3}}));
  EXPECT_EQ(g.size(), 8u);
  MetricGroups none = {{"vcpu", {{"exit_io", 1}}}};
  add_device_totals(none);
  EXPECT_EQ(none.size(), 1u);
}

TEST(Metrics, WriterFlushesOnDemandAndPeriodically) {
  fs::path dir = fs::temp_directory_path() / ("ember-metrics-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::atomic<int> calls{0};
  {
    MetricsWriter writer([&](MetricGroups& g) { g["api"]["calls"] = static_cast<uint64_t>(++calls); },
                         std::chrono::milliseconds(50));
    EXPECT_THROW(writer.flush(), Error);  // not set up yet
    writer.open({(dir / "m.json").string()});
    EXPECT_THROW(writer.open({(dir / "other.json").string()}), Error);
    writer.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::ifstream in(dir / "m.json");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("utc_timestamp_ms"));
    EXPECT_GE(j.at("api").at("calls").get<int>(), 1);
    ++lines;
  }
  EXPECT_GE(lines, 2);  // the flush and at least one period
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember

namespace ember {
namespace {

// The log's own UTC conversion agrees with the C library's over leap years and centuries.
std::string gmtime_text(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  tm parts{};
  gmtime_r(&tt, &parts);
  char text[64];
  strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &parts);
  return text;
}

TEST(LogTimestamp, MatchesGmtimeAcrossCalendarEdges) {
  for (int64_t t : {int64_t{0}, int64_t{951782400} /* 2000-02-29 */, int64_t{951868799},
                    int64_t{4107542399} /* 2100-02-28 23:59:59 */, int64_t{4107542400}, int64_t{1795999512},
                    int64_t{253402300799} /* 9999-12-31 */}) {
    EXPECT_EQ(log::utc_timestamp(t, 123456789), gmtime_text(t) + ".123456Z") << t;
  }
  for (int64_t t = 0; t < int64_t{4} * 365 * 86400 * 100; t += 86400 * 7 + 3599) {
    ASSERT_EQ(log::utc_timestamp(t, 0), gmtime_text(t) + ".000000Z") << t;
  }
}

}  // namespace
}  // namespace ember
