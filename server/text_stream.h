// Turning a stream of decoded text into what a client may see: stop strings are cut
// before they are shown, even when they straddle token boundaries, and nothing that
// could still turn out to be the start of a stop string is released early.
#pragma once
#include <string>
#include <vector>

namespace llm {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends text; returns the part that can be shown now. After a stop string is
  // found, returns the text before it and stopped() is true; later pushes return "".
  std::string push(const std::string& text);
  // End of generation: releases whatever was held back (no stop string matched).
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string that matched

 private:
  std::vector<std::string> stops_;
  std::string held_;  // a tail that is a prefix of some stop string
  bool stopped_ = false;
  std::string matched_;
};

// Number of bytes at the end of s that form an incomplete UTF-8 character.
size_t incomplete_utf8_tail(const std::string& s);

}  // namespace llm
