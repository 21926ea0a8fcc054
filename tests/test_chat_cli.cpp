// `llm chat` end to end on stories260K (../shared), which has no chat template of its
// own: the tests pass the built-in chatml or a tiny Jinja file of their own.
//
// Expected answers are computed independently of the chat code: the test writes the
// templated prompt by hand and asks `llm run --temp 0` for its greedy continuation
// (`llm run -f FILE` prints the prompt, the continuation and a newline).
//
// Interactive sessions run inside tmux (send-keys, capture-pane) on a private server
// socket; without tmux those cases skip with a message (CI: apt-get install tmux).
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "test_util.h"

#ifdef LLM_HAVE_HTTPLIB
#include <httplib.h>
#endif

using namespace llm;
using json = nlohmann::json;

namespace {

const char* kFlags = " --device cpu -t 1 --temp 0";

// role: content lines, then "assistant:" for the answer.
const char* kTemplate =
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string p = test::temp_path(name);
  test::write_bytes(p, std::vector<unsigned char>(text.begin(), text.end()));
  return p;
}

std::string template_file() {
  return write_file("chat.jinja", kTemplate);
}

// The greedy continuation of `prompt` by `llm run`, without the echoed prompt.
std::string expected_answer(const std::string& model, const std::string& prompt, int n) {
  static int k = 0;
  const std::string f = write_file("prompt" + std::to_string(k++) + ".txt", prompt);
  auto r = test::run_command(test::llm_binary() + " run -m " + model + kFlags + " -n " +
                             std::to_string(n) + " -f " + f);
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.out.size() > prompt.size());
  REQUIRE(r.out.compare(0, prompt.size(), prompt) == 0);
  REQUIRE(r.out.back() == '\n');
  return r.out.substr(prompt.size(), r.out.size() - prompt.size() - 1);
}

std::string chatml(const std::vector<std::pair<std::string, std::string>>& msgs) {
  std::string s;
  for (const auto& [role, content] : msgs)
    s += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
  return s + "<|im_start|>assistant\n";
}

json read_json(const std::string& path) {
  const std::string text = test::read_text(path);
  REQUIRE(!text.empty());
  return json::parse(text);
}

bool have_tmux() {
  return test::run_command("tmux -V").exit_code == 0;
}

// One terminal running one command, on a tmux server of its own.
class Tmux {
 public:
  explicit Tmux(const std::string& cmd) {
    static int n = 0;
    sock_ = "llm-chat-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
    auto r = tmux("new-session -d -s t -x 200 -y 50 " + quote(cmd + "; echo EXIT=$?; sleep 600"));
    REQUIRE(r.exit_code == 0);
  }
  ~Tmux() { tmux("kill-server"); }

  void keys(const std::string& k) { REQUIRE(tmux("send-keys -t t " + k).exit_code == 0); }
  void type(const std::string& text) {
    REQUIRE(tmux("send-keys -t t -l " + quote(text)).exit_code == 0);
  }
  void line(const std::string& text) {
    type(text);
    keys("Enter");
  }
  void paste(const std::string& text) {
    REQUIRE(tmux("set-buffer -b p " + quote(text)).exit_code == 0);
    REQUIRE(tmux("paste-buffer -p -d -b p -t t").exit_code == 0);
  }
  // The whole history, wrapped lines joined, without trailing spaces.
  std::string screen() {
    const std::string raw = tmux("capture-pane -p -J -t t -S -5000").out;
    std::string out;  // -J keeps trailing spaces: drop them, so that a prompt is ">"
    size_t i = 0;
    while (i < raw.size()) {
      size_t e = raw.find('\n', i);
      if (e == std::string::npos) e = raw.size();
      std::string l = raw.substr(i, e - i);
      while (!l.empty() && l.back() == ' ') l.pop_back();
      out += l + "\n";
      i = e + 1;
    }
    return out;
  }

  bool wait(const std::function<bool(const std::string&)>& pred, double timeout_s = 30) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      if (pred(screen())) return true;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // Waits for the n-th prompt to be shown and idle (the last line is a bare ">").
  void wait_prompt(int n) {
    const bool ok = wait([n](const std::string& s) {
      int prompts = 0;
      std::string last;
      size_t i = 0;
      while (i < s.size()) {
        size_t e = s.find('\n', i);
        if (e == std::string::npos) e = s.size();
        std::string l = s.substr(i, e - i);
        if (l == ">" || l.rfind("> ", 0) == 0) ++prompts;
        if (!l.empty()) last = l;
        i = e + 1;
      }
      return prompts >= n && last == ">";
    });
    if (!ok) MESSAGE("screen:\n" << screen());
    REQUIRE(ok);
  }
  void wait_text(const std::string& text) {
    const bool ok = wait([&](const std::string& s) { return s.find(text) != std::string::npos; });
    if (!ok) MESSAGE("waiting for '" << text << "'; screen:\n" << screen());
    REQUIRE(ok);
  }

 private:
  test::CommandResult tmux(const std::string& args) {
    return test::run_command("tmux -L " + sock_ + " " + args);
  }
  std::string sock_;
};

std::string chat_cmd(const std::string& model, const std::string& extra) {
  return test::llm_binary() + " chat -m " + model + kFlags + " " + extra;
}

// `llm serve` on a free loopback port, in the background for one test case.
class Server {
 public:
  Server(const std::string& model, const std::string& extra) {
    static int n = 0;
    log_ = test::temp_path("serve" + std::to_string(n++) + ".log");
    auto r =
        test::run_command(test::llm_binary() + " serve -m " + model +
                          " --device cpu -t 1 --host 127.0.0.1 --port 0 --shutdown-timeout 1 " +
                          extra + " > /dev/null 2> " + log_ + " < /dev/null & echo $!");
    REQUIRE(r.exit_code == 0);
    pid_ = std::stoi(r.out);
    const std::string key = "listening on http://127.0.0.1:";
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      const std::string log = test::read_text(log_);
      const size_t at = log.find(key);
      if (at != std::string::npos) port_ = std::atoi(log.c_str() + at + key.size());
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (port_ == 0) {
      MESSAGE("llm serve did not start:\n" << test::read_text(log_));
      kill(pid_, SIGKILL);  // the destructor does not run for a failed constructor
    }
    REQUIRE(port_ > 0);
  }
  ~Server() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200 && kill(pid_, 0) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (kill(pid_, 0) == 0) kill(pid_, SIGKILL);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  std::string log_;
  int pid_ = 0;
  int port_ = 0;
};

bool have_serve() {
  return test::run_command(test::llm_binary() + " serve --help > /dev/null").exit_code == 0;
}

}  // namespace

TEST_CASE("llm chat, piped: each line is answered as the templated prompt's greedy continuation") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  const std::string tf = template_file();

  // One line: exactly the answer, a newline, exit 0, no escape codes.
  auto r =
      test::run_command("echo 'Once upon a time' | " + chat_cmd(m, "-n 40 --chat-template " + tf));
  REQUIRE(r.exit_code == 0);
  const std::string a1 = expected_answer(m, "user: Once upon a time\nassistant:", 40);
  CHECK(r.out == a1 + "\n");
  CHECK(r.out.find('\x1b') == std::string::npos);
  CHECK(r.err.find('\x1b') == std::string::npos);

  // Two lines: the second answer sees the first turn (history through the template), and
  // a system prompt leads.
  const std::string in = write_file("two.txt", "Once upon a time\nWhat did the cat do?\n");
  r = test::run_command(chat_cmd(m, "-n 30 --system 'Tell a story.' --chat-template " + tf) +
                        " < " + in);
  REQUIRE(r.exit_code == 0);
  const std::string p1 = "system: Tell a story.\nuser: Once upon a time\nassistant:";
  const std::string b1 = expected_answer(m, p1, 30);
  const std::string b2 =
      expected_answer(m,
                      "system: Tell a story.\nuser: Once upon a time\nassistant: " + b1 +
                          "\nuser: What did the cat do?\nassistant:",
                      30);
  CHECK(r.out == b1 + "\n" + b2 + "\n");

  // --once: all of stdin is one message; a trailing '\' joins lines otherwise.
  const std::string multi = write_file("multi.txt", "The dog\nran home\n");
  r = test::run_command(chat_cmd(m, "--once -n 25 --chat-template " + tf) + " < " + multi);
  REQUIRE(r.exit_code == 0);
  const std::string c1 = expected_answer(m, "user: The dog\nran home\nassistant:", 25);
  CHECK(r.out == c1 + "\n");
  const std::string joined = write_file("joined.txt", "The dog\\\nran home\n");
  r = test::run_command(chat_cmd(m, "-n 25 --chat-template " + tf) + " < " + joined);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == c1 + "\n");
}

TEST_CASE("llm chat, piped: a conversation that outgrows the context drops its oldest turns") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  const std::string tf = template_file();
  const std::string save = test::temp_path("dropped.json");
  std::string input;
  for (int i = 0; i < 6; ++i) input += "Tell me about the cat number " + std::to_string(i) + "\n";
  input += "/save " + save + "\n";
  const std::string in = write_file("long.txt", input);
  // 128 tokens of context, 24 per answer: three turns of ~40 tokens fill it.
  auto r = test::run_command(
      chat_cmd(m, "-c 128 -n 24 --system 'Be brief.' --chat-template " + tf) + " < " + in);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("dropped the oldest turn") != std::string::npos);
  const json t = read_json(save);
  const json& msgs = t["messages"];
  REQUIRE(msgs.size() >= 3);
  CHECK(msgs[0]["role"] == "system");
  CHECK(msgs[0]["content"] == "Be brief.");
  CHECK(msgs[1]["content"] != "Tell me about the cat number 0");
  CHECK(msgs[msgs.size() - 2]["content"] == "Tell me about the cat number 5");
  // The last answer is the greedy continuation of what remained.
  std::string prompt = "system: Be brief.\n";
  for (size_t i = 1; i + 2 < msgs.size(); ++i)
    prompt +=
        msgs[i]["role"].get<std::string>() + ": " + msgs[i]["content"].get<std::string>() + "\n";
  prompt += "user: Tell me about the cat number 5\nassistant:";
  CHECK(msgs.back()["content"].get<std::string>() == expected_answer(m, prompt, 24));

  // --context-policy error refuses instead, and a script sees exit status 1.
  r = test::run_command(chat_cmd(m, "-c 128 -n 24 --context-policy error --chat-template " + tf) +
                        " < " + in);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no longer fits the context") != std::string::npos);
}

TEST_CASE("llm chat, interactive: three turns, /stats, /save, line editing, Ctrl-D exits 0") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  if (!have_tmux()) LLM_SKIP("tmux is not installed (apt-get install tmux)");
  const std::string save = test::temp_path("three.json");
  Tmux t(chat_cmd(m, "-n 20 --chat-template chatml"));
  t.wait_prompt(1);
  t.line("Hello");
  t.wait_prompt(2);
  // Line editing: "abc", two left, kill to end, "XY", Home, "Z", End -> "ZaXY".
  t.type("abc");
  t.keys("Left Left C-k");
  t.type("XY");
  t.keys("Home");
  t.type("Z");
  t.keys("End Enter");
  t.wait_prompt(3);
  // Up twice recalls "Hello"; Ctrl-A/E move, Ctrl-W deletes a word, Ctrl-U a start.
  t.type("junk");
  t.keys("C-u Up Up C-a");
  t.type("Oh ");
  t.keys("C-e");
  t.type(" big bad");
  t.keys("C-w");
  t.type("wolf");
  t.keys("Enter");
  t.wait_prompt(4);
  t.line("/stats");
  t.wait_prompt(5);
  t.line("/save " + save);
  t.wait_prompt(6);
  t.keys("C-d");
  t.wait_text("EXIT=0");

  const std::string a1 = expected_answer(m, chatml({{"user", "Hello"}}), 20);
  const std::string a2 =
      expected_answer(m, chatml({{"user", "Hello"}, {"assistant", a1}, {"user", "ZaXY"}}), 20);
  const std::string a3 = expected_answer(m,
                                         chatml({{"user", "Hello"},
                                                 {"assistant", a1},
                                                 {"user", "ZaXY"},
                                                 {"assistant", a2},
                                                 {"user", "Oh Hello big wolf"}}),
                                         20);
  const json tr = read_json(save);
  const json& msgs = tr["messages"];
  REQUIRE(msgs.size() == 6);
  CHECK(msgs[0] == json{{"role", "user"}, {"content", "Hello"}});
  CHECK(msgs[1] == json{{"role", "assistant"}, {"content", a1}});
  CHECK(msgs[2] == json{{"role", "user"}, {"content", "ZaXY"}});
  CHECK(msgs[3] == json{{"role", "assistant"}, {"content", a2}});
  CHECK(msgs[4] == json{{"role", "user"}, {"content", "Oh Hello big wolf"}});
  CHECK(msgs[5] == json{{"role", "assistant"}, {"content", a3}});
  CHECK(tr["settings"]["temperature"] == 0.0);
  CHECK(tr["settings"]["max_tokens"] == 20);

  // The answers were streamed to the screen, and /stats reported the last one.
  const std::string s = t.screen();
  const std::string first_line = a3.substr(0, a3.find('\n'));
  CHECK(s.find(first_line) != std::string::npos);
  std::smatch g;
  REQUIRE(std::regex_search(
      s, g,
      std::regex(
          R"(last answer: (\d+) tokens, time to first token ([0-9.]+) ms, ([0-9.]+) tokens/s)")));
  CHECK(std::stoi(g[1]) == 20);
  CHECK(std::stod(g[2]) > 0);
  CHECK(std::stod(g[3]) > 0);
  REQUIRE(std::regex_search(
      s, g, std::regex(R"(context: (\d+) of (\d+) tokens \((\d+) prompt \+ (\d+) answer\))")));
  // The prompt's length, counted by `llm tokenize` on the templated text with BOS.
  const std::string pf = write_file("p3.txt", chatml({{"user", "Hello"},
                                                      {"assistant", a1},
                                                      {"user", "ZaXY"},
                                                      {"assistant", a2},
                                                      {"user", "Oh Hello big wolf"}}));
  auto tk =
      test::run_command(test::llm_binary() + " tokenize -m " + m + " --bos -f " + pf + " | wc -w");
  REQUIRE(tk.exit_code == 0);
  CHECK(std::stoi(g[3]) == std::stoi(tk.out));
  CHECK(std::stoi(g[4]) == 20);
  CHECK(std::stoi(g[1]) == std::stoi(g[3]) + 20);
  CHECK(std::stoi(g[2]) == 2048);  // stories260K's training context
  CHECK(s.find("conversation: 3 turns") != std::string::npos);
}

TEST_CASE("llm chat, interactive: Ctrl-C stops an answer, the next turn works, the mark is saved") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  if (!have_tmux()) LLM_SKIP("tmux is not installed (apt-get install tmux)");
  const std::string save = test::temp_path("interrupted.json");
  // 30000 tokens of answer over a 32768-token context take minutes on a CPU: Ctrl-C
  // certainly lands in the middle.
  Tmux t(chat_cmd(m, "-n 30000 -c 32768 --kv-tokens 32768 --ignore-eos --chat-template chatml"));
  t.wait_prompt(1);
  for (int turn = 0; turn < 2; ++turn) {
    t.line(turn == 0 ? "Hello" : "Again");
    // Wait for the answer to be under way (text after the message line), then stop it.
    const std::string sent = turn == 0 ? "> Hello\n" : "> Again\n";
    REQUIRE(t.wait([&](const std::string& s) {
      const size_t at = s.find(sent);
      return at != std::string::npos &&
             s.find_first_not_of(" \n", at + sent.size()) != std::string::npos;
    }));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    t.keys("C-c");
    t.wait_prompt(2 + turn);
  }
  t.line("/stats");
  t.wait_prompt(4);
  t.line("/save " + save);
  t.wait_prompt(5);
  const std::string s = t.screen();
  CHECK(s.find("[interrupted]") != std::string::npos);
  CHECK(s.find("(interrupted)") != std::string::npos);
  // Ctrl-C at an empty prompt leaves, status 0.
  t.keys("C-c");
  t.wait_text("EXIT=0");

  const json tr = read_json(save);
  const json& msgs = tr["messages"];
  REQUIRE(msgs.size() == 4);
  CHECK(msgs[0]["content"] == "Hello");
  CHECK(msgs[1]["interrupted"] == true);
  CHECK(msgs[2]["content"] == "Again");
  CHECK(msgs[3]["interrupted"] == true);
  // Partial answers: under way, far from the 30000 tokens asked for.
  const std::string partial = msgs[3]["content"].get<std::string>();
  CHECK(!partial.empty());
  CHECK(partial.size() < 30000);
}

TEST_CASE("llm chat, interactive: /reset, /system, /load continues a saved conversation") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  if (!have_tmux()) LLM_SKIP("tmux is not installed (apt-get install tmux)");
  const std::string tf = template_file();
  const std::string f1 = test::temp_path("s1.json"), f1b = test::temp_path("s1b.json");
  const std::string f2 = test::temp_path("s2.json"), f2b = test::temp_path("s2b.json");
  const std::string f3 = test::temp_path("s3.json");
  {
    Tmux t(chat_cmd(m, "-n 16 --system 'Be kind.' --chat-template " + tf));
    t.wait_prompt(1);
    t.line("The cat");
    t.wait_prompt(2);
    // Multi-line: a trailing backslash continues, and so does a newline inside a paste.
    t.line("The dog\\");
    t.wait_text("...");
    t.paste("ran\rhome");
    t.keys("Enter");
    t.wait_prompt(3);
    t.line("/save " + f1);
    t.wait_prompt(4);
    t.line("The end");
    t.wait_prompt(5);
    t.line("/save " + f1b);
    t.wait_prompt(6);
    // /reset forgets the turns, keeps the system prompt: the next answer is a first one.
    t.line("/reset");
    t.wait_prompt(7);
    t.line("/system Be brief.");
    t.wait_prompt(8);
    t.line("The cat");
    t.wait_prompt(9);
    t.line("/save " + f3);
    t.wait_prompt(10);
    t.keys("C-d");
    t.wait_text("EXIT=0");
  }
  const json s1 = read_json(f1);
  REQUIRE(s1["messages"].size() == 5);
  CHECK(s1["messages"][0] == json{{"role", "system"}, {"content", "Be kind."}});
  CHECK(s1["messages"][3]["content"] == "The dog\nran\nhome");
  const std::string a1 = expected_answer(m, "system: Be kind.\nuser: The cat\nassistant:", 16);
  CHECK(s1["messages"][2]["content"] == a1);
  const json s3 = read_json(f3);
  REQUIRE(s3["messages"].size() == 3);
  CHECK(s3["messages"][0]["content"] == "Be brief.");
  CHECK(s3["messages"][2]["content"] ==
        expected_answer(m, "system: Be brief.\nuser: The cat\nassistant:", 16));

  // A second session with other settings loads the first: /save writes the same file,
  // and the next turn gives the same answer as in the first session (greedy restored).
  {
    Tmux t(chat_cmd(m, "-n 5 --temp 1.5 --chat-template " + tf));
    t.wait_prompt(1);
    t.line("/load " + f1);
    t.wait_prompt(2);
    t.line("/save " + f2);
    t.wait_prompt(3);
    t.line("The end");
    t.wait_prompt(4);
    t.line("/save " + f2b);
    t.wait_prompt(5);
    t.keys("C-d");
    t.wait_text("EXIT=0");
  }
  CHECK(test::read_text(f2) == test::read_text(f1));
  CHECK(test::read_text(f2b) == test::read_text(f1b));
}

TEST_CASE("llm chat: bad input is a one-line error") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto r = test::run_command("echo hi | " + chat_cmd(m, "--context-policy sometimes"));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--context-policy") != std::string::npos);
  r = test::run_command("echo hi | " + chat_cmd(m, "--chat-template no-such-template"));
  CHECK(r.exit_code == 1);
  r = test::run_command("echo hi | " + test::llm_binary() + " chat");
  CHECK(r.exit_code == 1);
  // A transcript that is not one is refused, and the session goes on.
  const std::string bad = write_file("bad.json", "{\"messages\": 3}");
  const std::string in = write_file("loadbad.txt", "/load " + bad + "\nOnce upon a time\n");
  r = test::run_command(chat_cmd(m, "-n 8 --chat-template chatml") + " < " + in);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("transcript") != std::string::npos);
  CHECK(r.out.size() > 1);
}

TEST_CASE("llm chat --url: a running llm serve gives the same greedy answers as local mode") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  if (!have_serve()) LLM_SKIP("llm serve is unavailable in this build (no cpp-httplib)");
  const std::string tf = template_file();
  Server srv(m, "--chat-template " + tf);
  const std::string in =
      write_file("url.txt", "Once upon a time\nWhat did the cat do?\nAnd then?\n");
  const std::string common = " --temp 0 -n 30 --system 'Tell a story.'";
  auto local = test::run_command(chat_cmd(m, common + " --chat-template " + tf) + " < " + in);
  auto remote =
      test::run_command(test::llm_binary() + " chat --url " + srv.url() + common + " < " + in);
  REQUIRE(local.exit_code == 0);
  CHECK(remote.exit_code == 0);
  CHECK(remote.out == local.out);
  CHECK(remote.out.find('\x1b') == std::string::npos);
  // The first answer is also the independent expectation.
  const std::string a1 =
      expected_answer(m, "system: Tell a story.\nuser: Once upon a time\nassistant:", 30);
  CHECK(remote.out.compare(0, a1.size() + 1, a1 + "\n") == 0);

  // A model the server does not serve, and a server that is not there: one-line errors.
  auto r = test::run_command("echo hi | " + test::llm_binary() + " chat --url " + srv.url() +
                             " --model nonexistent --temp 0");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("nonexistent") != std::string::npos);
  r = test::run_command("echo hi | " + test::llm_binary() + " chat --url http://127.0.0.1:1");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("cannot reach") != std::string::npos);

  // A server with an API key: refused without it, the same answer with it.
  Server locked(m, "--api-key sesame --chat-template " + tf);
  r = test::run_command("echo 'Once upon a time' | " + test::llm_binary() + " chat --url " +
                        locked.url() + " --temp 0 -n 30 --system 'Tell a story.'");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--api-key") != std::string::npos);
  r = test::run_command("echo 'Once upon a time' | " + test::llm_binary() + " chat --url " +
                        locked.url() + " --api-key sesame --temp 0 -n 30 --system 'Tell a story.'");
  CHECK(r.exit_code == 0);
  CHECK(r.out == a1 + "\n");
}

#ifdef LLM_HAVE_HTTPLIB
TEST_CASE("llm chat --url, interactive: Ctrl-C closes the stream and the server cancels") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  if (!have_serve()) LLM_SKIP("llm serve is unavailable in this build");
  if (!have_tmux()) LLM_SKIP("tmux is not installed (apt-get install tmux)");
  Server srv(m, "-c 32768 --kv-tokens 32768 --chat-template chatml");
  httplib::Client http("127.0.0.1", srv.port());
  const auto running = [&] {
    auto res = http.Get("/metrics");
    REQUIRE(res);
    const std::string key = "\nllm_requests_running ";
    const size_t at = res->body.find(key);
    REQUIRE(at != std::string::npos);
    return std::atoi(res->body.c_str() + at + key.size());
  };
  const std::string save = test::temp_path("url-interrupted.json");
  Tmux t(test::llm_binary() + " chat --url " + srv.url() + " --temp 0 -n 30000 --ignore-eos");
  t.wait_prompt(1);
  t.line("Hello");
  REQUIRE(t.wait([](const std::string& s) {
    const size_t at = s.find("> Hello\n");
    return at != std::string::npos && s.find_first_not_of(" \n", at + 8) != std::string::npos;
  }));
  CHECK(running() == 1);
  t.keys("C-c");
  t.wait_prompt(2);
  bool cancelled = false;
  for (int i = 0; i < 100 && !cancelled; ++i) {
    cancelled = running() == 0;
    if (!cancelled) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(cancelled);
  t.line("/save " + save);
  t.wait_prompt(3);
  t.keys("C-d");
  t.wait_text("EXIT=0");
  const json tr = read_json(save);
  REQUIRE(tr["messages"].size() == 2);
  CHECK(tr["messages"][1]["interrupted"] == true);
  CHECK(!tr["messages"][1]["content"].get<std::string>().empty());
}
#endif
