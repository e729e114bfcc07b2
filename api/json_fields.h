// Reading one JSON object field by field with errors that name the field: shared by the
// API's JSON mapping (json_config.cpp) and examples/faas's function registrations.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "base/util/error.h"

namespace ember {

// Reads the fields of one JSON object; every field read is marked known, and done()
// rejects the rest, so a typo is an error rather than silently ignored.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) fail(where_, " must be a JSON object");
  }
  bool has(const char* key) {
    known_.insert(key);
    return j_.contains(key) && !j_.at(key).is_null();
  }
  std::optional<std::string> string(const char* key) {
    if (!has(key)) return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_string()) fail(name(key), " must be a string");
    return v.get<std::string>();
  }
  std::optional<bool> boolean(const char* key) {
    if (!has(key)) return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_boolean()) fail(name(key), " must be true or false");
    return v.get<bool>();
  }
  std::optional<uint64_t> integer(const char* key, uint64_t min, uint64_t max) {
    if (!has(key)) return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
      fail(name(key), " must be a whole number between ", min, " and ", max);
    }
    uint64_t value = v.get<uint64_t>();
    if (value < min || value > max) fail(name(key), " must be between ", min, " and ", max, " (got ", value, ")");
    return value;
  }
  template <typename T>
  T required(std::optional<T> value, const char* key) {
    if (!value) fail(name(key), " is required");
    return *value;
  }
  // A field of Firecracker's API that ember does not implement.
  void unsupported(const char* key, const char* what = "is not supported by ember") {
    if (has(key)) fail(name(key), " ", what);
  }
  void done() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!known_.count(it.key())) fail(where_, ": unknown field '", it.key(), "'");
    }
  }
  std::string name(const char* key) const { return where_ + "." + key; }

 private:
  const nlohmann::json& j_;
  std::string where_;
  std::set<std::string> known_;
};

}  // namespace ember
