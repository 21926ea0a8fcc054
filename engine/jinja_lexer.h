// Jinja template source -> tokens, with jinja2's whitespace rules as transformers configures
// them: trim_blocks (drop the first newline after a block or comment tag), lstrip_blocks
// (drop spaces and tabs before a block or comment tag that starts its line), `-` / `+`
// markers on tags, `{% raw %}`, newline normalisation and the removal of one trailing
// newline (keep_trailing_newline=False). Mirrors jinja2/lexer.py rule by rule.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llm::jinja {

enum class Tok : uint8_t {
  Data,        // template text outside tags
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,  // text holds the unescaped value
  Int,
  Float,
  Op,  // text holds the operator: + - * / // % ** ~ [ ] ( ) { } == != < <= > >= = . : | , ;
  Eof,
};

struct Token {
  Tok type = Tok::Eof;
  std::string text;
  int64_t ival = 0;
  double fval = 0;
  int line = 1;
};

// Throws TemplateError (with the line) on a lexical error: unterminated tag, comment or
// string, unbalanced brackets, an unexpected character.
std::vector<Token> tokenize(std::string_view source);

}  // namespace llm::jinja
