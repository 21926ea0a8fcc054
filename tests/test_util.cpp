#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace llm::test {

std::string shared_file(const std::string& rel) {
  std::string dir = LLM_SHARED_DIR;
  if (const char* env = std::getenv("LLM_SHARED_DIR")) dir = env;
  std::string p = dir + "/" + rel;
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? p : std::string();
}

std::string temp_path(const std::string& name) {
  static std::string dir = [] {
    std::string tmpl = "/tmp/llm-test-XXXXXX";
    char* d = mkdtemp(tmpl.data());
    return d ? std::string(d) : std::string("/tmp");
  }();
  return dir + "/" + name;
}

std::string llm_binary() { return LLM_BINARY; }

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

CommandResult run_command(const std::string& cmdline) {
  CommandResult r;
  std::string err_file = temp_path("stderr-" + std::to_string(getpid()) + ".txt");
  std::string full = "(" + cmdline + ") 2>" + err_file;
  FILE* p = popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_text(err_file);
  return r;
}

}  // namespace llm::test
