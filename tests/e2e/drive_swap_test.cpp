// End-to-end drive swap: PATCH /drives/{id} with path_on_host on a booted guest, first
// while it runs, then while it is paused. The guest sees each new file's size in
// /sys/block/vda/size (virtio_blk re-reads the capacity on the config change interrupt)
// and reads each new file's marker, also past the old file's end. Run through
// tests/e2e/run-e2e.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Waits until vda's size differs from $1 (up to 60 s), then prints the size, the marker at
// the start and the one at 3 MiB (past file A's end: no cached page of A can answer).
constexpr const char* kScript =
    "show() { echo 3 > /proc/sys/vm/drop_caches\n"
    "  echo \"SWAP_$1 size=$(cat /sys/block/vda/size) head=$(head -c 8 /dev/vda)"
    " at3m=$(dd if=/dev/vda bs=1024 skip=3072 count=1 2>/dev/null | head -c 8)\"; }\n"
    "wait_size() { i=0; while [ $i -lt 600 ] && [ \"$(cat /sys/block/vda/size)\" = \"$1\" ]; do"
    " sleep 0.1; i=$((i+1)); done; }\n"
    "show A\n"
    "echo SWAP_PATCH_NOW\n"
    "wait_size 2048\n"
    "show B\n"
    "echo SWAP_PAUSE_NOW\n"
    "wait_size 8192\n"
    "show C\n"
    "dmesg | grep -o 'vda. new size: [0-9]*' | sed 's/^/SWAP_KERNEL /'\n";

// `bytes` of filler with `marker` at offset 0 and, when the file reaches it, at 3 MiB.
void make_disk(const fs::path& path, size_t bytes, const std::string& marker) {
  sh("head -c " + std::to_string(bytes) + " /dev/zero > '" + path.string() + "'");
  sh("printf '" + marker + "' | dd of='" + path.string() + "' conv=notrunc 2>/dev/null");
  if (bytes > (3u << 20)) {
    sh("printf '" + marker + "' | dd of='" + path.string() + "' bs=1024 seek=3072 conv=notrunc 2>/dev/null");
  }
}

std::string curl(const fs::path& sock, const std::string& method, const std::string& path, const std::string& body = "") {
  std::string data = body.empty() ? "" : " -d '" + body + "'";
  return sh("curl -sS --unix-socket '" + sock.string() + "' -X " + method + " http://localhost" + path +
            " -w ' HTTP%{http_code}'" + data);
}

// Waits for `text` on the console; false after the deadline.
bool wait_console(const fs::path& console, const std::string& text, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(console).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST(BlkSwap, PatchedPathOnHostIsSeenByTheGuestRunningAndPaused) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("drive-swap");
  fs::path a = dir / "a.img", b = dir / "b.img", c = dir / "c.img";
  make_disk(a, 1 << 20, "MARKER_A");  // 2048 sectors
  make_disk(b, 4 << 20, "MARKER_B");  // 8192
  make_disk(c, 6 << 20, "MARKER_C");  // 12288
  fs::path console = dir / "console.log", sock = dir / "api.sock";
  std::ofstream(dir / "vm.toml") << "[boot-source]\nkernel_image_path = \"" << env("EMBER_GUEST_DIR")
                                 << "/bzImage\"\ninitrd_path = \"" << env("EMBER_GUEST_DIR")
                                 << "/initramfs.cpio.gz\"\nboot_args = \"" << cmdline(kScript) << "\"\n"
                                 << "[serial]\noutput = \"file\"\npath = \"console.log\"\n"
                                 << "[[drive]]\nid = \"swap\"\npath = \"a.img\"\n";
  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--config", (dir / "vm.toml").string(), "--api-sock", sock.string(),
                     "--level", "info"},
                    300 * time_scale());
  });
  std::string refused, running, paused, pause, snapshot, resume;
  fs::path snap = dir / "vm.snap", mem = dir / "vm.mem";
  if (wait_console(console, "SWAP_PATCH_NOW", 200 * time_scale())) {
    // A directory is refused and the guest keeps file A until the next PATCH.
    refused = curl(sock, "PATCH", "/drives/swap", R"({"drive_id": "swap", "path_on_host": ")" + dir.string() + "\"}");
    running = curl(sock, "PATCH", "/drives/swap", R"({"drive_id": "swap", "path_on_host": ")" + b.string() + "\"}");
  }
  if (wait_console(console, "SWAP_PAUSE_NOW", 100 * time_scale())) {
    pause = curl(sock, "PATCH", "/vm", R"({"state": "Paused"})");
    paused = curl(sock, "PATCH", "/drives/swap", R"({"drive_id": "swap", "path_on_host": ")" + c.string() + "\"}");
    // A snapshot taken now names file C, which a restore would reopen and check the size of.
    snapshot = curl(sock, "PUT", "/snapshot/create",
                    R"({"snapshot_path": ")" + snap.string() + R"(", "mem_file_path": ")" + mem.string() + "\"}");
    resume = curl(sock, "PATCH", "/vm", R"({"state": "Resumed"})");
  }
  vm.join();
  std::string out = read_text(console);
  EXPECT_EQ(r.exit_code, 0) << out << describe(r);
  EXPECT_NE(refused.find("drive 'swap'"), std::string::npos) << refused;
  EXPECT_NE(refused.find(" HTTP400"), std::string::npos) << refused;
  EXPECT_EQ(running, " HTTP204") << out;
  EXPECT_EQ(pause, " HTTP204") << out;
  EXPECT_EQ(paused, " HTTP204") << out;
  EXPECT_EQ(snapshot, " HTTP204") << out;
  EXPECT_EQ(resume, " HTTP204") << out;
  std::string saved = read_text(snap);
  EXPECT_NE(saved.find(c.string()), std::string::npos) << "the snapshot does not name the swapped-in file";
  EXPECT_EQ(saved.find(a.string()), std::string::npos) << "the snapshot still names the first file";
  EXPECT_NE(out.find("SWAP_A size=2048 head=MARKER_A at3m="), std::string::npos) << out;
  EXPECT_NE(out.find("SWAP_B size=8192 head=MARKER_B at3m=MARKER_B"), std::string::npos) << out;
  EXPECT_NE(out.find("SWAP_C size=12288 head=MARKER_C at3m=MARKER_C"), std::string::npos) << out;
  EXPECT_NE(out.find("SWAP_KERNEL vda] new size: 8192"), std::string::npos) << out;
  EXPECT_NE(out.find("EMBER_TEST_EXIT=0"), std::string::npos) << out;
  EXPECT_NE(r.err.find("drive 'swap': backing file replaced: " + a.string() + " (2048 sectors) -> " + b.string() +
                       " (8192 sectors)"),
            std::string::npos)
      << describe(r);
  for (const char* tag : {"SWAP_A ", "SWAP_B ", "SWAP_C ", "SWAP_KERNEL "}) {
    size_t at = out.find(tag);
    if (at != std::string::npos) std::printf("guest: %s\n", out.substr(at, out.find('\n', at) - at).c_str());
  }
  // Nothing of the guest's reached the old file.
  EXPECT_EQ(read_text(a).substr(0, 8), "MARKER_A");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
