#include "engine/grammar_matcher.h"

#include <algorithm>
#include <cassert>
#include <functional>

namespace llm {

namespace {
using Op = ByteProgram::Op;

uint64_t hash_set(const uint32_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull + (h >> 29);
  return h;
}
}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const ByteProgram> prog)
    : prog_(std::move(prog)), n_classes_(prog_->n_classes) {
  clear_tables();
  const ByteProgram& p = *prog_;
  for (uint32_t a = p.rule_alts[p.root]; a < p.rule_alts[p.root + 1]; ++a) {
    work_.push_back({p.alt_start[a], 0});
  }
  closure();
  start_ = cur_ = intern_state(scratch_);
}

void GrammarMatcher::clear_tables() {
  stacks_.assign(1, Frame{0, 0});  // the bottom
  frame_id_.clear();
  set_.clear();
  set_off_.assign(1, 0);
  state_id_.clear();
  accepting_.clear();
  trans_.clear();
  loop_cats_.clear();
  visited_.assign(1, 0);
  epoch_ = 0;
  intern_state({});  // kDead
  std::fill(trans_.begin(), trans_.end(), kDead);
}

uint32_t GrammarMatcher::intern_frame(uint32_t pos, uint32_t parent) {
  uint64_t key = (uint64_t{pos} << 32) | parent;
  auto [it, fresh] = frame_id_.emplace(key, static_cast<uint32_t>(stacks_.size()));
  if (fresh) {
    stacks_.push_back({pos, parent});
    visited_.push_back(0);
  }
  return it->second;
}

GrammarMatcher::State GrammarMatcher::intern_state(const std::vector<uint32_t>& stacks) {
  uint64_t h = hash_set(stacks.data(), stacks.size());
  auto [lo, hi] = state_id_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    uint32_t s = it->second;
    uint32_t b = set_off_[s], e = set_off_[s + 1];
    if (e - b == stacks.size() && std::equal(stacks.begin(), stacks.end(), set_.begin() + b)) {
      return s;
    }
  }
  State s = static_cast<State>(accepting_.size());
  set_.insert(set_.end(), stacks.begin(), stacks.end());
  set_off_.push_back(static_cast<uint32_t>(set_.size()));
  state_id_.emplace(h, s);
  accepting_.push_back(!stacks.empty() && stacks[0] == 0);
  trans_.resize(trans_.size() + n_classes_, kUnknown);
  loop_cats_.push_back(0);
  return s;
}

// Expands the items in work_ until every stack's top is a Byte element or the bottom;
// leaves the stack ids, sorted and unique, in scratch_.
void GrammarMatcher::closure() {
  const ByteProgram& p = *prog_;
  scratch_.clear();
  if (++epoch_ == 0) {  // wrapped: old marks could collide
    std::fill(visited_.begin(), visited_.end(), 0);
    epoch_ = 1;
  }
  while (!work_.empty()) {
    Item it = work_.back();
    work_.pop_back();
    const ByteProgram::Elem& e = p.elems[it.pos];
    if (e.op == Op::End) {
      if (it.parent == 0) {
        scratch_.push_back(0);  // the root rule is complete
      } else {
        const Frame& f = stacks_[it.parent];
        work_.push_back({f.pos, f.parent});  // return to the caller
      }
      continue;
    }
    // Equal (position, parent) pairs have equal futures: expand each once. This also ends
    // the loops of nullable tail-recursive rules such as (x?)*.
    uint32_t id = intern_frame(it.pos, it.parent);
    if (visited_[id] == epoch_) continue;
    visited_[id] = epoch_;
    if (e.op == Op::Byte) {
      scratch_.push_back(id);
      continue;
    }
    // Ref: push the callee's alternatives over a return frame, or over the caller's own
    // parent when nothing follows the reference (tail call).
    uint32_t ret = it.pos + 1;
    uint32_t parent = p.elems[ret].op == Op::End ? it.parent : intern_frame(ret, it.parent);
    for (uint32_t a = p.rule_alts[e.arg]; a < p.rule_alts[e.arg + 1]; ++a) {
      work_.push_back({p.alt_start[a], parent});
    }
  }
  std::sort(scratch_.begin(), scratch_.end());
  scratch_.erase(std::unique(scratch_.begin(), scratch_.end()), scratch_.end());
}

GrammarMatcher::State GrammarMatcher::compute(State s, uint8_t byte) {
  const ByteProgram& p = *prog_;
  assert(work_.empty());
  for (uint32_t i = set_off_[s]; i < set_off_[s + 1]; ++i) {
    uint32_t id = set_[i];
    if (id == 0) continue;  // complete: nothing may follow
    const Frame f = stacks_[id];
    const ByteProgram::Elem& e = p.elems[f.pos];
    assert(e.op == Op::Byte);
    if (ByteProgram::has(p.sets[e.arg], byte)) work_.push_back({f.pos + 1, f.parent});
  }
  closure();
  State t = intern_state(scratch_);
  trans_[static_cast<size_t>(s) * n_classes_ + p.byte_class[byte]] = t;
  return t;
}

uint8_t GrammarMatcher::compute_loop(State s) {
  uint8_t fail = 0;  // categories with a byte that leaves s
  for (int b = 0; b < 256; ++b) {
    int c = byte_category(static_cast<uint8_t>(b));
    if (!(fail >> c & 1) && step(s, static_cast<uint8_t>(b)) != s) fail |= 1 << c;
  }
  uint8_t loop = static_cast<uint8_t>(~fail);
  loop_cats_[s] = static_cast<uint16_t>((loop_cats_[s] & 0x600) | 0x100 | loop);
  return loop;
}

bool GrammarMatcher::compute_utf8_loop(State s) {
  // Walk every lead byte and every continuation byte, memoising (state, bytes left).
  std::vector<std::pair<uint64_t, bool>> memo;
  std::function<bool(State, int)> back = [&](State q, int left) -> bool {
    if (left == 0) return q == s;
    if (q == kDead) return false;
    uint64_t key = (uint64_t{q} << 8) | static_cast<uint64_t>(left);
    for (const auto& [k, v] : memo) {
      if (k == key) return v;
    }
    bool ok = true;
    for (int c = 0x80; ok && c <= 0xBF; ++c) ok = back(step(q, static_cast<uint8_t>(c)), left - 1);
    memo.push_back({key, ok});
    return ok;
  };
  bool ok = true;
  for (int b = 0xC2; ok && b <= 0xF4; ++b) {
    int len = b <= 0xDF ? 2 : b <= 0xEF ? 3 : 4;
    int lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
    int hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    State q = step(s, static_cast<uint8_t>(b));
    for (int c = lo; ok && c <= hi; ++c)
      ok = q != kDead && back(step(q, static_cast<uint8_t>(c)), len - 2);
  }
  loop_cats_[s] |= static_cast<uint16_t>(0x200 | (ok ? 0x400 : 0));
  return ok;
}

GrammarMatcher::State GrammarMatcher::run(State s, std::string_view bytes) {
  for (char c : bytes) {
    if (s == kDead) break;
    s = step(s, static_cast<uint8_t>(c));
  }
  return s;
}

bool GrammarMatcher::advance(std::string_view bytes) {
  State s = run(cur_, bytes);
  if (s == kDead) return false;
  cur_ = s;
  return true;
}

size_t GrammarMatcher::memory_bytes() const {
  return stacks_.size() * (sizeof(Frame) + sizeof(uint32_t) + 32) + set_.size() * sizeof(uint32_t) +
         accepting_.size() * (4 + 1 + 32 + 2) + trans_.size() * sizeof(uint32_t);
}

void GrammarMatcher::compact() {
  // Copy the current stacks out as explicit frame lists (top first), rebuild, re-intern.
  std::vector<std::vector<uint32_t>> lists;
  for (uint32_t i = set_off_[cur_]; i < set_off_[cur_ + 1]; ++i) {
    std::vector<uint32_t> pos;
    for (uint32_t id = set_[i]; id != 0; id = stacks_[id].parent) pos.push_back(stacks_[id].pos);
    lists.push_back(std::move(pos));
  }
  clear_tables();
  std::vector<uint32_t> ids;
  for (const auto& pos : lists) {
    uint32_t parent = 0;
    for (size_t k = pos.size(); k-- > 0;) parent = intern_frame(pos[k], parent);
    ids.push_back(parent);
  }
  std::sort(ids.begin(), ids.end());
  State cur = intern_state(ids);
  const ByteProgram& p = *prog_;
  for (uint32_t a = p.rule_alts[p.root]; a < p.rule_alts[p.root + 1]; ++a) {
    work_.push_back({p.alt_start[a], 0});
  }
  closure();
  start_ = intern_state(scratch_);
  cur_ = cur;
}

}  // namespace llm
