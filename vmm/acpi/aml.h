// A small ACPI Machine Language encoder: the few objects a DSDT needs to describe
// fixed devices (ACPI 6.5, chapter 20 for AML, 6.4 for resource descriptors).
// Each function returns the encoded bytes; callers nest them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace ember::aml {

using Bytes = std::vector<uint8_t>;

// Appends `more` to `out` (objects and tables are built by concatenation).
void append(Bytes& out, const Bytes& more);

// A name path: "\\_SB_" (root-relative) or "V000"; each segment is 1-4 characters
// (A-Z, 0-9, _; not starting with a digit), padded with '_'. Throws Error otherwise.
Bytes name_string(std::string_view path);
// The smallest encoding of `value` (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix).
Bytes integer(uint64_t value);
// A null-terminated ASCII string (StringPrefix).
Bytes string(std::string_view text);
// A compressed EISA id ("PNP0501") as its DWord integer. Throws Error when malformed.
Bytes eisa_id(std::string_view id);
// Name(path, object)
Bytes name(std::string_view path, const Bytes& object);
// Scope(path) { body } and Device(path) { body }
Bytes scope(std::string_view path, const Bytes& body);
Bytes device(std::string_view path, const Bytes& body);
// Package() { elements }: each element an encoded data object.
Bytes package(const std::vector<Bytes>& elements);
// ResourceTemplate() { descriptors }: a Buffer of the descriptors and an end tag.
Bytes resource_template(const std::vector<Bytes>& descriptors);

// Resource descriptors (for resource_template).
Bytes memory32_fixed(uint32_t base, uint32_t length, bool writable);
// Extended Interrupt descriptor: one interrupt, consumer, exclusive.
Bytes interrupt(uint32_t gsi, bool edge, bool active_high);
// I/O port descriptor with 16-bit decode: one fixed range.
Bytes io_port(uint16_t base, uint8_t length);
// IRQNoFlags(){irq}: an ISA IRQ 0-15, edge-triggered, active high.
Bytes irq_no_flags(uint8_t irq);

// PkgLength (20.2.4): the length of itself plus `content_length` bytes that follow.
Bytes pkg_length(size_t content_length);

}  // namespace ember::aml
