// Matches bytes against a ByteProgram: a pushdown recogniser in the style of llama.cpp's
// llama-grammar (a set of stacks of grammar positions, advanced byte by byte), made fast by
// caching it as a lazily built DFA whose states are those stack sets.
//
// A stack is a persistent list of frames (grammar position, parent frame), hash-consed so
// that equal stacks share one id; a state is a sorted set of stack ids, also hash-consed.
// Every stack's top is a Byte element, or is the bottom frame (id 0) meaning "the root rule
// is complete". Advancing by a byte keeps the stacks whose top byte set contains it and
// expands what follows (pushing rule alternatives, popping finished rules) until every top
// is a byte set again. A reference in tail position does not push a frame (tail call), so
// right-recursive repetition such as `chars ::= char chars | ""` keeps a constant stack and
// the DFA sees the same state after every character: inside a JSON string the cached
// transitions are all hits.
//
// States and transitions only accumulate; compact() drops them all except the current one
// (callers do so between tokens when memory_bytes() grows too large). Not thread-safe: use
// one matcher per sequence (copies are independent; the program is shared and immutable).
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/grammar.h"

namespace llm {

class GrammarMatcher {
 public:
  using State = uint32_t;
  static constexpr State kDead = 0;  // the empty stack set: no continuation exists

  explicit GrammarMatcher(std::shared_ptr<const ByteProgram> prog);

  const ByteProgram& program() const { return *prog_; }
  State start() const { return start_; }
  State state() const { return cur_; }
  void reset() { cur_ = start_; }

  // The state after one byte; kDead when no stack accepts it. Cached per byte class.
  State step(State s, uint8_t byte) {
    uint32_t t = trans_[static_cast<size_t>(s) * n_classes_ + prog_->byte_class[byte]];
    return t != kUnknown ? t : compute(s, byte);
  }
  State run(State s, std::string_view bytes);              // kDead as soon as a byte fails
  bool accepting(State s) const { return accepting_[s]; }  // the root rule can end here
  // Bit c set: every byte of category c (byte_category) leads from s back to s.
  // Computed on first use per state.
  uint8_t loop_categories(State s) {
    uint16_t v = loop_cats_[s];
    return v & 0x100 ? static_cast<uint8_t>(v) : compute_loop(s);
  }
  // Every valid UTF-8 encoded character of two or more bytes leads from s back to s.
  bool utf8_loop(State s) {
    uint16_t v = loop_cats_[s];
    return v & 0x200 ? (v & 0x400) != 0 : compute_utf8_loop(s);
  }

  // Moves the current state along bytes; false (state unchanged) when they don't match.
  bool advance(std::string_view bytes);
  // Whole-text checks from the start state, for tests and validation.
  bool accepts(std::string_view text) { return accepting(run(start_, text)); }
  bool is_prefix(std::string_view text) { return run(start_, text) != kDead; }

  size_t n_states() const { return accepting_.size(); }
  size_t n_stacks() const { return stacks_.size(); }
  size_t memory_bytes() const;
  // Forgets every cached state and stack but the current state's (ids change).
  void compact();

 private:
  static constexpr uint32_t kUnknown = UINT32_MAX;
  struct Frame {
    uint32_t pos;     // element index: a Byte on top, a return position below
    uint32_t parent;  // frame id below this one; 0 = bottom
  };
  struct Item {
    uint32_t pos, parent;
  };

  State compute(State s, uint8_t byte);
  uint8_t compute_loop(State s);
  bool compute_utf8_loop(State s);
  void closure();  // expands work_ into scratch_ (sorted, unique stack ids)
  uint32_t intern_frame(uint32_t pos, uint32_t parent);
  State intern_state(const std::vector<uint32_t>& stacks);
  void clear_tables();

  std::shared_ptr<const ByteProgram> prog_;
  uint32_t n_classes_;
  State start_ = kDead, cur_ = kDead;

  // Frames, hash-consed: (pos << 32 | parent) -> id. Id 0 is the bottom.
  std::vector<Frame> stacks_;                        // (n_stacks)
  std::unordered_map<uint64_t, uint32_t> frame_id_;  // (n_stacks)
  // States: the sorted stack ids of state s are set_[set_off_[s] .. set_off_[s + 1]).
  std::vector<uint32_t> set_;
  std::vector<uint32_t> set_off_;                         // (n_states + 1)
  std::unordered_multimap<uint64_t, uint32_t> state_id_;  // hash of the set -> state
  std::vector<uint8_t> accepting_;                        // (n_states)
  std::vector<uint32_t> trans_;                           // (n_states, n_classes)
  // (n_states) loop categories; 0x100: they are known; 0x200: utf8_loop known, 0x400: its value
  std::vector<uint16_t> loop_cats_;

  // Scratch for compute().
  std::vector<Item> work_;
  std::vector<uint32_t> scratch_;
  std::vector<uint32_t> visited_;  // (n_stacks) epoch of the last visit
  uint32_t epoch_ = 0;
};

}  // namespace llm
