// What a check of untrusted input gives back where failing is ordinary and nothing may throw
// (a guest's rings and requests, a client's bytes, an agent that does not answer): the value,
// or why there is none. Setup errors are thrown instead (error.h), and reported once.
//
//   Result<ByteRange> range = request_range(request, capacity);
//   if (!range) return refuse(range.error());
//   use(range->offset);
//
// E is a message (the default) or a classified reason, such as an enum with describe().
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace ember {

// The failing side, so that `return Failure{...}` converts to any Result with that E.
template <typename E>
struct Failure {
  E error;
};
template <typename E>
Failure(E) -> Failure<E>;  // a string literal is a Failure<const char*>, which any string E takes

template <typename T, typename E = std::string>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  template <typename F>
    requires std::is_constructible_v<E, F>
  Result(Failure<F> failure) : state_(std::in_place_index<1>, std::move(failure.error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // The value; only when ok().
  T& operator*() { return std::get<0>(state_); }
  const T& operator*() const { return std::get<0>(state_); }
  T* operator->() { return &std::get<0>(state_); }
  const T* operator->() const { return &std::get<0>(state_); }
  // Why there is no value; only when !ok().
  const E& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

// Success without a value.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <typename F>
    requires std::is_constructible_v<E, F>
  Result(Failure<F> failure) : error_(std::move(failure.error)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const E& error() const { return error_; }

 private:
  E error_{};
  bool failed_ = false;
};

}  // namespace ember
