// End-to-end: the real ember binary boots the project's guest kernel and initramfs
// under KVM. Run through tests/e2e/run-e2e.sh, which provides KVM (directly, or
// inside the emulated host) and these environment variables:
//   EMBER_BIN        the ember binary
//   EMBER_GUEST_DIR  folder with vmlinux, bzImage, initramfs.cpio.gz (guest/build.sh)
//   EMBER_SOURCE_DIR the source tree (for configs/)
//   EMBER_E2E_TIME_SCALE  multiplier for timeouts (the emulated host is 50-100x slower)
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"
#include "tests/unit/test_images.h"

namespace ember::e2e {
namespace {

namespace fs = std::filesystem;

using util::cmdline;
using util::describe;
using util::env;
using util::scratch_dir;
using util::time_scale;

struct Boot {
  std::string kernel = "bzImage";
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  std::string script;
  std::vector<std::string> extra;
};

ProcessResult boot(const Boot& b, double timeout = 60) {
  std::string guest = env("EMBER_GUEST_DIR");
  std::vector<std::string> argv = {env("EMBER_BIN"),
                                   "--kernel", guest + "/" + b.kernel,
                                   "--initrd", guest + "/initramfs.cpio.gz",
                                   "--cmdline", cmdline(b.script),
                                   "--vcpus", std::to_string(b.vcpus),
                                   "--mem-mib", std::to_string(b.mem_mib)};
  argv.insert(argv.end(), b.extra.begin(), b.extra.end());
  return run_process(argv, timeout * time_scale());
}


// The guest init prints "EMBER_GUEST_USERSPACE cpus=N mem_mib=M".
bool reached_userspace(const ProcessResult& r, uint32_t cpus, uint32_t mem_mib) {
  std::smatch m;
  std::regex re("EMBER_GUEST_USERSPACE cpus=(\\d+) mem_mib=(\\d+)");
  if (!std::regex_search(r.out, m, re)) return false;
  return std::stoul(m[1]) == cpus && std::stoul(m[2]) == mem_mib;
}

struct Shape {
  const char* kernel;
  uint32_t vcpus;
  uint32_t mem_mib;
};

class BootShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(BootShapes, GuestReachesUserspaceAndSeesItsShape) {
  Shape s = GetParam();
  ProcessResult r = boot({s.kernel, s.vcpus, s.mem_mib, "", {}});
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(reached_userspace(r, s.vcpus, s.mem_mib)) << describe(r);
}

INSTANTIATE_TEST_SUITE_P(Ember, BootShapes,
                         ::testing::Values(Shape{"bzImage", 1, 128}, Shape{"vmlinux", 1, 128},
                                           Shape{"bzImage", 2, 512}, Shape{"vmlinux", 4, 2048},
                                           Shape{"bzImage", 4, 2048}),
                         [](const auto& info) {
                           return std::string(info.param.kernel) + "_" + std::to_string(info.param.vcpus) +
                                  "cpu_" + std::to_string(info.param.mem_mib) + "mib";
                         });

TEST(GuestLifecycle, TestScriptRunsAndItsStatusIsReported) {
  ProcessResult r = boot({"bzImage", 1, 128, "echo from-the-guest; exit 7", {}});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("from-the-guest"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=7"), std::string::npos) << describe(r);
}

TEST(GuestLifecycle, GuestRebootEndsEmberWithZero) {
  ProcessResult r = boot({"bzImage", 2, 128, "echo rebooting-now; reboot -f; sleep 30", {}});
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("rebooting-now"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("EMBER_TEST_EXIT="), std::string::npos) << describe(r);
}

TEST(GuestLifecycle, GuestPanicEndsEmberNonZero) {
  ProcessResult r = boot({"bzImage", 1, 128, "echo c > /proc/sysrq-trigger; sleep 30", {}});
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("guest kernel panic"), std::string::npos) << describe(r);
}

// Not Linux: a 20-byte PVH kernel that loads an empty IDT and executes ud2, so the #UD
// cannot be delivered and the CPU shuts down (a triple fault), as a crashing guest would.
// Two vCPUs: ember then reports where each one was.
TEST(GuestLifecycle, GuestTripleFaultEndsEmberWithFour) {
  fs::path dir = scratch_dir("triple-fault");
  constexpr uint32_t kEntry = 0x1000000;
  std::vector<uint8_t> elf = test::make_elf({.paddr = kEntry, .filesz = 0x20, .memsz = 0x20, .entry = kEntry,
                                             .pvh_entry = kEntry});
  const uint8_t code[] = {0x0f, 0x01, 0x1d, 0x10, 0x00, 0x00, 0x01,  // lidt [0x1000010] (32-bit mode)
                          0x0f, 0x0b};                               // ud2
  std::copy(std::begin(code), std::end(code), elf.begin() + 0x1000);
  std::fill(elf.begin() + 0x1010, elf.begin() + 0x1016, 0);  // the IDT descriptor: limit 0, base 0
  fs::path kernel = dir / "triple-fault.elf";
  std::ofstream(kernel, std::ios::binary).write(reinterpret_cast<const char*>(elf.data()), elf.size());
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", kernel.string(), "--mem-mib", "32", "--vcpus", "2"},
                                30 * time_scale());
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_NE(r.err.find("guest triple fault on vCPU 0"), std::string::npos) << describe(r);
  // Where every vCPU was, for diagnosing the crash (the second one never got INIT and SIPI).
  EXPECT_TRUE(std::regex_search(r.err, std::regex("guest state when stopped:\n  vCPU 0: rip 0x[0-9a-f]+, [^\n]*\n"
                                                  "  vCPU 1: rip 0x[0-9a-f]+, interrupts off, waiting for (INIT|SIPI)")))
      << describe(r);
}

TEST(GuestLifecycle, SerialOutputToFile) {
  fs::path log = scratch_dir("serial-file") / "console.log";
  fs::remove(log);
  ProcessResult r = boot({"vmlinux", 1, 128, "echo to-the-file", {"--serial-out", log.string()}});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out.find("to-the-file"), std::string::npos) << describe(r);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("to-the-file"), std::string::npos) << text;
}

// Bad input fails fast, with a message naming the problem, and no crash.
void expect_clean_failure(const ProcessResult& r, int code, const std::string& message) {
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, code) << describe(r);
  EXPECT_NE(r.err.find(message), std::string::npos) << describe(r);
  EXPECT_LT(r.seconds, 10 * time_scale()) << describe(r);
}

TEST(GuestLifecycle, HostStdinReachesTheGuestConsole) {
  std::string guest = env("EMBER_GUEST_DIR");
  StdinScript input{"hello-from-the-host\n", "ready-for-input"};
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", guest + "/vmlinux", "--initrd",
                                 guest + "/initramfs.cpio.gz", "--cmdline",
                                 cmdline("echo ready-for-input; read -r line; echo \"guest-read:$line\"")},
                                60 * time_scale(), &input);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("guest-read:hello-from-the-host"), std::string::npos) << describe(r);
}

// The boot-complete marker and --boot-timings: every phase is recorded, in boot order.
// Also the one boot with --prefault sync (background is the default).
TEST(BootTimings, EveryPhaseInOrderUpToTheGuestsMarker) {
  fs::path json = scratch_dir("boot-timings") / "timings.json";
  std::string guest = env("EMBER_GUEST_DIR");
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", guest + "/bzImage", "--initrd",
                                 guest + "/initramfs.cpio.gz", "--cmdline", cmdline() + " ember_boot_marker=1",
                                 "--prefault", "sync", "--boot-timings", json.string()},
                                60 * time_scale());
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::ifstream in(json);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, int64_t> wall;
  for (const char* phase : {"args_parsed", "instance_start", "kvm_ready", "memory_ready", "kernel_loaded", "vcpus_ready",
                            "first_kvm_run", "boot_complete"}) {
    std::smatch m;
    std::regex re(std::string("\"") + phase + "\": \\{\"wall_us\": (\\d+), \"cpu_us\": (\\d+)\\}");
    ASSERT_TRUE(std::regex_search(text, m, re)) << phase << " missing in " << text;
    wall[phase] = std::stoll(m[1]);
  }
  // The machine (VM, devices, vCPUs) is built on another thread while the kernel is
  // read: two chains between RAM being mapped and the first KVM_RUN.
  auto in_order = [&](std::initializer_list<const char*> chain) {
    const char* previous = nullptr;
    for (const char* phase : chain) {
      if (previous) EXPECT_GE(wall[phase], wall[previous]) << phase << " before " << previous << " in " << text;
      previous = phase;
    }
  };
  in_order({"args_parsed", "instance_start", "memory_ready", "kvm_ready", "vcpus_ready", "first_kvm_run",
            "boot_complete"});
  in_order({"memory_ready", "kernel_loaded", "first_kvm_run"});
}

// Above 3 GiB, RAM continues past the 32-bit MMIO gap at 4 GiB; the guest sees all of it.
TEST(GuestMemoryLayout, MemoryAboveTheMmioGap) {
  ProcessResult r = boot({"bzImage", 2, 4096, "", {"--no-prefault"}}, 120);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(reached_userspace(r, 2, 4096)) << describe(r);
}

// 2 MiB hugetlbfs pages when the host has them reserved, else a clear error.
TEST(GuestMemoryLayout, HugePages2M) {
  fs::path toml = scratch_dir("huge-pages") / "huge.toml";
  std::string guest = env("EMBER_GUEST_DIR");
  std::ofstream(toml) << "[boot-source]\nkernel_image_path = \"" << guest << "/bzImage\"\ninitrd_path = \"" << guest
                      << "/initramfs.cpio.gz\"\n[machine-config]\nmem_size_mib = 128\nhuge_pages = \"2M\"\n";
  std::string saved;
  bool reserved = false;
  {
    std::ifstream in("/proc/sys/vm/nr_hugepages");
    std::getline(in, saved);
  }
  {
    std::ofstream out("/proc/sys/vm/nr_hugepages");
    out << (std::stoul(saved.empty() ? "0" : saved) + 64);
    out.flush();
    reserved = out.good();
  }
  ProcessResult r = run_process({env("EMBER_BIN"), "--config", toml.string(), "--cmdline", cmdline()},
                                60 * time_scale());
  if (reserved) {
    std::ofstream("/proc/sys/vm/nr_hugepages") << saved;
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_TRUE(reached_userspace(r, 1, 128)) << describe(r);
  } else {
    expect_clean_failure(r, 1, "with 2 MiB huge pages");
  }
}

TEST(BadInput, MissingKernel) {
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", "/nonexistent/vmlinux"}, 30 * time_scale());
  expect_clean_failure(r, 2, "cannot open kernel '/nonexistent/vmlinux': No such file or directory");
}

// open() of a FIFO that nobody writes would wait forever, where SIGTERM cannot reach.
TEST(BadInput, KernelOrInitrdThatIsAFifoIsRefusedAtOnce) {
  fs::path fifo = scratch_dir("fifo-kernel") / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", fifo.string()}, 30 * time_scale());
  expect_clean_failure(r, 2, "kernel '" + fifo.string() + "' is not a regular file (it is a FIFO)");
  r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd", fifo.string()},
                  30 * time_scale());
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("initrd '" + fifo.string() + "' is not a regular file (it is a FIFO)"), std::string::npos)
      << describe(r);
}

TEST(BadInput, GarbageKernel) {
  fs::path junk = scratch_dir("garbage-kernel") / "garbage.bin";
  std::ofstream(junk) << std::string(100000, 'x');
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", junk.string()}, 30 * time_scale());
  expect_clean_failure(r, 2, "is neither an ELF vmlinux nor a bzImage");
}

TEST(BadInput, TruncatedKernel) {
  fs::path cut = scratch_dir("truncated-kernel") / "truncated-vmlinux";
  {
    // Plain reads, not fs::copy_file: its sendfile() from the emulated host's 9p share hung once.
    std::ifstream in(env("EMBER_GUEST_DIR") + "/vmlinux", std::ios::binary);
    std::string head(1 << 20, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    ASSERT_EQ(in.gcount(), static_cast<std::streamsize>(head.size()));
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(head.data(), static_cast<std::streamsize>(head.size()));
  }
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", cut.string()}, 30 * time_scale());
  expect_clean_failure(r, 1, "is truncated");
}

TEST(BadInput, InitrdTooLargeForMemory) {
  fs::path big = scratch_dir("big-initrd") / "big-initrd";
  { std::ofstream(big) << "x"; }
  fs::resize_file(big, 200 << 20);  // sparse: 200 MiB for a 128 MiB guest
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                 big.string(), "--mem-mib", "128"},
                                30 * time_scale());
  expect_clean_failure(r, 1, "initrd of 209715200 bytes does not fit in guest memory");
}

TEST(BadInput, BadTomlFile) {
  fs::path toml = scratch_dir("bad-toml") / "bad.toml";
  std::ofstream(toml) << "[boot-source]\nkernel_image_path = \"vmlinux\"\n[machine-config]\nvcpu_count = 64\n";
  ProcessResult r = run_process({env("EMBER_BIN"), "--config", toml.string()}, 30 * time_scale());
  expect_clean_failure(r, 2, "bad.toml:4: machine-config.vcpu_count must be between 1 and 32 (got 64)");
}

// Every shipped example config boots. They name the guest through build/guest,
// which run-e2e.sh links to the cached artifacts.
TEST(Configs, EveryShippedConfigBoots) {
  fs::path dir = fs::path(env("EMBER_SOURCE_DIR")) / "configs";
  int booted = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    // Quiet command line so the check is fast in the emulated host; everything else comes from the file.
    ProcessResult r = run_process({env("EMBER_BIN"), "--config", entry.path().string(), "--cmdline", cmdline()},
                                  120 * time_scale());
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.out.find("EMBER_GUEST_USERSPACE"), std::string::npos) << describe(r);
    ++booted;
  }
  EXPECT_GE(booted, 2);
}

}  // namespace
}  // namespace ember::e2e
