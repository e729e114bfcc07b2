#include "vmm/arch/x86_64/mptable.h"

#include <cstring>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/arch/x86_64/table_bytes.h"

namespace ember::x86 {

namespace {

#pragma pack(push, 1)
struct FloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t config_table;
  uint8_t length;     // in 16-byte units
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t features[5];
};
struct ConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem[8];
  char product[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_address;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};
struct ProcessorEntry {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};
struct BusEntry {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};
struct IoapicEntry {
  uint8_t type;  // 2
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;
  uint32_t address;
};
struct InterruptEntry {
  uint8_t type;  // 3 = I/O interrupt, 4 = local interrupt
  uint8_t irq_type;  // 0 INT, 1 NMI, 3 ExtINT
  uint16_t flags;    // 0 = conforms to bus
  uint8_t source_bus;
  uint8_t source_irq;
  uint8_t dest_apic;
  uint8_t dest_pin;
};
#pragma pack(pop)

static_assert(sizeof(FloatingPointer) == 16);
static_assert(sizeof(ConfigHeader) == 44);
static_assert(sizeof(ProcessorEntry) == 20);
static_assert(sizeof(BusEntry) == 8);
static_assert(sizeof(IoapicEntry) == 8);
static_assert(sizeof(InterruptEntry) == 8);

constexpr uint8_t kApicVersion = 0x14;
constexpr uint8_t kIoapicVersion = 0x11;

}  // namespace

std::vector<uint8_t> build_mptable(uint32_t vcpu_count, uint64_t base) {
  if (vcpu_count == 0 || vcpu_count > kMaxVcpus) fail("MP table: vCPU count ", vcpu_count, " is not 1..", kMaxVcpus);
  const uint8_t ioapic = ioapic_id(vcpu_count);

  std::vector<uint8_t> entries;
  uint16_t count = 0;
  for (uint32_t cpu = 0; cpu < vcpu_count; ++cpu, ++count) {
    ProcessorEntry p{};
    p.type = 0;
    p.apic_id = static_cast<uint8_t>(cpu);
    p.apic_version = kApicVersion;
    p.flags = 1 | (cpu == 0 ? 2 : 0);
    p.signature = 0x600;   // family 6
    p.features = 0x201;    // FPU and on-chip APIC
    append_struct(entries, p);
  }
  BusEntry bus{1, 0, {'I', 'S', 'A', ' ', ' ', ' '}};
  append_struct(entries, bus);
  ++count;
  IoapicEntry ioapic_entry{2, ioapic, kIoapicVersion, 1, static_cast<uint32_t>(layout::kIoapicStart)};
  append_struct(entries, ioapic_entry);
  ++count;
  for (uint8_t irq = 0; irq <= layout::kLastIrq; ++irq, ++count) {
    append_struct(entries, InterruptEntry{3, 0, 0, 0, irq, ioapic, irq});
  }
  append_struct(entries, InterruptEntry{4, 3, 0, 0, 0, 0xff, 0});  // LINT0: ExtINT to all
  append_struct(entries, InterruptEntry{4, 1, 0, 0, 0, 0xff, 1});  // LINT1: NMI to all
  count += 2;

  ConfigHeader header{};
  std::memcpy(header.signature, "PCMP", 4);
  header.length = static_cast<uint16_t>(sizeof(ConfigHeader) + entries.size());
  header.spec_rev = 4;
  std::memcpy(header.oem, "EMBER   ", 8);
  std::memcpy(header.product, "MICROVM     ", 12);
  header.entry_count = count;
  header.lapic_address = static_cast<uint32_t>(layout::kLapicStart);

  FloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_table = static_cast<uint32_t>(base + sizeof(FloatingPointer));
  fp.length = 1;
  fp.spec_rev = 4;
  fp.checksum = table_checksum(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp));

  std::vector<uint8_t> table;
  append_struct(table, fp);
  size_t header_at = table.size();
  append_struct(table, header);
  table.insert(table.end(), entries.begin(), entries.end());
  table[header_at + offsetof(ConfigHeader, checksum)] = table_checksum(table.data() + header_at, header.length);
  return table;
}

void write_mptable(GuestMemory& memory, uint32_t vcpu_count) {
  auto table = build_mptable(vcpu_count, layout::kMptableStart);
  if (table.size() > layout::kMptableSize) {
    fail("MP table for ", vcpu_count, " vCPUs needs ", table.size(), " bytes, more than the ",
         layout::kMptableSize, " reserved");
  }
  auto dst = memory.span(layout::kMptableStart, table.size(), "MP table");
  std::memcpy(dst.data(), table.data(), table.size());
}

}  // namespace ember::x86
