// A small command-line parser shared by the subcommands: long and short flags with
// values ("-n 64", "--temp=0.7"), booleans, positionals, generated --help, and errors
// that name the flag ("llm run: --temp expects a number, got 'hot'").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llm {

class Args {
 public:
  Args(std::string command, std::string usage, std::string description);

  // Declare flags before parse(). `names` is "-n, --n-predict"; `value` is the metavar
  // ("N") or "" for a boolean switch.
  void flag(const std::string& names, const std::string& value, const std::string& help,
            const std::string& default_text = "");
  // Throws llm::Error on unknown flags or missing values. Returns false when --help was
  // given (help already printed to stdout): the command should exit 0.
  bool parse(int argc, char** argv);

  bool has(const std::string& name) const;  // name without dashes' variants: "--temp" or "temp"
  std::string str(const std::string& name, const std::string& def = "") const;
  int64_t i64(const std::string& name, int64_t def) const;
  double f64(const std::string& name, double def) const;
  bool on(const std::string& name) const { return has(name); }
  const std::vector<std::string>& positional() const { return positional_; }

  std::string help() const;
  const std::string& command() const { return command_; }

 private:
  struct Flag {
    std::vector<std::string> names;  // with dashes
    std::string value, help, default_text;
    std::optional<std::string> given;
  };
  const Flag* find(const std::string& name) const;
  Flag* find_mut(const std::string& name);
  std::string command_, usage_, description_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
};

}  // namespace llm
