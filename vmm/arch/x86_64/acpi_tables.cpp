#include "vmm/arch/x86_64/acpi_tables.h"

#include <cstddef>
#include <cstring>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/acpi/aml.h"
#include "vmm/arch/x86_64/e820.h"
#include "vmm/arch/x86_64/mptable.h"
#include "vmm/arch/x86_64/table_bytes.h"

namespace ember::x86 {

namespace {

#pragma pack(push, 1)
struct TableHeader {  // 5.2.6
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  char creator_id[4];
  uint32_t creator_revision;
};

struct GenericAddress {  // 5.2.3.2
  uint8_t space_id;      // 0 memory, 1 system I/O
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;   // 1 byte access
  uint64_t address;
};

struct Rsdp {  // 5.2.5.3
  char signature[8];
  uint8_t checksum;  // of the first 20 bytes
  char oem_id[6];
  uint8_t revision;
  uint32_t rsdt_address;
  uint32_t length;
  uint64_t xsdt_address;
  uint8_t extended_checksum;
  uint8_t reserved[3];
};

struct Fadt {  // 5.2.9, revision 6.5
  TableHeader header;
  uint32_t firmware_ctrl;
  uint32_t dsdt;
  uint8_t reserved0;
  uint8_t preferred_pm_profile;
  uint16_t sci_int;
  uint32_t smi_cmd;
  uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
  uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk;
  uint32_t gpe0_blk, gpe1_blk;
  uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len, gpe1_base;
  uint8_t cst_cnt;
  uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
  uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
  uint16_t iapc_boot_arch;
  uint8_t reserved1;
  uint32_t flags;
  GenericAddress reset_reg;
  uint8_t reset_value;
  uint16_t arm_boot_arch;
  uint8_t fadt_minor_version;
  uint64_t x_firmware_ctrl;
  uint64_t x_dsdt;
  GenericAddress x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm2_cnt_blk, x_pm_tmr_blk;
  GenericAddress x_gpe0_blk, x_gpe1_blk;
  GenericAddress sleep_control_reg;
  GenericAddress sleep_status_reg;
  uint64_t hypervisor_vendor_identity;
};

struct MadtHeader {  // 5.2.12
  TableHeader header;
  uint32_t local_apic_address;
  uint32_t flags;  // bit 0 PCAT_COMPAT: dual 8259s; none in a hardware-reduced machine
};

struct MadtLocalApic {  // type 0
  uint8_t type, length, processor_uid, apic_id;
  uint32_t flags;  // bit 0 enabled
};

struct MadtIoApic {  // type 1
  uint8_t type, length, ioapic_id, reserved;
  uint32_t address;
  uint32_t gsi_base;
};

struct MadtInterruptOverride {  // type 2
  uint8_t type, length, bus, source;
  uint32_t gsi;
  uint16_t flags;  // bits 0-1 polarity (1 high), bits 2-3 trigger (1 edge)
};

struct MadtLocalApicNmi {  // type 4
  uint8_t type, length, processor_uid;
  uint16_t flags;
  uint8_t lint;
};
#pragma pack(pop)

static_assert(sizeof(TableHeader) == 36);
static_assert(sizeof(GenericAddress) == 12);
static_assert(sizeof(Rsdp) == 36);
static_assert(sizeof(Fadt) == 276);
static_assert(offsetof(Fadt, iapc_boot_arch) == 109);
static_assert(offsetof(Fadt, sleep_control_reg) == 244);
static_assert(sizeof(MadtLocalApic) == 8 && sizeof(MadtIoApic) == 12);
static_assert(sizeof(MadtInterruptOverride) == 10 && sizeof(MadtLocalApicNmi) == 6);

constexpr uint8_t kSpaceSystemIo = 1;
constexpr uint8_t kAccessByte = 1;
constexpr uint32_t kFadtResetRegisterSupported = 1u << 10;
constexpr uint32_t kFadtPowerButtonIsControlMethod = 1u << 4;  // no fixed-feature power button
constexpr uint32_t kFadtSleepButtonIsControlMethod = 1u << 5;
constexpr uint32_t kFadtHardwareReduced = 1u << 20;
// IA-PC boot architecture flags (5.2.9.3).
constexpr uint16_t kBootArch8042 = 1u << 1;
constexpr uint16_t kBootArchNoVga = 1u << 2;
constexpr uint16_t kBootArchNoMsi = 1u << 3;
constexpr uint16_t kBootArchNoCmosRtc = 1u << 5;
constexpr uint16_t kEdgeActiveHigh = 0x5;  // MPS INTI flags: polarity 01, trigger 01

TableHeader header(const char* signature, uint32_t length, uint8_t revision) {
  TableHeader h{};
  std::memcpy(h.signature, signature, 4);
  h.length = length;
  h.revision = revision;
  std::memcpy(h.oem_id, "EMBER ", 6);
  std::memcpy(h.oem_table_id, "EMBERVM ", 8);
  h.oem_revision = 1;
  std::memcpy(h.creator_id, "EMBR", 4);
  h.creator_revision = 1;
  return h;
}

// Sets the length and checksum of the table in `bytes` (its header first).
std::vector<uint8_t> finish(std::vector<uint8_t> bytes) {
  auto length = static_cast<uint32_t>(bytes.size());
  std::memcpy(bytes.data() + offsetof(TableHeader, length), &length, sizeof length);
  bytes[offsetof(TableHeader, checksum)] = 0;
  bytes[offsetof(TableHeader, checksum)] = table_checksum(bytes.data(), bytes.size());
  return bytes;
}

GenericAddress io_register(uint16_t port) { return {kSpaceSystemIo, 8, 0, kAccessByte, port}; }

// The ISA IRQs ember raises and how: edge-triggered, active high, pin = IRQ.
std::vector<uint8_t> legacy_irqs(const AcpiMachine& machine) {
  std::vector<uint8_t> irqs{static_cast<uint8_t>(layout::kI8042Irq), static_cast<uint8_t>(layout::kCom1Irq)};
  for (const MmioSlot& s : machine.virtio_slots) {
    if (s.irq < 16) irqs.push_back(static_cast<uint8_t>(s.irq));
  }
  return irqs;
}

// Device(path) { _HID, _UID, _CRS }: how every device in ember's DSDT is described.
aml::Bytes described_device(const std::string& path, const aml::Bytes& hid, uint64_t uid,
                            const std::vector<aml::Bytes>& resources) {
  aml::Bytes body = aml::name("_HID", hid);
  aml::append(body, aml::name("_UID", aml::integer(uid)));
  aml::append(body, aml::name("_CRS", aml::resource_template(resources)));
  return aml::device(path, body);
}

aml::Bytes virtio_device(size_t index, const MmioSlot& slot) {
  if (slot.base + slot.size > layout::kMmioGapEnd) fail("virtio-mmio slot at ", hex(slot.base), " is above 4 GiB");
  if (slot.irq > layout::kLastIrq) fail("virtio-mmio slot at ", hex(slot.base), " has IRQ ", slot.irq, " past the IOAPIC's pins");
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string path = "V";
  path += kHex[(index >> 8) & 0xf];
  path += kHex[(index >> 4) & 0xf];
  path += kHex[index & 0xf];
  return described_device(path, aml::string("LNRO0005"), index,
                          {aml::memory32_fixed(static_cast<uint32_t>(slot.base), static_cast<uint32_t>(slot.size), true),
                           aml::interrupt(slot.irq, /*edge=*/true, /*active_high=*/true)});
}

}  // namespace

std::vector<uint8_t> build_dsdt(const AcpiMachine& machine) {
  if (machine.virtio_slots.size() > 0xfff) fail("DSDT: ", machine.virtio_slots.size(), " virtio devices is too many");
  aml::Bytes devices = described_device("COM1", aml::eisa_id("PNP0501"), 0,
                                        {aml::io_port(layout::kCom1Port, 8), aml::irq_no_flags(layout::kCom1Irq)});
  aml::append(devices, described_device("PS2K", aml::eisa_id("PNP0303"), 0,
                                        {aml::io_port(layout::kI8042DataPort, 1),
                                         aml::io_port(layout::kI8042CommandPort, 1),
                                         aml::irq_no_flags(static_cast<uint8_t>(layout::kI8042Irq))}));
  for (size_t i = 0; i < machine.virtio_slots.size(); ++i) aml::append(devices, virtio_device(i, machine.virtio_slots[i]));
  std::vector<uint8_t> table;
  append_struct(table, header("DSDT", 0, 2));
  aml::append(table, aml::scope("\\_SB_", devices));
  // \_S5: SLP_TYPa, SLP_TYPb for soft off, what the guest writes to the sleep control register.
  aml::append(table, aml::name("\\_S5_", aml::package({aml::integer(kAcpiS5SleepType), aml::integer(0)})));
  return finish(std::move(table));
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_address) {
  Fadt f{};
  f.header = header("FACP", sizeof(Fadt), 6);
  f.dsdt = static_cast<uint32_t>(dsdt_address);
  f.x_dsdt = dsdt_address;
  f.iapc_boot_arch = kBootArch8042 | kBootArchNoVga | kBootArchNoMsi | kBootArchNoCmosRtc;
  f.flags = kFadtHardwareReduced | kFadtResetRegisterSupported | kFadtPowerButtonIsControlMethod |
            kFadtSleepButtonIsControlMethod;
  f.reset_reg = io_register(layout::kAcpiResetPort);
  f.reset_value = kAcpiResetValue;
  f.fadt_minor_version = 5;
  f.sleep_control_reg = io_register(layout::kAcpiSleepControlPort);
  f.sleep_status_reg = io_register(layout::kAcpiSleepStatusPort);
  std::memcpy(&f.hypervisor_vendor_identity, "EMBERVMM", 8);
  std::vector<uint8_t> table;
  append_struct(table, f);
  return finish(std::move(table));
}

std::vector<uint8_t> build_madt(const AcpiMachine& machine) {
  uint32_t vcpu_count = machine.vcpu_count;
  if (vcpu_count == 0 || vcpu_count > kMaxVcpus) fail("MADT: vCPU count ", vcpu_count, " is not 1..", kMaxVcpus);
  std::vector<uint8_t> table;
  MadtHeader h{header("APIC", 0, 6), static_cast<uint32_t>(layout::kLapicStart), 0};
  append_struct(table, h);
  for (uint32_t cpu = 0; cpu < vcpu_count; ++cpu) {
    append_struct(table, MadtLocalApic{0, sizeof(MadtLocalApic), static_cast<uint8_t>(cpu), static_cast<uint8_t>(cpu), 1});
  }
  append_struct(table, MadtIoApic{1, sizeof(MadtIoApic), ioapic_id(vcpu_count), 0,
                                  static_cast<uint32_t>(layout::kIoapicStart), 0});
  // The legacy IRQs ember uses, pin = IRQ, as the MP table routes them.
  for (uint8_t irq : legacy_irqs(machine)) {
    append_struct(table, MadtInterruptOverride{2, sizeof(MadtInterruptOverride), 0, irq, irq, kEdgeActiveHigh});
  }
  append_struct(table, MadtLocalApicNmi{4, sizeof(MadtLocalApicNmi), 0xff, 0, 1});  // LINT1 is NMI on all
  return finish(std::move(table));
}

std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& table_addresses) {
  std::vector<uint8_t> table;
  append_struct(table, header("XSDT", 0, 1));
  for (uint64_t a : table_addresses) append_struct(table, a);
  return finish(std::move(table));
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_address) {
  Rsdp r{};
  std::memcpy(r.signature, "RSD PTR ", 8);
  std::memcpy(r.oem_id, "EMBER ", 6);
  r.revision = 2;
  r.length = sizeof(Rsdp);
  r.xsdt_address = xsdt_address;
  std::vector<uint8_t> bytes;
  append_struct(bytes, r);
  bytes[offsetof(Rsdp, checksum)] = table_checksum(bytes.data(), 20);
  bytes[offsetof(Rsdp, extended_checksum)] = table_checksum(bytes.data(), bytes.size());
  return bytes;
}

AcpiImage build_acpi_tables(const AcpiMachine& machine, uint64_t base, uint64_t size) {
  // RSDP, then XSDT, FADT, MADT, DSDT, each 16-byte aligned.
  auto align = [](uint64_t v) { return (v + 15) & ~uint64_t{15}; };
  std::vector<uint8_t> dsdt = build_dsdt(machine);
  std::vector<uint8_t> madt = build_madt(machine);
  uint64_t rsdp_at = base;
  uint64_t xsdt_at = align(rsdp_at + sizeof(Rsdp));
  uint64_t xsdt_size = sizeof(TableHeader) + 2 * sizeof(uint64_t);
  uint64_t fadt_at = align(xsdt_at + xsdt_size);
  uint64_t madt_at = align(fadt_at + sizeof(Fadt));
  uint64_t dsdt_at = align(madt_at + madt.size());
  uint64_t end = dsdt_at + dsdt.size();
  if (end - base > size) {
    fail("ACPI tables for ", machine.virtio_slots.size(), " devices and ", machine.vcpu_count, " vCPUs need ",
         end - base, " bytes; the region at ", hex(base), " holds ", size);
  }
  AcpiImage image{std::vector<uint8_t>(end - base, 0), rsdp_at};
  auto place = [&](uint64_t at, const std::vector<uint8_t>& t) { std::memcpy(image.bytes.data() + (at - base), t.data(), t.size()); };
  place(rsdp_at, build_rsdp(xsdt_at));
  place(xsdt_at, build_xsdt({fadt_at, madt_at}));
  place(fadt_at, build_fadt(dsdt_at));
  place(madt_at, madt);
  place(dsdt_at, dsdt);
  return image;
}

std::optional<std::string> acpi_region_conflict(uint64_t start, uint64_t size, const std::vector<MemoryRegion>& regions) {
  if (size == 0 || start + size < start) return "an empty or wrapping range";
  auto overlaps = [&](uint64_t s, uint64_t n) { return start < s + n && s < start + size; };
  for (const E820Entry& e : e820_map(regions)) {
    if (e.type == kE820Ram && overlaps(e.addr, e.size)) return cat("guest RAM at ", hex(e.addr), "-", hex(e.addr + e.size));
  }
  if (overlaps(layout::kMmioGapStart, layout::kMmioGapEnd - layout::kMmioGapStart)) return std::string("the MMIO gap");
  for (const layout::NamedRange& r : layout::kFixedRegions) {
    if (r.start == layout::kAcpiStart) continue;
    if (overlaps(r.start, r.size)) return cat("the ", r.name);
  }
  uint64_t low_end = regions.empty() ? 0 : regions.front().gpa + regions.front().size;
  if (start + size > low_end) return std::string("no guest memory (past the end of low RAM)");
  return std::nullopt;
}

uint64_t write_acpi_tables(GuestMemory& memory, const AcpiMachine& machine) {
  if (auto conflict = acpi_region_conflict(layout::kAcpiStart, layout::kAcpiSize, memory.regions())) {
    fail("the ACPI table region ", hex(layout::kAcpiStart), "+", hex(layout::kAcpiSize), " overlaps ", *conflict);
  }
  AcpiImage image = build_acpi_tables(machine, layout::kAcpiStart, layout::kAcpiSize);
  auto dst = memory.span(layout::kAcpiStart, image.bytes.size(), "ACPI tables");
  std::memcpy(dst.data(), image.bytes.data(), image.bytes.size());
  return image.rsdp_address;
}

}  // namespace ember::x86
