// Grammar-constrained decoding at the token level: which tokens may come next so that the
// generated text stays a prefix of the grammar's language (OpenAI response_format).
//
// How the engine uses it:
//
//   // once per model, shared by every request and thread (immutable):
//   std::shared_ptr<const TokenIndex> index = TokenIndex::build(tokenizer);
//   // per request, when parsing it (llm::Error -> HTTP 400 with the message):
//   //   {"type": "json_object"}                     -> schema = nullptr
//   //   {"type": "json_schema", "json_schema": {"schema": S, "strict": b}}
//   //                                               -> schema = &S, opt.strict = b
//   auto c = make_json_constraint(index, schema, JsonSchemaOptions{.strict = b});
//   // per choice (n > 1): c->clone() before the first accept()
//   // every decode step of that sequence, on the host logits (n_vocab floats):
//   c->mask(logits);                          // 1. before sampling: banned tokens -> -INFINITY
//   int32_t id = sampler.sample(logits).id;   // 2. logit_bias/penalties still apply
//   c->accept(id);                            // 3. before the next mask()
//   // end-of-generation ids are allowed only when complete(): stop when one is sampled.
//   // Stop strings and max_tokens still end generation early (finish_reason "stop" /
//   // "length"); the text is then a prefix of valid JSON, as with OpenAI.
//
// Cost (CPU time per mask(), 128K-152K vocabularies, tests/test_token_constraint.cpp): about
// 0.1 ms between JSON tokens and in a string body whose state repeats (a per-constraint
// cache of allowed-token sets), 0.3 ms the first time in a string, 1.5-2.5 ms per token
// inside a string with maxLength (each count is a new state).
//
// A constraint is not thread-safe; different constraints may run on different threads
// (they share only immutable data).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/grammar.h"

namespace llm {

class Tokenizer;
struct JsonSchemaOptions;

class TokenConstraint {  // one per sequence
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logits of tokens that cannot continue the grammar to -INFINITY.
  // End-of-generation ids are allowed only when the grammar is complete here.
  virtual void mask(float* logits) = 0;    // logits: (n_vocab)
  virtual void accept(int32_t token) = 0;  // advance by a sampled token (asserts it was allowed)
  virtual bool complete() const = 0;       // the text so far is a full match
  virtual std::unique_ptr<TokenConstraint> clone() const = 0;  // for n > 1 / forks
};

// Per tokenizer, built once (about 60-80 ms for 150K tokens) and shared by every
// constraint: the bytes of each token and a byte trie over them, so that mask() walks
// every token in one pass and drops a whole subtree at the first byte the grammar refuses.
//
// Allowed at all: tokens with a non-empty piece (under 32 KiB) that are not control,
// user-defined, unknown or unused (those never appear in constrained output);
// end-of-generation ids only once the grammar is complete.
//
// Trie nodes in depth-first (= sorted) order; node 0 is the root (empty prefix):
//   column    | meaning
//   byte      | the byte on the edge from the parent
//   depth     | length of the prefix (the root is 0)
//   end       | one past the last node of this node's subtree (skip target)
//   tok_begin | tokens whose piece is exactly this prefix: tokens[tok_begin,
//             | nodes[i + 1].tok_begin) (a sentinel node closes the array); the whole
//             | subtree's tokens are tokens[tok_begin, nodes[end].tok_begin)
//   cats      | bit c: some edge of the subtree (its own edge included) carries a byte
//             | of category c (byte_category in grammar.h). When every such category
//             | loops the matcher state back to itself (the body of an unbounded JSON
//             | string), the walk takes the subtree's tokens wholesale.
//   utf8      | 1: from this node's edge on, every token of the subtree continues with
//             | valid UTF-8 (possibly cut short at its end). Then non-ASCII bytes need not
//             | loop byte by byte: a state that every whole character leads back to
//             | (GrammarMatcher::utf8_loop) allows the subtree too.
class TokenIndex {
 public:
  struct Node {
    uint32_t end;
    uint32_t tok_begin;
    uint16_t depth : 15;
    uint16_t utf8 : 1;
    uint8_t byte;
    uint8_t cats;
  };

  explicit TokenIndex(const Tokenizer& tok);
  static std::shared_ptr<const TokenIndex> build(const Tokenizer& tok) {
    return std::make_shared<const TokenIndex>(tok);
  }

  int n_vocab() const { return n_vocab_; }
  bool is_eog(int32_t id) const { return eog_mask_[static_cast<size_t>(id)]; }
  const std::vector<int32_t>& eog_ids() const { return eog_; }
  const std::string& piece(int32_t id) const { return piece_[static_cast<size_t>(id)]; }
  const std::vector<Node>& nodes() const { return nodes_; }  // (n_nodes + 1 sentinel)
  const std::vector<int32_t>& tokens() const { return tokens_; }
  size_t max_depth() const { return max_depth_; }

 private:
  int n_vocab_ = 0;
  std::vector<std::string> piece_;  // (n_vocab) "" for tokens never allowed by a grammar
  std::vector<uint8_t> eog_mask_;   // (n_vocab)
  std::vector<int32_t> eog_;
  std::vector<Node> nodes_;
  std::vector<int32_t> tokens_;  // (allowed tokens) grouped by trie node
  size_t max_depth_ = 0;
};

// A constraint for any grammar (shared, immutable program; see ByteProgram::compile).
std::unique_ptr<TokenConstraint> make_grammar_constraint(std::shared_ptr<const TokenIndex> index,
                                                         std::shared_ptr<const ByteProgram> prog);

// response_format: schema == nullptr gives any JSON object ("json_object"); otherwise the
// JSON Schema (json_schema.h; pass `strict` through opt). Throws llm::Error naming the
// schema path for what is not supported, so the server can answer 400.
std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const TokenIndex> index,
                                                      const nlohmann::ordered_json* schema,
                                                      const JsonSchemaOptions& opt);
std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const TokenIndex> index,
                                                      const nlohmann::ordered_json* schema);
// The same, building a TokenIndex for this call only (slow: prefer the overloads above).
std::unique_ptr<TokenConstraint> make_json_constraint(const Tokenizer& tok,
                                                      const nlohmann::ordered_json* schema);

}  // namespace llm
