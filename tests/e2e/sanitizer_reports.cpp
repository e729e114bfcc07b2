// Sanitizer reports of the ember processes the tests start. When ember is the sanitized
// build (build-sanitize/, tests/run-all.sh), AddressSanitizer, LeakSanitizer and
// UndefinedBehaviorSanitizer write each report to a file in one folder instead of
// stderr, which many tests never read; after each test the new files are printed
// with the test's name, and the run fails if there were any. With a release ember
// the options are simply ignored and the folder stays empty.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>

namespace ember::e2e {
namespace {

namespace fs = std::filesystem;

std::string with_option(const char* name, const std::string& ours) {
  const char* theirs = std::getenv(name);
  return theirs && *theirs ? std::string(theirs) + ":" + ours : ours;
}

class SanitizerReports : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    dir_ = fs::path(tmp ? tmp : "/tmp") / ("ember-sanitizer-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // Exit code 66 on a report, so a test that expects ember's own 1 or 2 fails too.
    std::string asan = with_option("ASAN_OPTIONS", "log_path=" + (dir_ / "asan").string() +
                                                       ":exitcode=66:detect_leaks=1:handle_sigbus=0:quarantine_size_mb=64");
    std::string ubsan = with_option("UBSAN_OPTIONS", "log_path=" + (dir_ / "ubsan").string() +
                                                         ":print_stacktrace=1:halt_on_error=1:exitcode=66");
    ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
    ::setenv("UBSAN_OPTIONS", ubsan.c_str(), 1);
  }
  void TearDown() override {
    collect("the end of the run");
    if (reports_ > 0) ADD_FAILURE() << reports_ << " sanitizer report(s) from ember, printed above";
    else fs::remove_all(dir_);
  }
  void collect(const std::string& when) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      if (!seen_.insert(entry.path()).second) continue;
      std::ifstream in(entry.path());
      std::stringstream text;
      text << in.rdbuf();
      std::cout << "\n=== sanitizer report " << entry.path().filename().string() << " (by " << when << ") ===\n"
                << text.str() << "=== end of report ===\n";
      ++reports_;
    }
  }

 private:
  fs::path dir_;
  std::set<fs::path> seen_;
  int reports_ = 0;
};

// After each test, so a report is printed next to the test that caused it.
class AfterEachTest : public ::testing::EmptyTestEventListener {
 public:
  explicit AfterEachTest(SanitizerReports& reports) : reports_(reports) {}
  void OnTestEnd(const ::testing::TestInfo& test) override {
    reports_.collect(std::string(test.test_suite_name()) + "." + test.name());
  }

 private:
  SanitizerReports& reports_;
};

// Registered before main(): gtest_main owns main, and the environment must set the
// options before the first test starts ember.
const bool registered = [] {
  auto* reports = new SanitizerReports;  // gtest owns both
  ::testing::AddGlobalTestEnvironment(reports);
  ::testing::UnitTest::GetInstance()->listeners().Append(new AfterEachTest(*reports));
  return true;
}();

}  // namespace
}  // namespace ember::e2e
