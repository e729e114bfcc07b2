#include "vmm/devices/i8042.h"

namespace ember {

namespace {

constexpr uint64_t kDataOffset = 0;     // port 0x60
constexpr uint64_t kCommandOffset = 4;  // port 0x64
constexpr size_t kMaxOutput = 32;

// Ctrl, Alt and Delete down, then up in reverse order. Delete is an extended (0xE0) key.
constexpr uint8_t kCtrlAltDelSet1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
constexpr uint8_t kCtrlAltDelSet2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};

// Status register bits.
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusUnlocked = 0x10;  // keyboard not inhibited by a keylock
constexpr uint8_t kCommandByteKbdInterrupt = 0x01;
constexpr uint8_t kCommandByteKbdDisabled = 0x10;
constexpr uint8_t kCommandByteAuxDisabled = 0x20;
constexpr uint8_t kCommandByteTranslate = 0x40;  // the controller turns set 2 into set 1

// Controller commands (port 0x64).
constexpr uint8_t kCmdReadCommandByte = 0x20;
constexpr uint8_t kCmdWriteCommandByte = 0x60;
constexpr uint8_t kCmdDisableAux = 0xa7;
constexpr uint8_t kCmdEnableAux = 0xa8;
constexpr uint8_t kCmdTestAux = 0xa9;
constexpr uint8_t kCmdDisableKbd = 0xad;
constexpr uint8_t kCmdEnableKbd = 0xae;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdTestKbd = 0xab;
constexpr uint8_t kCmdReadInputPort = 0xc0;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdWriteKbdOutput = 0xd2;
constexpr uint8_t kCmdWriteAuxOutput = 0xd3;
constexpr uint8_t kCmdWriteAux = 0xd4;
constexpr uint8_t kCmdResetCpu = 0xfe;  // pulse the CPU reset line

// Keyboard commands (port 0x60) and replies.
constexpr uint8_t kKbdSetLeds = 0xed;
constexpr uint8_t kKbdGetId = 0xf2;
constexpr uint8_t kKbdSetRate = 0xf3;
constexpr uint8_t kKbdReset = 0xff;
constexpr uint8_t kKbdAck = 0xfa;
constexpr uint8_t kKbdSelfTestPassed = 0xaa;

}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1) return;
  bool raise = false;
  {
    std::lock_guard lock(mu_);
    if (offset == kCommandOffset) {
      data[0] = kStatusSystemFlag | kStatusUnlocked | (output_.empty() ? 0 : kStatusOutputFull);
      return;
    }
    if (offset != kDataOffset) {
      data[0] = 0xff;
      return;
    }
    data[0] = output_.empty() ? 0 : output_.front();
    if (!output_.empty()) output_.pop_front();
    // Edge-triggered IRQ 1: one pulse per byte left to read.
    raise = byte_waits_with_irq();
  }
  if (raise && raise_irq_) raise_irq_();
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  if (offset == kCommandOffset && data[0] == kCmdResetCpu) {
    if (on_reset_) on_reset_();
    return;
  }
  std::lock_guard lock(mu_);
  if (offset == kCommandOffset) command(data[0]);
  else if (offset == kDataOffset) data_write(data[0]);
}

void I8042::command(uint8_t cmd) {
  pending_command_ = 0;
  switch (cmd) {
    case kCmdReadCommandByte: push_output(command_byte_); break;
    case kCmdSelfTest: push_output(0x55); break;           // self test passed
    case kCmdTestKbd: push_output(0x00); break;            // no error
    // There is no mouse (AUX) port. Answering its tests promptly matters: Linux otherwise
    // waits out a timeout, polling the status port, for each of them.
    case kCmdTestAux: push_output(0x02); break;            // "clock line stuck high": nothing there
    case kCmdDisableAux: command_byte_ |= kCommandByteAuxDisabled; break;
    case kCmdEnableAux: command_byte_ &= static_cast<uint8_t>(~kCommandByteAuxDisabled); break;
    case kCmdDisableKbd: command_byte_ |= kCommandByteKbdDisabled; break;
    case kCmdEnableKbd: command_byte_ &= static_cast<uint8_t>(~kCommandByteKbdDisabled); break;
    case kCmdReadInputPort: push_output(0x00); break;
    case kCmdReadOutputPort: push_output(0x01); break;     // reset line not asserted
    case kCmdWriteCommandByte:
    case kCmdWriteOutputPort:
    case kCmdWriteKbdOutput:
    case kCmdWriteAuxOutput:
    case kCmdWriteAux:
      pending_command_ = cmd;  // the argument comes through the data port
      break;
    default:
      break;  // enable/disable ports and the like: nothing to model
  }
}

void I8042::data_write(uint8_t value) {
  uint8_t pending = pending_command_;
  pending_command_ = 0;
  switch (pending) {
    case kCmdWriteCommandByte: command_byte_ = value; return;
    case kCmdWriteKbdOutput: push_output(value); return;
    // The AUX loopback answers at once, but not as AUX data (the status AUX bit stays
    // clear): Linux reads that as "no AUX port" instead of timing out.
    case kCmdWriteAuxOutput: push_output(value); return;
    case kCmdWriteOutputPort:
    case kCmdWriteAux: return;  // no mouse, and the output port's reset bit is not modelled
    default: break;
  }
  // A byte for the keyboard itself.
  if (led_argument_) {
    led_argument_ = false;
    push_output(kKbdAck);
    return;
  }
  push_output(kKbdAck);
  switch (value) {
    case kKbdReset: push_output(kKbdSelfTestPassed); break;
    case kKbdGetId:  // an MF2 keyboard
      push_output(0xab);
      push_output(0x83);
      break;
    case kKbdSetLeds:
    case kKbdSetRate: led_argument_ = true; break;
    default: break;
  }
}

bool I8042::press_ctrl_alt_del() {
  bool raise = false;
  {
    std::lock_guard lock(mu_);
    std::span<const uint8_t> keys = (command_byte_ & kCommandByteTranslate) ? std::span<const uint8_t>(kCtrlAltDelSet1)
                                                                          : std::span<const uint8_t>(kCtrlAltDelSet2);
    if (output_.size() + keys.size() > kMaxOutput) return false;
    raise = output_.empty() && (command_byte_ & kCommandByteKbdInterrupt);
    output_.insert(output_.end(), keys.begin(), keys.end());
  }
  if (raise && raise_irq_) raise_irq_();
  return true;
}

void I8042::save_state(snapshot::StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.u8(command_byte_);
  out.u8(pending_command_);
  out.boolean(led_argument_);
  std::vector<uint8_t> output(output_.begin(), output_.end());
  out.bytes(output);
}

void I8042::restore_state(snapshot::StateReader& in) {
  uint8_t command_byte = in.u8("i8042 command byte");
  uint8_t pending = in.u8("i8042 pending command");
  // command() leaves only these waiting for a data byte.
  if (pending != 0 && pending != kCmdWriteCommandByte && pending != kCmdWriteOutputPort &&
      pending != kCmdWriteKbdOutput && pending != kCmdWriteAuxOutput && pending != kCmdWriteAux) {
    in.invalid("i8042 pending command", cat(hex(pending), " takes no data byte"));
  }
  bool led_argument = in.boolean("i8042 keyboard argument pending");
  std::vector<uint8_t> output = in.bytes("i8042 output queue", kMaxOutput);
  std::lock_guard lock(mu_);
  command_byte_ = command_byte;
  pending_command_ = pending;
  led_argument_ = led_argument;
  output_.assign(output.begin(), output.end());
}

void I8042::push_output(uint8_t byte) {
  if (output_.size() >= kMaxOutput) return;  // a guest not reading: drop, stay bounded
  bool was_empty = output_.empty();
  output_.push_back(byte);
  if (was_empty && (command_byte_ & kCommandByteKbdInterrupt) && raise_irq_) raise_irq_();
}

bool I8042::byte_waits_with_irq() const { return !output_.empty() && (command_byte_ & kCommandByteKbdInterrupt); }

void I8042::resend_interrupt_if_pending() {
  bool raise;
  {
    std::lock_guard lock(mu_);
    raise = byte_waits_with_irq();
  }
  if (raise && raise_irq_) raise_irq_();
}

}  // namespace ember
