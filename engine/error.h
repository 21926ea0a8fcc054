// The one exception type for bad input (files, flags, requests). Internal invariants
// use assert; anything a user can cause throws llm::Error with a one-line message
// that says what is wrong and, where possible, what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace llm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace llm
