// ACPI tables and the AML in them: encodings, checksums and lengths, the DSDT decoded
// back by an independent disassembler (iasl from acpica-tools), the region check, and
// the sleep/reset registers the FADT points at.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/acpi/aml.h"
#include "vmm/arch/x86_64/acpi_tables.h"
#include "vmm/devices/acpi_power.h"
#include "vmm/vm_config.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
using aml::Bytes;

uint8_t byte_sum(const std::vector<uint8_t>& bytes, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return sum;
}

uint32_t length_field(const std::vector<uint8_t>& table) {
  uint32_t len;
  std::memcpy(&len, table.data() + 4, 4);
  return len;
}

void expect_valid_table(const std::vector<uint8_t>& table, const char* signature) {
  ASSERT_GE(table.size(), 36u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(table.data()), 4), signature);
  EXPECT_EQ(length_field(table), table.size()) << signature;
  EXPECT_EQ(byte_sum(table, table.size()), 0) << signature << " checksum";
}

// The machine with `n` virtio devices placed as VirtioDevices places them.
x86::AcpiMachine machine_with(size_t n, uint32_t vcpus = 1) {
  x86::AcpiMachine m{vcpus, {}};
  for (size_t i = 0; i < n; ++i) {
    m.virtio_slots.push_back({layout::kVirtioMmioStart + i * layout::kVirtioMmioSlotSize, layout::kVirtioMmioSlotSize,
                              layout::kFirstVirtioIrq + static_cast<uint32_t>(i)});
  }
  return m;
}

constexpr size_t kMaxDevices = layout::kLastIrq - layout::kFirstVirtioIrq + 1;

struct Disassembly {
  int status;
  std::string output;  // iasl's messages
  std::string dsl;     // the decoded source
};

// iasl -d on `table`; a missing iasl fails the test naming its package.
Disassembly disassemble(const std::vector<uint8_t>& table, const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("ember-acpi-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path aml = dir / (name + ".aml");
  std::ofstream(aml, std::ios::binary).write(reinterpret_cast<const char*>(table.data()), table.size());
  std::string cmd = "cd '" + dir.string() + "' && iasl -d '" + aml.filename().string() + "' 2>&1";
  Disassembly d{};
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed", ""};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) d.output.append(buf, n);
  int status = ::pclose(p);
  d.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(dir / (name + ".dsl"));
  std::stringstream ss;
  ss << in.rdbuf();
  d.dsl = ss.str();
  fs::remove_all(dir);
  return d;
}

bool have_iasl() { return std::system("command -v iasl >/dev/null 2>&1") == 0; }

TEST(Aml, PkgLengthUsesTheShortestEncoding) {
  EXPECT_EQ(aml::pkg_length(0), (Bytes{0x01}));
  EXPECT_EQ(aml::pkg_length(62), (Bytes{0x3f}));
  // 63 bytes of content: 65 in all with a two-byte PkgLength.
  EXPECT_EQ(aml::pkg_length(63), (Bytes{0x41, 0x04}));
  EXPECT_EQ(aml::pkg_length(4093), (Bytes{0x4f, 0xff}));
  EXPECT_EQ(aml::pkg_length(4094), (Bytes{0x81, 0x00, 0x01}));  // 4097 = 0x1001
}

TEST(Aml, IntegersStringsAndNames) {
  EXPECT_EQ(aml::integer(0), (Bytes{0x00}));
  EXPECT_EQ(aml::integer(1), (Bytes{0x01}));
  EXPECT_EQ(aml::integer(5), (Bytes{0x0a, 0x05}));
  EXPECT_EQ(aml::integer(0x1234), (Bytes{0x0b, 0x34, 0x12}));
  EXPECT_EQ(aml::integer(0xc0001000), (Bytes{0x0c, 0x00, 0x10, 0x00, 0xc0}));
  EXPECT_EQ(aml::integer(0x100000000ull), (Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(aml::string("AB"), (Bytes{0x0d, 'A', 'B', 0}));
  EXPECT_EQ(aml::name_string("\\_SB_"), (Bytes{'\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(aml::name_string("V1"), (Bytes{'V', '1', '_', '_'}));
  EXPECT_EQ(aml::name_string("\\_SB_.COM1"), (Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'}));
  // EisaId("PNP0501"), as iasl encodes it.
  EXPECT_EQ(aml::eisa_id("PNP0501"), (Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01}));
}

TEST(Aml, MalformedNamesAndIdsAreErrorsNamingThem) {
  EXPECT_THROW(aml::name_string("TOOLONG"), Error);
  EXPECT_THROW(aml::name_string("1ABC"), Error);
  EXPECT_THROW(aml::name_string("ab"), Error);
  EXPECT_THROW(aml::name_string(""), Error);
  EXPECT_THROW(aml::eisa_id("PNP05"), Error);
  EXPECT_THROW(aml::eisa_id("pnp0501"), Error);
  EXPECT_THROW(aml::irq_no_flags(16), Error);
  try {
    aml::name_string("V00X.bad");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("V00X.bad"), std::string::npos) << e.what();
  }
}

TEST(AcpiTables, EveryTableHasItsLengthAndChecksum) {
  for (size_t devices : {size_t{0}, size_t{1}, kMaxDevices}) {
    SCOPED_TRACE(devices);
    x86::AcpiMachine m = machine_with(devices, 4);
    expect_valid_table(x86::build_dsdt(m), "DSDT");
    expect_valid_table(x86::build_madt(m), "APIC");
    expect_valid_table(x86::build_fadt(0xe1000), "FACP");
    expect_valid_table(x86::build_xsdt({0xe0100, 0xe0200}), "XSDT");
  }
  auto fadt = x86::build_fadt(0xe1000);
  EXPECT_EQ(fadt.size(), 276u);  // ACPI 6.5 FADT
  auto rsdp = x86::build_rsdp(0xe0040);
  ASSERT_EQ(rsdp.size(), 36u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(rsdp.data()), 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(rsdp, 20), 0) << "ACPI 1.0 checksum";
  EXPECT_EQ(byte_sum(rsdp, 36), 0) << "extended checksum";
}

TEST(AcpiTables, MadtListsEachVcpuTheIoapicAndTheLegacyIrqs) {
  auto madt = x86::build_madt(machine_with(2, 3));
  // 44-byte header; 3 local APICs (8), an IOAPIC (12), overrides for IRQs 1, 4, 5, 6 (10
  // each) and a local APIC NMI (6).
  EXPECT_EQ(madt.size(), 44u + 3 * 8 + 12 + 4 * 10 + 6);
  EXPECT_THROW(x86::build_madt(machine_with(0, 0)), Error);
  EXPECT_THROW(x86::build_madt(machine_with(0, 33)), Error);
}

TEST(AcpiTables, LaidOutFromTheRegionStartWithTheRsdpFirst) {
  x86::AcpiImage image = x86::build_acpi_tables(machine_with(3, 2), layout::kAcpiStart, layout::kAcpiSize);
  EXPECT_EQ(image.rsdp_address, layout::kAcpiStart);
  uint64_t xsdt;
  std::memcpy(&xsdt, image.bytes.data() + 24, 8);
  ASSERT_GT(xsdt, layout::kAcpiStart);
  ASSERT_LT(xsdt - layout::kAcpiStart + 36, image.bytes.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.bytes.data() + (xsdt - layout::kAcpiStart)), 4), "XSDT");
  // The XSDT points at the FADT and the MADT; the FADT at the DSDT.
  uint64_t fadt, madt, dsdt;
  std::memcpy(&fadt, image.bytes.data() + (xsdt - layout::kAcpiStart) + 36, 8);
  std::memcpy(&madt, image.bytes.data() + (xsdt - layout::kAcpiStart) + 44, 8);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.bytes.data() + (fadt - layout::kAcpiStart)), 4), "FACP");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.bytes.data() + (madt - layout::kAcpiStart)), 4), "APIC");
  std::memcpy(&dsdt, image.bytes.data() + (fadt - layout::kAcpiStart) + 140, 8);  // X_DSDT
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.bytes.data() + (dsdt - layout::kAcpiStart)), 4), "DSDT");
  // Too small a region is an error that says how much is needed.
  try {
    x86::build_acpi_tables(machine_with(3, 2), layout::kAcpiStart, 256);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 256"), std::string::npos) << e.what();
  }
}

TEST(AcpiTables, DsdtDisassemblesWithEveryDeviceWindowAndIrq) {
  ASSERT_TRUE(have_iasl()) << "iasl not found: apt-get install acpica-tools";
  for (size_t devices : {size_t{0}, size_t{1}, kMaxDevices}) {
    SCOPED_TRACE(devices);
    x86::AcpiMachine m = machine_with(devices);
    Disassembly d = disassemble(x86::build_dsdt(m), "dsdt" + std::to_string(devices));
    ASSERT_EQ(d.status, 0) << d.output;
    EXPECT_EQ(d.output.find("Error"), std::string::npos) << d.output;
    EXPECT_NE(d.dsl.find("EisaId (\"PNP0501\")"), std::string::npos) << d.dsl;
    EXPECT_NE(d.dsl.find("0x03F8"), std::string::npos) << d.dsl;
    EXPECT_NE(d.dsl.find("EisaId (\"PNP0303\")"), std::string::npos) << d.dsl;
    EXPECT_NE(d.dsl.find("Name (\\_S5, Package (0x02)"), std::string::npos) << d.dsl;
    size_t hids = 0;
    for (size_t at = d.dsl.find("\"LNRO0005\""); at != std::string::npos; at = d.dsl.find("\"LNRO0005\"", at + 1)) ++hids;
    EXPECT_EQ(hids, devices);
    for (const MmioSlot& s : m.virtio_slots) {
      char window[64], irq[64];
      std::snprintf(window, sizeof window, "0x%08lX,         // Address Base", static_cast<unsigned long>(s.base));
      std::snprintf(irq, sizeof irq, "0x%08X,\n", s.irq);
      EXPECT_NE(d.dsl.find(window), std::string::npos) << window << "\n" << d.dsl;
      EXPECT_NE(d.dsl.find(irq), std::string::npos) << irq;
    }
  }
}

TEST(AcpiTables, FadtAndMadtDisassembleWithoutErrors) {
  ASSERT_TRUE(have_iasl()) << "iasl not found: apt-get install acpica-tools";
  Disassembly fadt = disassemble(x86::build_fadt(0xe1000), "facp");
  ASSERT_EQ(fadt.status, 0) << fadt.output;
  EXPECT_EQ(fadt.dsl.find("Error"), std::string::npos) << fadt.dsl;
  EXPECT_NE(fadt.dsl.find("Hardware Reduced (V5) : 1"), std::string::npos) << fadt.dsl;
  EXPECT_NE(fadt.dsl.find("Address : 0000000000000600"), std::string::npos) << fadt.dsl;  // sleep control
  Disassembly madt = disassemble(x86::build_madt(machine_with(2, 2)), "apic");
  ASSERT_EQ(madt.status, 0) << madt.output;
  EXPECT_EQ(madt.dsl.find("Error"), std::string::npos) << madt.dsl;
  EXPECT_NE(madt.dsl.find("Interrupt Source Override"), std::string::npos) << madt.dsl;
}

TEST(AcpiTables, RegionMustNotOverlapRamMmioOrOtherStructures) {
  auto regions = GuestMemory::plan_regions(256 * layout::kMiB);
  EXPECT_EQ(x86::acpi_region_conflict(layout::kAcpiStart, layout::kAcpiSize, regions), std::nullopt);
  auto ram = x86::acpi_region_conflict(0x10000, 0x1000, regions);
  ASSERT_TRUE(ram.has_value());
  EXPECT_NE(ram->find("guest RAM"), std::string::npos) << *ram;
  auto high = x86::acpi_region_conflict(layout::kHighMemStart - 0x1000, 0x2000, regions);
  ASSERT_TRUE(high.has_value());
  EXPECT_NE(high->find("guest RAM"), std::string::npos) << *high;
  auto mmio = x86::acpi_region_conflict(layout::kMmioGapStart, 0x1000, GuestMemory::plan_regions(8 * layout::kGiB));
  ASSERT_TRUE(mmio.has_value());
  EXPECT_NE(mmio->find("MMIO gap"), std::string::npos) << *mmio;
  auto mptable = x86::acpi_region_conflict(layout::kMptableStart, 0x100, regions);
  ASSERT_TRUE(mptable.has_value());
  EXPECT_NE(mptable->find("mp table"), std::string::npos) << *mptable;
  EXPECT_TRUE(x86::acpi_region_conflict(layout::kAcpiStart, 0, regions).has_value());
}

TEST(AcpiTables, WrittenIntoGuestMemoryAtTheRegion) {
  GuestMemoryOptions options;
  options.size_bytes = 64 * layout::kMiB;
  options.prefault = Prefault::Off;
  GuestMemory memory = GuestMemory::create(options);
  uint64_t rsdp = x86::write_acpi_tables(memory, machine_with(2));
  EXPECT_EQ(rsdp, layout::kAcpiStart);
  auto bytes = memory.span(rsdp, 8, "rsdp");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), 8), "RSD PTR ");
}

TEST(AcpiPowerControl, OnlyS5WithSleepEnableEndsTheVmAndOnlyTheResetValueResets) {
  int poweroffs = 0, resets = 0;
  AcpiPowerControl acpi([&] { ++poweroffs; }, [&] { ++resets; });
  auto write = [&](uint64_t offset, uint8_t v) { acpi.write(offset, std::span<const uint8_t>(&v, 1)); };
  // Garbage: every value except SLP_EN | SLP_TYP=5 on the control register.
  for (int v = 0; v < 256; ++v) {
    if (v == ((x86::kAcpiS5SleepType << 2) | 0x20)) continue;
    if ((v & 0x20) && ((v >> 2) & 7) == x86::kAcpiS5SleepType) continue;  // bits 0,1,6,7 ignored
    write(AcpiPowerControl::kSleepControl, static_cast<uint8_t>(v));
    write(AcpiPowerControl::kSleepStatus, static_cast<uint8_t>(v));
    if (v != x86::kAcpiResetValue) write(AcpiPowerControl::kReset, static_cast<uint8_t>(v));
  }
  uint8_t wide[2] = {0x34, 0};
  acpi.write(AcpiPowerControl::kSleepControl, std::span<const uint8_t>(wide, 2));  // not a byte access
  EXPECT_EQ(poweroffs, 0);
  EXPECT_EQ(resets, 0);
  uint8_t r = 0xaa;
  acpi.read(AcpiPowerControl::kSleepStatus, std::span<uint8_t>(&r, 1));
  EXPECT_EQ(r, 0);
  write(AcpiPowerControl::kSleepControl, (x86::kAcpiS5SleepType << 2) | 0x20);
  EXPECT_EQ(poweroffs, 1);
  write(AcpiPowerControl::kReset, x86::kAcpiResetValue);
  EXPECT_EQ(resets, 1);
}

TEST(CmdlineWords, SpaceSeparatedInOrderWithoutEmptyWords) {
  EXPECT_EQ(cmdline_words("console=ttyS0  acpi=off i8042.nopnp "),
            (std::vector<std::string_view>{"console=ttyS0", "acpi=off", "i8042.nopnp"}));
  EXPECT_TRUE(cmdline_words("").empty());
  EXPECT_TRUE(cmdline_words("   ").empty());
}

TEST(AcpiSwitch, OnByDefaultOffBySwitchOrTheLastAcpiWord) {
  VmConfig c;
  EXPECT_TRUE(acpi_enabled(c));
  c.boot.boot_args = "console=ttyS0 acpi=off quiet";
  EXPECT_FALSE(acpi_enabled(c));
  c.boot.boot_args = "acpi=off acpi=force";
  EXPECT_TRUE(acpi_enabled(c));
  c.boot.boot_args = "noacpi=off";
  EXPECT_TRUE(acpi_enabled(c));
  c.boot.boot_args = "console=ttyS0";
  c.acpi = false;
  EXPECT_FALSE(acpi_enabled(c));
}

}  // namespace
}  // namespace ember
