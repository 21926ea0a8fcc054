#include "engine/pretokenizer.h"

#include "engine/error.h"

namespace llm {
namespace {

// The regexes, as llama.cpp spells them (case-insensitive contractions written out as
// [sS] classes). Non-ASCII characters are escaped so that no editor can normalise them:
// the DeepSeek letter class holds compatibility characters such as U+2126 OHM SIGN.
const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kSeedCoder =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kBailingMoe =
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
const char* const kUfakzeka =
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|"
    "\\s+";
#define LLM_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define LLM_UPPER_RUN "((?=[\\p{L}])([^a-z]))"
#define LLM_LOWER_RUN "((?=[\\p{L}])([^A-Z]))"
const char* const kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?" LLM_UPPER_RUN "*" LLM_LOWER_RUN
    "+|[^\\r\\n\\p{L}\\p{N}]?" LLM_UPPER_RUN "+" LLM_LOWER_RUN
    "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?" LLM_UPPER_RUN "*" LLM_LOWER_RUN "+" LLM_CONTRACTIONS
    "?|[^\\r\\n\\p{L}\\p{N}]?" LLM_UPPER_RUN "+" LLM_LOWER_RUN "*" LLM_CONTRACTIONS
    "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
#undef LLM_CONTRACTIONS
#undef LLM_UPPER_RUN
#undef LLM_LOWER_RUN
// " ?[^(\s|.,!?…。，、।۔،)]+"
const char* const kPoro = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+";
// CJK ideographs U+4E00-U+9FA5, U+0800-U+4E00 and Hangul U+AC00-U+D7FF.
const char* const kDeepseekCjk = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";
// The cased letters of DeepSeek LLM's tokenizer.json, range by range.
const char* const kDeepseekLetters =
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293"
    "\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C"
    "\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5"
    "\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
    "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59"
    "\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC"
    "\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107"
    "\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE"
    "\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
    "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F"
    "\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2"
    "\U000118A0-\U000118DF\U0001E900-\U0001E943]+";
// ASCII and full-width punctuation, curly quotes, ideographic space and marks.
const char* const kDeepseekPunct =
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";
// Hiragana U+3040-U+309F and Katakana U+30A0-U+30FF join the ideographs in DeepSeek V3.
const char* const kDeepseek3Cjk = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
const char* const kDeepseek3Main =
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

const char* const kQwen35 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]"
    "+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kMiniCpm5 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Llama 3's regex with whitespace runs cut into power-of-two lengths.
const char* const kJais2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|"
    "\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|"
    "\\s{1,2}(?!\\S)|\\s{1}";
const char* const kSpark25Main =
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+";

struct Family {
  const char* family;
  std::vector<const char*> names;
  std::vector<const char*> regexes;
  bool clean_spaces = true;
  bool ignore_merges = false;
  bool add_bos = false;
  bool has_bos = true;
};

const std::vector<Family>& families() {
  static const std::vector<Family> kFamilies = {
      {"default", {"default"}, {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}},
      {"llama3",
       {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
        "jina-v5-nano"},
       {kLlama3},
       true,
       true,
       true},
      {"dbrx", {"dbrx", "smaug-bpe"}, {kLlama3}},
      {"chatglm4", {"glm4", "chatglm-bpe"}, {kLlama3}, true, false, false, false},
      {"deepseek-llm",
       {"deepseek-llm"},
       {"[\r\n]", kDeepseekLetters, kDeepseekPunct, "\\s+$", kDeepseekCjk, "\\p{N}+"},
       false},
      {"deepseek-coder",
       {"deepseek-coder"},
       {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kDeepseekCjk, "\\p{N}"},
       false},
      {"deepseek-v3",
       {"deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"},
       {"\\p{N}{1,3}", kDeepseek3Cjk, kDeepseek3Main},
       false},
      {"spark2_5", {"spark2_5"}, {"\\p{N}{1,3}", kDeepseek3Cjk, kSpark25Main, "\\p{N}"}, false},
      {"falcon", {"falcon"}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}},
      {"gpt-2",
       {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
        "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais"},
       {kGpt2}},
      {"gpt-2-noclean", {"trillion", "granite-docling"}, {kGpt2}, false},
      {"starcoder",
       {"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"},
       {"\\p{N}", kGpt2}},
      {"starcoder-noclean", {"command-r", "smollm"}, {"\\p{N}", kGpt2}, false},
      {"qwen2",
       {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "grok-2", "solar-open"},
       {kQwen2},
       false},
      {"qwen2-clean", {"stablelm2", "megrez"}, {kQwen2}},
      {"qwen35", {"qwen35"}, {kQwen35}, false},
      {"laguna", {"laguna"}, {"[^\\n]+|[\\n]+", kQwen2}, false},
      {"minicpm5", {"minicpm5"}, {"\\p{N}{1,3}", kMiniCpm5}, true, true},
      {"jais-2", {"jais-2"}, {kJais2}},
      {"poro", {"poro-chat"}, {kPoro}, false},
      {"bloom", {"bloom", "gpt3-finnish"}, {kPoro}},
      {"viking", {"viking"}, {kPoro, "\\p{N}"}, false},
      {"tekken", {"tekken"}, {kTekken}, false, true, true},
      {"gpt-4o", {"gpt-4o", "llama4", "kanana2", "talkie"}, {kGpt4o}, false},
      {"seed-coder", {"seed-coder"}, {kSeedCoder}, false},
      {"bailingmoe", {"bailingmoe", "bailingmoe2", "llada-moe"}, {kBailingMoe}, false},
      {"ufakzeka", {"ufakzeka"}, {kUfakzeka}, false},
  };
  return kFamilies;
}

}  // namespace

PreTokenizerSpec pretokenizer_spec(std::string_view pre) {
  if (pre.empty()) pre = "default";
  for (const Family& f : families()) {
    for (const char* n : f.names) {
      if (pre != n) continue;
      PreTokenizerSpec s;
      s.family = f.family;
      s.regexes.assign(f.regexes.begin(), f.regexes.end());
      s.clean_spaces = f.clean_spaces;
      s.ignore_merges = f.ignore_merges;
      s.add_bos = f.add_bos;
      s.has_bos = f.has_bos;
      return s;
    }
  }
  throw Error("unsupported pre-tokenizer '" + std::string(pre) +
              "' (tokenizer.ggml.pre); supported: llama3/llama-bpe, qwen2, gpt-2, "
              "deepseek-llm, deepseek-coder, falcon, starcoder, mpt, refact, command-r and "
              "their aliases");
}

std::vector<std::string> pretokenizer_names() {
  std::vector<std::string> out;
  for (const Family& f : families())
    for (const char* n : f.names) out.emplace_back(n);
  return out;
}

}  // namespace llm
