#include "base/util/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ember {
namespace {

enum class Why { TooShort, TooLong };

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return Failure{std::string("'") + c + "' is not a digit"};
  return c - '0';
}

TEST(Result, HoldsTheValueOrWhyNot) {
  Result<int> good = parse_digit('7');
  ASSERT_TRUE(good);
  EXPECT_EQ(*good, 7);
  Result<int> bad = parse_digit('x');
  EXPECT_FALSE(bad);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "'x' is not a digit");
}

TEST(Result, StringLiteralsAndClassifiedReasons) {
  Result<std::string> literal = Failure{"no"};  // a const char* failure into a std::string reason
  EXPECT_EQ(literal.error(), "no");
  Result<int, const char*> unallocated = Failure{"static text"};
  EXPECT_STREQ(unallocated.error(), "static text");
  Result<void, Why> classified = Failure{Why::TooLong};
  EXPECT_FALSE(classified);
  EXPECT_EQ(classified.error(), Why::TooLong);
  Result<void, Why> fine = {};
  EXPECT_TRUE(fine);
}

TEST(Result, MoveOnlyValuesAndArrowAccess) {
  Result<std::unique_ptr<std::string>> r = std::make_unique<std::string>("abc");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->size(), 3u);
  std::unique_ptr<std::string> taken = std::move(*r);
  EXPECT_EQ(*taken, "abc");
  struct Range {
    int offset, length;
  };
  Result<Range> range = Range{4, 8};
  EXPECT_EQ(range->offset + range->length, 12);
}

}  // namespace
}  // namespace ember
