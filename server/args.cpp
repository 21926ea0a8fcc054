#include "server/args.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "engine/error.h"

namespace llm {

Args::Args(std::string command, std::string usage, std::string description)
    : command_(std::move(command)), usage_(std::move(usage)), description_(std::move(description)) {
  flag("-h, --help", "", "show this help and exit");
}

void Args::flag(const std::string& names, const std::string& value, const std::string& help,
                const std::string& default_text) {
  Flag f;
  std::stringstream ss(names);
  std::string n;
  while (std::getline(ss, n, ',')) {
    size_t a = n.find_first_not_of(' '), b = n.find_last_not_of(' ');
    f.names.push_back(n.substr(a, b - a + 1));
  }
  f.value = value;
  f.help = help;
  f.default_text = default_text;
  flags_.push_back(std::move(f));
}

static std::string canon(const std::string& name) {
  if (name.rfind("-", 0) == 0) return name;
  std::string c(name.size() == 1 ? 1 : 2, '-');
  c += name;
  return c;
}

const Args::Flag* Args::find(const std::string& name) const {
  std::string c = canon(name);
  for (const Flag& f : flags_)
    for (const std::string& n : f.names)
      if (n == c) return &f;
  return nullptr;
}

Args::Flag* Args::find_mut(const std::string& name) { return const_cast<Flag*>(std::as_const(*this).find(name)); }

bool Args::parse(int argc, char** argv) {
  bool only_positional = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (only_positional || a.size() < 2 || a[0] != '-' || (a[1] >= '0' && a[1] <= '9')) {
      positional_.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    Flag* f = find_mut(a);
    if (!f) throw Error("llm " + command_ + ": unknown option '" + a + "' (see 'llm " + command_ + " --help')");
    if (f->names[0] == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (f->value.empty()) {
      if (inline_value) throw Error("llm " + command_ + ": option '" + a + "' takes no value");
      f->given = "1";
    } else if (inline_value) {
      f->given = *inline_value;
    } else {
      if (i + 1 >= argc) throw Error("llm " + command_ + ": option '" + a + "' needs a value (" + f->value + ")");
      f->given = argv[++i];
    }
  }
  return true;
}

bool Args::has(const std::string& name) const {
  const Flag* f = find(name);
  return f && f->given.has_value();
}

std::string Args::str(const std::string& name, const std::string& def) const {
  const Flag* f = find(name);
  return f && f->given ? *f->given : def;
}

int64_t Args::i64(const std::string& name, int64_t def) const {
  const Flag* f = find(name);
  if (!f || !f->given) return def;
  char* end = nullptr;
  long long v = std::strtoll(f->given->c_str(), &end, 10);
  if (f->given->empty() || *end != '\0')
    throw Error("llm " + command_ + ": " + f->names.back() + " expects an integer, got '" + *f->given + "'");
  return v;
}

double Args::f64(const std::string& name, double def) const {
  const Flag* f = find(name);
  if (!f || !f->given) return def;
  char* end = nullptr;
  double v = std::strtod(f->given->c_str(), &end);
  if (f->given->empty() || *end != '\0')
    throw Error("llm " + command_ + ": " + f->names.back() + " expects a number, got '" + *f->given + "'");
  return v;
}

std::string Args::help() const {
  std::string out = "usage: llm " + command_ + " " + usage_ + "\n\n" + description_ + "\n\noptions:\n";
  for (const Flag& f : flags_) {
    std::string left = "  ";
    for (size_t i = 0; i < f.names.size(); ++i) left += (i ? ", " : "") + f.names[i];
    if (!f.value.empty()) left += " " + f.value;
    if (left.size() < 30) left.resize(30, ' ');
    else left += "\n" + std::string(30, ' ');
    out += left + f.help;
    if (!f.default_text.empty()) out += " (default: " + f.default_text + ")";
    out += "\n";
  }
  return out;
}

}  // namespace llm
