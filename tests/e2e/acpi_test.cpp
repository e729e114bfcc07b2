// End-to-end: the project's guest (CONFIG_ACPI=y) finds its virtio devices in ember's DSDT
// with no virtio_mmio.device= on its command line, and `poweroff -f` (ACPI S5) ends ember
// with 0; with acpi=off or ember --no-acpi it boots from the MP table and command-line
// devices as before.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace ember::e2e {
namespace {

namespace fs = std::filesystem;

using util::cmdline;
using util::describe;
using util::env;
using util::scratch_dir;
using util::time_scale;

// What the guest saw, one marker per line.
constexpr const char* kProbe =
    "echo CMDLINE_DEVICES=$(grep -c virtio_mmio.device= /proc/cmdline);"
    "echo ACPI_VIRTIO=$(ls /sys/bus/acpi/devices 2>/dev/null | grep -c LNRO0005);"
    "echo VDA=$(cat /sys/block/vda/size 2>/dev/null || echo none);";

ProcessResult boot(const std::string& kernel, const std::string& script, const std::string& extra_args,
                   std::vector<std::string> extra = {}) {
  fs::path dir = scratch_dir("acpi");
  fs::path disk = dir / "disk.img";
  { std::ofstream(disk).put('x'); }
  fs::resize_file(disk, 1 << 20);  // 2048 sectors
  std::string guest = env("EMBER_GUEST_DIR");
  std::vector<std::string> argv = {env("EMBER_BIN"), "--kernel", guest + "/" + kernel,
                                   "--initrd", guest + "/initramfs.cpio.gz",
                                   "--cmdline", cmdline(script) + extra_args,
                                   "--drive", "id=d0,path=" + disk.string(), "--level", "info"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv, 60 * time_scale());
}

class AcpiPoweroff : public ::testing::TestWithParam<const char*> {};

// bzImage gets the RSDP through the zero page, vmlinux (PVH) through its start info.
TEST_P(AcpiPoweroff, DevicesFromTheDsdtAndPoweroffEndsEmberWithZero) {
  ProcessResult r = boot(GetParam(), std::string(kProbe) + "poweroff -f; sleep 30", "");
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("CMDLINE_DEVICES=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("ACPI_VIRTIO=1"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("VDA=2048"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("guest powered off (ACPI S5)"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("EMBER_TEST_EXIT="), std::string::npos) << "poweroff did not end the VM\n" << describe(r);
}

INSTANTIATE_TEST_SUITE_P(Kernels, AcpiPoweroff, ::testing::Values("bzImage", "vmlinux"));

// Firecracker's default boot_args carry i8042.nopnp, which leaves the guest's keyboard without
// its IRQ under hardware-reduced ACPI: ember says so instead of letting SendCtrlAltDel vanish.
TEST(AcpiWarnings, I8042NoPnpWithAcpiIsWarnedAbout) {
  ProcessResult r = boot("bzImage", "ls /sys/bus/serio/devices | grep -c serio", " i8042.nopnp");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("boot_args has i8042.nopnp"), std::string::npos) << describe(r);
}

TEST(AcpiOff, AcpiOffOnTheCommandLineBootsWithCommandLineDevices) {
  ProcessResult r = boot("bzImage", kProbe, " acpi=off");
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("CMDLINE_DEVICES=1"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("ACPI_VIRTIO=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("VDA=2048"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
}

TEST(AcpiOff, NoAcpiSwitchBootsWithCommandLineDevicesAndNoTables) {
  ProcessResult r = boot("vmlinux", std::string(kProbe) + "echo TABLES=$(ls /sys/firmware/acpi/tables 2>/dev/null | wc -l)",
                         "", {"--no-acpi"});
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("CMDLINE_DEVICES=1"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("ACPI_VIRTIO=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("VDA=2048"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("TABLES=0"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace ember::e2e
