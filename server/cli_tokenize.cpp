// llm tokenize: the token ids of a text under a model's tokenizer. Reads only the GGUF
// metadata, so the tokenizer-only vocab files (0 tensors) work too.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "server/args.h"
#include "server/cli.h"

namespace llm {
namespace {

// A piece for the terminal: escapes control characters, quotes and bytes that are not
// valid UTF-8 (a piece may be one byte of a multi-byte character).
std::string quote_piece(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = utf8_valid_prefix(s, i);
    if (c >= 0x80 && n > 0) {
      out.append(s, i, n);
      i += n;
      continue;
    }
    char buf[8];
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\'':
        out += "\\'";
        break;
      default:
        if (c < 0x20 || c >= 0x7F) {
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  return out + "'";
}

std::string read_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("llm tokenize: cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  Args args("tokenize", "-m FILE [options] [\"text\" | -f FILE]",
            "Print the token ids of a text under the model's tokenizer, space separated on one "
            "line.\nOnly the tokenizer metadata is read: vocab-only GGUF files work.");
  args.flag("-m, --model", "FILE", "GGUF model or vocab file");
  args.flag("-f, --file", "FILE",
            "read the text from FILE ('-' for stdin) instead of the argument");
  args.flag("--bos", "", "add the special tokens the model's rules ask for (BOS, maybe EOS)");
  args.flag("--no-parse-special", "", "treat control-token texts like <|eot_id|> as plain text");
  args.flag("--ids", "", "print the ids only (the default)");
  args.flag("--pieces", "", "print one token per line: its id and its text, quoted");
  if (!args.parse(argc, argv)) return 0;

  if (!args.has("model")) throw Error("llm tokenize: -m FILE is required (see --help)");
  std::string text;
  if (args.has("file")) {
    if (!args.positional().empty())
      throw Error("llm tokenize: give either a text argument or -f FILE, not both");
    text = read_file(args.str("file"));
  } else if (args.positional().size() == 1) {
    text = args.positional()[0];
  } else if (args.positional().empty()) {
    throw Error("llm tokenize: no text given (a text argument or -f FILE)");
  } else {
    throw Error("llm tokenize: several text arguments; quote the text as one argument");
  }
  if (args.has("ids") && args.has("pieces"))
    throw Error("llm tokenize: --ids and --pieces exclude each other");

  GgufFile file = GgufFile::open(args.str("model"));
  Tokenizer tok = Tokenizer::from_gguf(file);
  std::vector<int32_t> ids = tok.encode(text, args.has("bos"), !args.has("no-parse-special"));

  std::string out;
  if (args.has("pieces")) {
    for (int32_t id : ids)
      out += std::to_string(id) + " " + quote_piece(tok.token_to_piece(id, true)) + "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out.push_back(' ');
      out += std::to_string(ids[i]);
    }
    out.push_back('\n');
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace llm
