// Pre-tokenizer families of byte-level BPE vocabularies, keyed by the GGUF metadata
// `tokenizer.ggml.pre`. Each family is the list of regexes its tokenizer.json splits
// with, plus the flags llama.cpp sets for it (llama-vocab.cpp is the description
// followed here: which names share a regex, which clean up spaces when decoding, which
// look whole words up before merging, which add a BOS by default).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace llm {

struct PreTokenizerSpec {
  std::string family;                // canonical name, e.g. "llama3" for "llama-bpe"
  std::vector<std::string> regexes;  // applied in order (see regex_split)
  bool clean_spaces = true;          // decode() drops spaces before ?!., and contractions
  bool ignore_merges = false;        // a pre-token that is a whole vocab entry is taken as is
  bool add_bos = false;              // default of tokenizer.ggml.add_bos_token
  bool has_bos = true;               // false: no default BOS id (ChatGLM)
};

// The spec for a `tokenizer.ggml.pre` value; "" (absent) means "default".
// Throws llm::Error naming the value when it is not supported.
PreTokenizerSpec pretokenizer_spec(std::string_view pre);

// Every name pretokenizer_spec accepts (for messages and tests).
std::vector<std::string> pretokenizer_names();

}  // namespace llm
