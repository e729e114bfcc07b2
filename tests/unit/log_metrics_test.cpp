// The log line format and outputs (file, FIFO), and the metrics file.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "vmm/metrics_writer.h"
#include "vmm/util/error.h"
#include "vmm/util/log.h"

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
    saved = log::current_config();
  }
  void TearDown() override {
    log::LoggerConfig back = saved;
    back.log_path.clear();
    log::configure(back);
    fs::remove_all(dir);
  }
  fs::path dir;
  log::LoggerConfig saved;
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
