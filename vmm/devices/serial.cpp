#include "vmm/devices/serial.h"

#include <unistd.h>

namespace ember {

namespace {

// Register offsets and bits (PC16550D data sheet).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kIerRxData = 0x01, kIerThre = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThre = 0x02, kIirRxData = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMsrDcd = 0x80, kMsrDsr = 0x20, kMsrCts = 0x10;
constexpr size_t kMaxLine = 512;

}  // namespace

Serial::Serial(ConsoleOutput* out, std::function<void()> raise_irq, std::function<void(const std::string&)> on_line)
    : out_(out), raise_irq_(std::move(raise_irq)), on_line_(std::move(on_line)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1) return;
  std::lock_guard lock(mu_);
  data[0] = read_register(offset);
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  std::lock_guard lock(mu_);
  write_register(offset, data[0]);
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  size_t room = kRxCapacity - rx_.size();
  size_t taken = std::min(room, bytes.size());
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<long>(taken));
  if (taken < bytes.size()) overrun_ = true;
  update_interrupt();
  return taken;
}

uint8_t Serial::read_register(uint64_t offset) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      uint8_t byte = rx_.front();
      rx_.pop_front();
      update_interrupt();
      return byte;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIir: {
      uint8_t iir = kIirNone;
      if ((ier_ & kIerRxData) && !rx_.empty()) {
        iir = kIirRxData;
      } else if ((ier_ & kIerThre) && thre_pending_) {
        iir = kIirThre;
        thre_pending_ = false;  // reading IIR acknowledges THR empty
        update_interrupt();
      }
      return iir | kIirFifo;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      uint8_t lsr = kLsrThre | kLsrTemt;
      if (!rx_.empty()) lsr |= kLsrDataReady;
      if (overrun_) lsr |= kLsrOverrun;
      overrun_ = false;
      return lsr;
    }
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) | ((mcr_ & 0x04) << 4) |
                                    ((mcr_ & 0x08) << 4));
      }
      return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
      return scr_;
    default:
      return 0;
  }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData:
      if (dlab) {
        dll_ = value;
        return;
      }
      if (mcr_ & kMcrLoop) {
        if (rx_.size() < kRxCapacity) rx_.push_back(value);
      } else {
        emit(value);
      }
      thre_pending_ = true;  // the byte left at once: THR is empty again
      update_interrupt();
      return;
    case kIer:
      if (dlab) {
        dlm_ = value;
        return;
      }
      // Enabling the THR-empty interrupt while THR is empty raises it, as on a real 16550.
      if ((value & kIerThre) && !(ier_ & kIerThre)) thre_pending_ = true;
      ier_ = value & 0x0f;
      update_interrupt();
      return;
    case kIir:
      // FCR: FIFOs are always on; bit 1 clears the receive FIFO (Linux does this at port startup).
      if (value & kFcrClearRx) {
        rx_.clear();
        update_interrupt();
      }
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      mcr_ = value & 0x1f;
      return;
    case kScr:
      scr_ = value;
      return;
    default:
      return;
  }
}

void Serial::save_state(snapshot::StateWriter& out) const {
  std::lock_guard lock(mu_);
  for (uint8_t r : {ier_, lcr_, mcr_, scr_, dll_, dlm_}) out.u8(r);
  out.boolean(thre_pending_);
  out.boolean(overrun_);
  out.boolean(irq_asserted_);
  std::vector<uint8_t> rx(rx_.begin(), rx_.end());
  out.bytes(rx);
}

void Serial::restore_state(snapshot::StateReader& in) {
  uint8_t ier = in.u8("serial IER");
  if (ier & ~0x0f) in.invalid("serial IER", cat(hex(ier), " has bits above the four a 16550 keeps"));
  uint8_t lcr = in.u8("serial LCR");
  uint8_t mcr = in.u8("serial MCR");
  if (mcr & ~0x1f) in.invalid("serial MCR", cat(hex(mcr), " has bits above the five a 16550 keeps"));
  uint8_t scr = in.u8("serial SCR");
  uint8_t dll = in.u8("serial DLL");
  uint8_t dlm = in.u8("serial DLM");
  bool thre_pending = in.boolean("serial THRE pending");
  bool overrun = in.boolean("serial overrun");
  bool irq_asserted = in.boolean("serial interrupt asserted");
  std::vector<uint8_t> rx = in.bytes("serial receive FIFO", kRxCapacity);
  std::lock_guard lock(mu_);
  ier_ = ier, lcr_ = lcr, mcr_ = mcr, scr_ = scr, dll_ = dll, dlm_ = dlm;
  thre_pending_ = thre_pending;
  overrun_ = overrun;
  rx_.assign(rx.begin(), rx.end());
  // The line follows the registers after every access (update_interrupt).
  if (irq_asserted != wants_interrupt()) {
    in.invalid("serial interrupt asserted", cat(irq_asserted ? "set" : "clear", ", but the registers say otherwise"));
  }
  irq_asserted_ = irq_asserted;
}

void Serial::resend_interrupt_if_pending() {
  std::lock_guard lock(mu_);
  if (irq_asserted_ && raise_irq_) raise_irq_();
}

std::string Serial::describe_state() {
  std::lock_guard lock(mu_);
  return cat("COM1: IER ", hex(ier_), ", THR empty ", thre_pending_ ? "pending" : "acknowledged", ", ", rx_.size(),
             " input bytes waiting, interrupt ", irq_asserted_ ? "asserted" : "idle");
}

void Serial::emit(uint8_t byte) {
  if (out_) out_->put(byte);
  if (byte == '\n') {
    if (on_line_) on_line_(line_);
    line_.clear();
  } else if (byte != '\r' && line_.size() < kMaxLine) {
    line_.push_back(static_cast<char>(byte));
  }
}

bool Serial::wants_interrupt() const {
  return ((ier_ & kIerRxData) && !rx_.empty()) || ((ier_ & kIerThre) && thre_pending_);
}

// The IOAPIC pin is edge-triggered for ISA IRQs: raise on each new reason.
void Serial::update_interrupt() {
  bool want = wants_interrupt();
  if (want && !irq_asserted_ && raise_irq_) raise_irq_();
  irq_asserted_ = want;
}

}  // namespace ember
