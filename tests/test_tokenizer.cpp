// Tokenizer tests against references others wrote: llama.cpp's vocab test vectors
// (ids from the HF tokenizers), llama2.c's golden text for stories260K, and Python's
// `regex` module applying the pre-tokenizer regexes (tests/pretok_reference.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "engine/gguf.h"
#include "engine/pretokenizer.h"
#include "engine/regex_split.h"
#include "engine/tokenizer.h"
#include "test_util.h"

using namespace llm;

namespace {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's format: texts separated by "\n__ggml_vocab_test__\n" (a trailing
// separator ends the list); one .out line of space-separated ids per text.
std::vector<VocabCase> read_vocab_cases(const std::string& gguf) {
  std::string inp = test::read_text(gguf + ".inp");
  std::string out = test::read_text(gguf + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<VocabCase> cases;
  std::istringstream lines(out);
  std::string line;
  size_t k = 0;
  while (std::getline(lines, line)) {
    REQUIRE(k < texts.size());
    VocabCase c{texts[k++], {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  REQUIRE(k == texts.size());
  return cases;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

std::string vocab_path(const std::string& name) {
  return test::shared_file("vocab/ggml-vocab-" + name + ".gguf");
}

const char* const kVocabs[] = {"llama-spm", "llama-bpe", "qwen2", "phi-3", "gpt-2"};

}  // namespace

TEST_CASE("tokenizer: llama.cpp vocab vectors, exact ids") {
  for (const char* name : kVocabs) {
    std::string path = vocab_path(name);
    if (path.empty()) LLM_SKIP("../shared/vocab absent");
    GgufFile f = GgufFile::open(path);
    Tokenizer tok = Tokenizer::from_gguf(f);
    std::vector<VocabCase> cases = read_vocab_cases(path);
    CHECK(cases.size() >= 40);
    int failures = 0;
    for (const VocabCase& c : cases) {
      // As llama.cpp's test-tokenizer-0: no BOS, special texts not parsed.
      std::vector<int32_t> got = tok.encode(c.text, false, false);
      if (got != c.ids) ++failures;
      CHECK_MESSAGE(got == c.ids, name << ": text '" << c.text << "'\n  expected " << ids_str(c.ids)
                                       << "\n  got      " << ids_str(got));
    }
    MESSAGE(std::string(name) << ": " << cases.size() - failures << "/" << cases.size()
                              << " vectors exact");
  }
}

TEST_CASE("tokenizer: round trip decode(encode(x)) == x") {
  for (const char* name : kVocabs) {
    std::string path = vocab_path(name);
    if (path.empty()) LLM_SKIP("../shared/vocab absent");
    GgufFile f = GgufFile::open(path);
    Tokenizer tok = Tokenizer::from_gguf(f);
    for (const VocabCase& c : read_vocab_cases(path)) {
      // BPE families with clean_up_tokenization_spaces drop spaces before ?!., and some
      // apostrophes on purpose (as llama.cpp and HF do): no round trip for those texts.
      if (tok.clean_spaces()) {
        bool lossy = false;
        for (size_t i = 1; i < c.text.size(); ++i)
          lossy |=
              c.text[i - 1] == ' ' && std::string("?!.,'").find(c.text[i]) != std::string::npos;
        if (lossy) continue;
      }
      for (bool add_special : {false, true}) {
        std::vector<int32_t> ids = tok.encode(c.text, add_special, false);
        CHECK_MESSAGE(tok.decode(ids) == c.text,
                      name << ": '" << c.text << "' decodes to '" << tok.decode(ids) << "'");
      }
    }
  }
}

TEST_CASE("tokenizer: clean-up of spaces when decoding (llama.cpp rules)") {
  std::string path = vocab_path("gpt-2");
  if (path.empty()) LLM_SKIP("../shared/vocab absent");
  GgufFile f = GgufFile::open(path);
  Tokenizer tok = Tokenizer::from_gguf(f);
  CHECK(tok.clean_spaces());
  auto dec = [&](const std::string& s) { return tok.decode(tok.encode(s, false, false)); };
  CHECK(dec("Hello , world !") == "Hello, world!");
  CHECK(dec("it 's he 'll we 're") == "it's he 'll we're");
  CHECK(dec("a ' b") == "a'b");
  CHECK(dec("Is it ?") == "Is it?");
}

TEST_CASE("tokenizer: metadata and special tokens") {
  std::string p_spm = vocab_path("llama-spm"), p_l3 = vocab_path("llama-bpe"),
              p_qw = vocab_path("qwen2"), p_g2 = vocab_path("gpt-2"), p_phi = vocab_path("phi-3");
  if (p_spm.empty()) LLM_SKIP("../shared/vocab absent");

  GgufFile f_spm = GgufFile::open(p_spm);
  Tokenizer spm = Tokenizer::from_gguf(f_spm);
  CHECK(spm.kind() == Tokenizer::Kind::Spm);
  CHECK(spm.n_vocab() == 32000);
  CHECK(spm.bos() == 1);
  CHECK(spm.eos() == 2);
  CHECK(spm.add_bos());
  CHECK(!spm.add_eos());
  CHECK(spm.is_eog(2));
  CHECK(spm.is_control(1));
  CHECK(spm.token_text(3) == "<0x00>");
  CHECK(spm.token_to_piece(13) == "\n");  // <0x0A>
  CHECK(spm.token_to_piece(1).empty());
  CHECK(spm.token_to_piece(1, true) == "<s>");
  // " Hello" -> "▁▁Hello" with the prefix space: 29871 is "▁", 15043 "▁Hello".
  CHECK(spm.encode("Hello", true, false) == std::vector<int32_t>{1, 15043});
  CHECK(spm.encode(" Hello", false, false) == std::vector<int32_t>{29871, 15043});
  // After a special token the next text gets the prefix space again (llama.cpp).
  CHECK(spm.encode("Hello</s>Hello", false, true) == std::vector<int32_t>{15043, 2, 15043});
  CHECK(spm.encode("Hello</s>Hello", false, false) != std::vector<int32_t>{15043, 2, 15043});
  CHECK(spm.decode({1, 15043, 3186}) == "Hello world");
  // Invalid UTF-8: SPM spells the stray byte with its byte token.
  CHECK(spm.encode("\xFF", false, false) == std::vector<int32_t>{29871, spm.token_id("<0xFF>")});
  CHECK(spm.decode(spm.encode("a\xFF", false, false)) == "a\xFF");
  CHECK_THROWS_AS(spm.token_text(32000), Error);

  GgufFile f_l3 = GgufFile::open(p_l3);
  Tokenizer l3 = Tokenizer::from_gguf(f_l3);
  CHECK(l3.kind() == Tokenizer::Kind::Bpe);
  CHECK(l3.pre() == "llama3");
  CHECK(l3.bos() == 128000);
  CHECK(l3.eos() == 128001);
  CHECK(l3.eot() == 128009);  // <|eot_id|>, found by its text
  CHECK(l3.add_bos());        // the llama3 family's default (no add_bos_token key here)
  CHECK(l3.is_eog(128001));
  CHECK(l3.is_eog(128009));
  CHECK(!l3.is_eog(128006));
  int32_t user = l3.token_id("user");
  REQUIRE(user >= 0);
  // The Llama 3 chat header: control tokens parsed, "\n\n" is 271, "Hello" 9906.
  std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>";
  CHECK(l3.encode(chat, true, true) ==
        std::vector<int32_t>{128000, 128006, user, 128007, 271, 9906, 128009});
  std::vector<int32_t> plain = l3.encode(chat, false, false);
  CHECK(std::find(plain.begin(), plain.end(), 128006) == plain.end());
  CHECK(l3.decode(plain) == chat);
  CHECK(l3.decode(l3.encode(chat, true, true)) == "user\n\nHello");
  CHECK(l3.decode(l3.encode(chat, true, true), true) == "<|begin_of_text|>" + chat);

  GgufFile f_qw = GgufFile::open(p_qw);
  Tokenizer qw = Tokenizer::from_gguf(f_qw);
  CHECK(qw.pre() == "qwen2");
  CHECK(!qw.add_bos());
  CHECK(qw.encode("Hi", true, false) == qw.encode("Hi", false, false));
  CHECK(qw.eos() == 151643);
  CHECK(qw.eot() == qw.token_id("<|im_end|>"));
  CHECK(qw.is_eog(151643));
  CHECK(qw.is_eog(151645));
  CHECK(qw.encode("<|im_start|>", false, true) == std::vector<int32_t>{151644});
  // User-defined tokens ([PAD151646] ...) are matched even without parse_special.
  CHECK(qw.encode("a[PAD151646]b", false, false).size() == 3);
  CHECK(qw.encode("a[PAD151646]b", false, false)[1] == 151646);

  GgufFile f_g2 = GgufFile::open(p_g2);
  Tokenizer g2 = Tokenizer::from_gguf(f_g2);
  CHECK(g2.pre() == "gpt-2");
  CHECK(!g2.add_bos());
  CHECK(g2.bos() == 50256);
  CHECK(g2.is_eog(50256));
  CHECK(g2.token_to_piece(g2.token_id("\xC4\xA0the")) == " the");  // "Ġthe"
  // Byte-level BPE reads invalid UTF-8 as U+FFFD, one per bad byte (as llama.cpp).
  CHECK(g2.encode("x\xFF\xC3", false, false) == g2.encode("x\uFFFD\uFFFD", false, false));

  // Phi-3: special tokens eat the whitespace after them (rstrip), except <s>.
  GgufFile f_phi = GgufFile::open(p_phi);
  Tokenizer phi = Tokenizer::from_gguf(f_phi);
  CHECK(phi.eos() == 32000);
  CHECK(phi.is_eog(32007));  // <|end|>
  std::vector<int32_t> a = phi.encode("<|user|>\n Hi", false, true);
  std::vector<int32_t> b = phi.encode("<|user|>Hi", false, true);
  CHECK(a == b);
  CHECK(a.front() == 32010);
}

TEST_CASE("tokenizer: bad metadata is an llm::Error") {
  std::string path = test::temp_path("bad_vocab.gguf");
  auto write = [&](const std::string& model, bool with_merges) {
    GgufWriter w;
    w.set_string("tokenizer.ggml.model", model);
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab"});
    if (with_merges) w.set_string_array("tokenizer.ggml.merges", {"a b"});
    w.set_string("tokenizer.ggml.pre", "gpt-2");
    w.begin(path);
    w.finish();
  };
  write("gpt2", true);
  {
    GgufFile f = GgufFile::open(path);
    Tokenizer t = Tokenizer::from_gguf(f);
    CHECK(t.encode("ab", false, false) == std::vector<int32_t>{2});
    CHECK(t.encode("ba", false, false) == std::vector<int32_t>{1, 0});
    CHECK(t.bos() < 0);  // the BPE default id 11 is outside this vocabulary
  }
  write("gpt2", false);
  {
    GgufFile f = GgufFile::open(path);
    CHECK_THROWS_AS(Tokenizer::from_gguf(f), Error);
  }
  write("bert", true);
  {
    GgufFile f = GgufFile::open(path);
    CHECK_THROWS_AS(Tokenizer::from_gguf(f), Error);
  }
  {
    GgufWriter w;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "no-such-family");
    w.set_string_array("tokenizer.ggml.tokens", {"a"});
    w.set_string_array("tokenizer.ggml.merges", {});
    w.begin(path);
    w.finish();
    GgufFile f = GgufFile::open(path);
    CHECK_THROWS_WITH_AS(Tokenizer::from_gguf(f), doctest::Contains("no-such-family"), Error);
  }
}

TEST_CASE("tokenizer: stories260K decodes to llama2.c's golden text") {
  std::string model = test::shared_file("models/stories260K.gguf");
  std::string ids_path = test::shared_file("models/stories260K.greedy200.ids");
  std::string txt_path = test::shared_file("models/stories260K.greedy200.txt");
  if (model.empty() || ids_path.empty() || txt_path.empty()) LLM_SKIP("../shared/models absent");
  GgufFile f = GgufFile::open(model);
  Tokenizer tok = Tokenizer::from_gguf(f);
  CHECK(tok.n_vocab() == 512);
  CHECK(tok.add_bos());
  CHECK(tok.pad() == -1);  // the file says 4294967295: out of range, so none
  std::vector<int32_t> ids;
  std::istringstream in(test::read_text(ids_path));
  for (int32_t id; in >> id;) ids.push_back(id);
  REQUIRE(ids.size() == 201);
  std::string golden = test::read_text(txt_path);
  while (!golden.empty() && golden.back() == '\n') golden.pop_back();
  CHECK(tok.decode(ids) == golden);
  // Streaming the same ids gives the same text (with the first space dropped).
  StreamDecoder sd(tok, true);
  std::string streamed;
  for (int32_t id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  CHECK(streamed == golden);
}

TEST_CASE("tokenizer: StreamDecoder holds back split UTF-8 characters") {
  std::string path = vocab_path("llama-spm");
  if (path.empty()) LLM_SKIP("../shared/vocab absent");
  GgufFile f = GgufFile::open(path);
  Tokenizer tok = Tokenizer::from_gguf(f);
  // 🦙 is not in the vocabulary: four byte tokens <0xF0><0x9F><0xA6><0x99>.
  std::vector<int32_t> ids = tok.encode("a🦙b", false, false);
  std::vector<int32_t> bytes = {tok.token_id("<0xF0>"), tok.token_id("<0x9F>"),
                                tok.token_id("<0xA6>"), tok.token_id("<0x99>")};
  REQUIRE(std::search(ids.begin(), ids.end(), bytes.begin(), bytes.end()) != ids.end());
  StreamDecoder sd(tok);
  std::vector<std::string> outs;
  for (int32_t id : ids) outs.push_back(sd.push(id));
  std::string all;
  for (const std::string& o : outs) {
    CHECK(utf8_sanitize(o, true, nullptr) == o);  // every chunk is whole UTF-8
    all += o;
  }
  CHECK(sd.flush().empty());
  CHECK(all == " a🦙b");
  // Exactly one push returned the llama, the one of its last byte.
  size_t i = std::find(ids.begin(), ids.end(), bytes[3]) - ids.begin();
  CHECK(outs[i].find("🦙") != std::string::npos);
  CHECK(outs[i - 1].empty());

  // A sequence cut short is replaced when flushed; a stray continuation byte at once.
  StreamDecoder cut(tok);
  CHECK(cut.push(bytes[0]).empty());
  CHECK(cut.push(bytes[1]).empty());
  CHECK(cut.flush() == "\uFFFD");
  StreamDecoder stray(tok);
  CHECK(stray.push(bytes[3]) == "\uFFFD");

  // Byte-level BPE splits characters across tokens too.
  std::string g2 = vocab_path("gpt-2");
  if (g2.empty()) return;
  GgufFile f2 = GgufFile::open(g2);
  Tokenizer bpe = Tokenizer::from_gguf(f2);
  std::string text = "Ünïcödé 🦙 日本語 😶‍🌫️ end";
  std::vector<int32_t> ids2 = bpe.encode(text, false, false);
  StreamDecoder sd2(bpe);
  std::string out2;
  int split_chars = 0;
  for (int32_t id : ids2) {
    std::string chunk = sd2.push(id);
    split_chars += chunk.empty();
    CHECK(utf8_sanitize(chunk, true, nullptr) == chunk);
    out2 += chunk;
  }
  out2 += sd2.flush();
  CHECK(out2 == text);
  CHECK(split_chars > 0);  // the test did exercise holding back
}

TEST_CASE("tokenizer: the llm tokenize binary agrees with the vectors") {
  for (const char* name : {"llama-spm", "qwen2"}) {
    std::string path = vocab_path(name);
    if (path.empty()) LLM_SKIP("../shared/vocab absent");
    std::vector<VocabCase> cases = read_vocab_cases(path);
    size_t checked = 0;
    for (size_t k = 0; k < cases.size(); k += (std::string(name) == "qwen2" ? 5 : 1)) {
      const VocabCase& c = cases[k];
      std::string in = test::temp_path("tok_input.txt");
      test::write_bytes(in, std::vector<unsigned char>(c.text.begin(), c.text.end()));
      test::CommandResult r = test::run_command(test::llm_binary() + " tokenize -m '" + path +
                                                "' --no-parse-special -f '" + in + "'");
      REQUIRE_MESSAGE(r.exit_code == 0, r.err);
      CHECK_MESSAGE(r.out == ids_str(c.ids) + "\n", name << ": '" << c.text << "'");
      ++checked;
    }
    CHECK(checked >= 9);
  }
  std::string path = vocab_path("llama-bpe");
  if (path.empty()) return;
  test::CommandResult r =
      test::run_command(test::llm_binary() + " tokenize -m '" + path + "' --bos '<|eot_id|>Hello'");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "128000 128009 9906\n");
  r = test::run_command(test::llm_binary() + " tokenize -m '" + path + "' --pieces ' Hello\n'");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "22691 ' Hello'\n198 '\\n'\n");
  r = test::run_command(test::llm_binary() + " tokenize -m '" + path + "'");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("no text") != std::string::npos);
}

TEST_CASE("tokenizer: encoding 100 KB is fast") {
  std::string path = vocab_path("llama-bpe");
  std::string spm_path = vocab_path("llama-spm");
  if (path.empty() || spm_path.empty()) LLM_SKIP("../shared/vocab absent");
  std::string text;
  for (const VocabCase& c : read_vocab_cases(path)) text += c.text + "\n";
  std::string unit = text;
  while (text.size() < 100 * 1024) text += unit;
  text += std::string(5000, ' ') + "x" + std::string(3000, '7');  // long runs
  for (const char* p : {path.c_str(), spm_path.c_str()}) {
    GgufFile f = GgufFile::open(p);
    Tokenizer tok = Tokenizer::from_gguf(f);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = tok.encode(text, false, false);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(std::string(p) << ": " << text.size() << " bytes -> " << ids.size() << " tokens in "
                           << s * 1e3 << " ms");
    CHECK(s < 1.0);
    CHECK(tok.decode(ids).size() > text.size() / 2);
  }
}

TEST_CASE("pre-tokenizer: long runs split in linear time") {
  // Long runs that a backtracking splitter could rescan from every position (\s+$ of
  // DeepSeek before a character no pattern takes), for every family.
  std::string runs = "x" + std::string(20000, ' ') + "\U0001F999" + std::string(20000, '\n') +
                     std::string(20000, 'a') + std::string(20000, '7') + std::string(20000, '!');
  CodepointText ct(utf8_to_codepoints(runs));
  for (const std::string& name : pretokenizer_names()) {
    std::vector<SplitRegex> res;
    for (const std::string& r : pretokenizer_spec(name).regexes) res.emplace_back(r);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<size_t> pieces = regex_split(ct, res);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK_MESSAGE(s < 0.5, name << ": " << s << " s");
    size_t total = 0;
    for (size_t len : pieces) total += len;
    CHECK(total == ct.size());
  }
}

// ------------------------------------------------------------ pre-tokenizers ---

namespace {

// A few hundred varied strings: ASCII, accents, combining marks, CJK, kana, Hangul,
// emoji with joiners, digit runs, contractions in both cases, newlines, tabs, mixed and
// non-ASCII spaces, punctuation of several scripts. Characters are from Unicode <= 13
// so that the regex module's own tables and ours (Unicode 14) agree.
std::vector<std::string> pretok_texts() {
  const std::vector<std::string> parts = {
      "Hello",
      "world",
      "HELLO",
      "hELLo",
      "don't",
      "I'M",
      "we'RE",
      "they've",
      "You'll",
      "she'd",
      "it's",
      "'s",
      "'",
      "''",
      "\"quoted\"",
      "café",
      "naïve",
      "Ångström",
      "e\u0301",
      "Ωmega",
      "Привет",
      "мир",
      "Ελληνικά",
      "العربية",
      "हिन्दी",
      "ไทย",
      "我想在apple工作",
      "日本語",
      "ひらがな",
      "カタカナ",
      "한국어",
      "ＡＢＣ１２３！",
      "🦙",
      "😁",
      "🚀",
      "😶‍🌫️",
      "👍🏽",
      "1",
      "12",
      "123",
      "1234",
      "1234567",
      "3.14159",
      "1,000,000",
      "٣٤٥",
      "½",
      "Ⅻ",
      "x²",
      "$100",
      "+-<=>^~|`",
      "...",
      "!?",
      "(",
      ")",
      "[a]",
      "{b}",
      "#tag",
      "@user",
      "a_b",
      "foo.bar()",
      "<|eot_id|>",
      "\n",
      "\n\n",
      "\r\n",
      "\t",
      " ",
      "  ",
      "   ",
      "\u00A0",
      "\u3000",
      "\u2009",
      " \n ",
      "\t\n",
      "\u2026",
      "\u3002",
      "\uFF0C",
      "\u0964",
      "K",
      "\u2126",
      "ǅ",
      "ß",
      "ﬁ",
      "µ",
      "—",
      "«»",
      "‘’",
      "“”",
  };
  const std::vector<std::string> seps = {" ", "", "  ", "\n", "\t", " \n", "\u00A0", "\u3000"};
  std::mt19937 rng(1234);
  std::vector<std::string> out;
  for (const std::string& p : parts) out.push_back(p);
  for (size_t n : {5, 17, 40, 130, 600}) {  // whitespace runs for the cascading patterns
    out.push_back(std::string(n, ' ') + "x");
    out.push_back("a" + std::string(n, ' ') + "\n" + std::string(n % 7, '\t') + "b  ");
  }
  for (int k = 0; k < 300; ++k) {
    std::string s;
    int n = 2 + static_cast<int>(rng() % 6);
    for (int j = 0; j < n; ++j) {
      if (j) s += seps[rng() % seps.size()];
      s += parts[rng() % parts.size()];
    }
    if (rng() % 4 == 0) s = " " + s;
    if (rng() % 4 == 0) s += seps[rng() % seps.size()];
    out.push_back(s);
  }
  return out;
}

// Runs tests/pretok_reference.py with the first interpreter that has `regex`.
// Returns false (skip) when none does.
bool python_reference(const nlohmann::json& spec, nlohmann::json* result, std::string* why) {
  std::string in = test::temp_path("pretok_cases.json");
  std::string dump = spec.dump();
  test::write_bytes(in, std::vector<unsigned char>(dump.begin(), dump.end()));
  std::string script = std::string(LLM_SOURCE_DIR) + "/tests/pretok_reference.py";
  for (const char* py : {"python3", "/usr/bin/python3"}) {
    test::CommandResult r = test::run_command(std::string(py) + " '" + script + "' '" + in + "'");
    if (r.exit_code != 0) {
      *why += std::string(py) + ": exit " + std::to_string(r.exit_code) + " " + r.err + "; ";
      continue;
    }
    *result = nlohmann::json::parse(r.out);
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE("pre-tokenizer: every family splits like Python's regex module") {
  // One representative name per family; aliases share the spec (see pretokenizer.cpp).
  const std::vector<std::string> names = {
      "default",        "llama3",      "qwen2",     "gpt-2",      "mpt",    "deepseek-llm",
      "deepseek-coder", "deepseek-v3", "falcon",    "starcoder",  "refact", "command-r",
      "smollm",         "olmo",        "poro-chat", "viking",     "tekken", "gpt-4o",
      "seed-coder",     "bailingmoe",  "ufakzeka",  "chatglm-bpe"};
  std::vector<std::string> texts = pretok_texts();
  std::string spm = vocab_path("llama-bpe");
  if (!spm.empty())
    for (const VocabCase& c : read_vocab_cases(spm)) texts.push_back(c.text);

  nlohmann::json spec;
  spec["cases"] = nlohmann::json::array();
  for (const std::string& n : names)
    spec["cases"].push_back({{"patterns", pretokenizer_spec(n).regexes}, {"texts", texts}});
  nlohmann::json ref;
  std::string why;
  if (!python_reference(spec, &ref, &why))
    LLM_SKIP("python3 with the regex module (Debian: python3-regex) not found: " + why);
  REQUIRE(ref.size() == names.size());

  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<SplitRegex> res;
    for (const std::string& r : pretokenizer_spec(names[k]).regexes) res.emplace_back(r);
    int bad = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      CodepointText t(utf8_to_codepoints(texts[i]));
      std::vector<std::string> got;
      size_t start = 0;
      for (size_t len : regex_split(t, res)) {
        std::string piece;
        for (size_t j = start; j < start + len; ++j) utf8_append(piece, t.cps[j]);
        got.push_back(piece);
        start += len;
      }
      std::vector<std::string> want = ref[k][i].get<std::vector<std::string>>();
      if (got != want && ++bad <= 3) {
        std::string g, w;
        for (auto& s : got) g += "[" + s + "]";
        for (auto& s : want) w += "[" + s + "]";
        FAIL_CHECK(names[k] << ": '" << texts[i] << "'\n  python: " << w << "\n  ours:   " << g);
      }
    }
    CHECK_MESSAGE(bad == 0, names[k] << ": " << bad << " of " << texts.size() << " texts differ");
  }
}

TEST_CASE("pre-tokenizer: the regex matcher's syntax") {
  auto split = [](const std::string& pattern, const std::string& text) {
    std::vector<SplitRegex> res{SplitRegex(pattern)};
    CodepointText t(utf8_to_codepoints(text));
    std::vector<size_t> lens = regex_split(t, res);
    std::string out;
    size_t start = 0;
    for (size_t len : lens) {
      std::string piece;
      for (size_t j = start; j < start + len; ++j) utf8_append(piece, t.cps[j]);
      out += "[" + piece + "]";
      start += len;
    }
    return out;
  };
  CHECK(split("\\p{N}{1,3}", "12345a6") == "[123][45][a][6]");
  CHECK(split("\\s+(?!\\S)|\\s+", "a   b  ") == "[a][  ][ ][b][  ]");
  CHECK(split("a+?b", "aaab") == "[aaab]");
  CHECK(split("[^a-c]+", "abxyzc") == "[ab][xyz][c]");
  CHECK(split("\\s+$", "ab  ") == "[ab][  ]");
  CHECK_THROWS_AS(SplitRegex("(?i:abc)"), Error);
  CHECK_THROWS_AS(SplitRegex("a++"), Error);
  CHECK_THROWS_AS(SplitRegex("[abc"), Error);
  CHECK_THROWS_AS(SplitRegex("\\p{Han}"), Error);
  CHECK_THROWS_AS(pretokenizer_spec("kimi-k2"), Error);
  for (const std::string& n : pretokenizer_names())
    for (const std::string& r : pretokenizer_spec(n).regexes) CHECK_NOTHROW(SplitRegex{r});
}

TEST_CASE("unicode: categories and the byte alphabet") {
  CHECK(unicode_category('A') == UCat::Lu);
  CHECK(unicode_category(0x4E00) == UCat::Lo);
  CHECK(unicode_category(0x1F999) == UCat::So);  // 🦙
  CHECK(unicode_category(0x0301) == UCat::Mn);
  CHECK(unicode_category(0x0378) == UCat::Cn);
  CHECK(unicode_is_whitespace(0x3000));
  CHECK(!unicode_is_whitespace(0x200B));
  CHECK(byte_to_unicode(' ') == 0x120);   // 'Ġ'
  CHECK(byte_to_unicode('\n') == 0x10A);  // 'Ċ'
  for (int b = 0; b < 256; ++b)
    CHECK(unicode_to_byte(byte_to_unicode(static_cast<uint8_t>(b))) == b);
  std::string bad = "a\xF0\x9F\xA6";  // a truncated 4-byte sequence
  std::vector<uint32_t> cps = utf8_to_codepoints(bad);
  CHECK(cps == std::vector<uint32_t>{'a', 0xFFFD, 0xFFFD, 0xFFFD});
}
