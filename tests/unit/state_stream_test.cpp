#include "base/state_stream.h"

#include <gtest/gtest.h>

namespace ember::snapshot {
namespace {

TEST(StateStream, RoundTripsEveryKindLittleEndian) {
  StateWriter w;
  w.u8(0xab);
  w.u16(0x1234);
  w.u32(0xdeadbeef);
  w.u64(0x0102030405060708ull);
  w.boolean(true);
  w.text("vcpu0");
  struct Pod {
    uint32_t a;
    uint16_t b;
  } pod{7, 9};
  w.raw(pod);
  const auto& d = w.data();
  EXPECT_EQ(d[1], 0x34);  // u16 low byte first
  EXPECT_EQ(d[2], 0x12);

  StateReader r(d, "test");
  EXPECT_EQ(r.u8("a"), 0xab);
  EXPECT_EQ(r.u16("b"), 0x1234);
  EXPECT_EQ(r.u32("c"), 0xdeadbeefu);
  EXPECT_EQ(r.u64("d"), 0x0102030405060708ull);
  EXPECT_TRUE(r.boolean("e"));
  EXPECT_EQ(r.text("f", 16), "vcpu0");
  auto back = r.raw<Pod>("g");
  EXPECT_EQ(back.a, 7u);
  EXPECT_EQ(back.b, 9u);
  r.expect_end();
}

TEST(StateStream, TruncationNamesTheFieldAndTheContext) {
  StateWriter w;
  w.u16(1);
  StateReader r(w.data(), "snapshot section vcpu0");
  try {
    r.u32("queue_size");
    FAIL() << "read past the end";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "snapshot section vcpu0: truncated: queue_size needs 4 bytes, 2 left");
  }
}

TEST(StateStream, LengthsAboveTheBoundAreRefusedBeforeAllocating) {
  StateWriter w;
  w.u32(0xffffffff);  // a length prefix claiming 4 GiB
  StateReader r(w.data(), "ctx");
  EXPECT_THROW(r.bytes("config", 256), Error);
  StateWriter w2;
  w2.text("abcdef");
  StateReader r2(w2.data(), "ctx");
  try {
    r2.text("name", 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "ctx: name is 6 bytes, more than the 4 allowed");
  }
}

TEST(StateStream, BooleanOtherThanZeroOrOneAndTrailingBytesAreRefused) {
  StateWriter w;
  w.u8(2);
  StateReader r(w.data(), "ctx");
  EXPECT_THROW(r.boolean("ready"), Error);
  StateWriter w2;
  w2.u32(1);
  StateReader r2(w2.data(), "ctx");
  r2.u16("x");
  EXPECT_THROW(r2.expect_end(), Error);
}

}  // namespace
}  // namespace ember::snapshot
