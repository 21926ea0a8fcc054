// `llm chat --url URL`: answers from a running `llm serve` (or any OpenAI-compatible
// server) through POST /v1/chat/completions with "stream": true. The request runs on a
// worker thread so that Ctrl-C can end it at once, even while the server is still
// reading the prompt: the worker's socket is shut down, and the server, finding its
// client gone, cancels the generation.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/error.h"
#include "server/chat_backend.h"

#ifdef LLM_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace llm {

#ifndef LLM_HAVE_HTTPLIB

std::unique_ptr<ChatBackend> make_remote_chat(const std::string&, const std::string&,
                                              const std::string&) {
  throw Error(
      "llm chat: this llm was built without cpp-httplib (Debian package libcpp-httplib-dev); "
      "--url is unavailable");
}

#else

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// "http://host:port/prefix" -> ("http://host:port", "/prefix/v1").
void split_url(const std::string& url, std::string& origin, std::string& api_base) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos || url.compare(0, scheme, "http") != 0 ||
      scheme + 3 >= url.size())
    throw Error("llm chat: --url must look like http://HOST:PORT, got '" + url + "'");
  const size_t slash = url.find('/', scheme + 3);
  origin = url.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : url.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() < 3 || path.compare(path.size() - 3, 3, "/v1") != 0) path += "/v1";
  api_base = path;
}

// What the worker thread hands to the caller's thread.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> texts;
  bool done = false;
};

// Server-sent events: "data: <json>" lines, events separated by a blank line.
class SseParser {
 public:
  // Returns the data payloads of the events completed by these bytes.
  std::vector<std::string> feed(const char* data, size_t n) {
    buf_.append(data, n);
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
      const size_t nl = buf_.find('\n', start);
      if (nl == std::string::npos) break;
      std::string line = buf_.substr(start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {  // end of an event
        if (!data_.empty()) out.push_back(std::move(data_));
        data_.clear();
      } else if (line.rfind("data:", 0) == 0) {
        size_t p = 5;
        if (p < line.size() && line[p] == ' ') ++p;
        if (!data_.empty()) data_ += '\n';
        data_ += line.substr(p);
      }  // comments (":") and other fields are ignored
    }
    buf_.erase(0, start);
    return out;
  }

 private:
  std::string buf_;   // an incomplete line
  std::string data_;  // the data of the event being read
};

std::string error_message(const std::string& body, std::string* code) {
  try {
    const json j = json::parse(body);
    if (j.contains("error") && j["error"].is_object()) {
      const json& e = j["error"];
      if (code && e.contains("code") && e["code"].is_string()) *code = e["code"].get<std::string>();
      if (e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  return body.size() > 300 ? body.substr(0, 300) + "..." : body;
}

class RemoteChat final : public ChatBackend {
 public:
  RemoteChat(std::string url, std::string api_key, std::string model)
      : url_(std::move(url)), key_(std::move(api_key)), model_(std::move(model)) {
    split_url(url_, origin_, base_);
    look_up_model();
  }

  std::string describe() const override { return url_ + " (model " + model_ + ")"; }
  std::string model_name() const override { return model_; }

  Answer answer(const nlohmann::ordered_json& messages, const ChatSettings& s,
                const std::function<void(std::string_view)>& on_text,
                const std::function<bool()>& stop_requested) override {
    const SamplingParams& p = s.sampling;
    nlohmann::ordered_json body = {
        {"model", model_},
        {"messages", messages},
        {"stream", true},
        {"stream_options", {{"include_usage", true}}},
        {"temperature", p.temperature},
        {"top_p", p.top_p},
        {"top_k", p.top_k},
        {"min_p", p.min_p},
        {"repeat_penalty", p.repeat_penalty},
    };
    if (p.seed != kRandomSeed) body["seed"] = p.seed;
    if (s.max_tokens > 0) body["max_tokens"] = s.max_tokens;
    if (s.ignore_eos) body["ignore_eos"] = true;  // an extension of llm serve and llama.cpp

    httplib::Client cli(origin_);
    cli.set_connection_timeout(10);
    cli.set_read_timeout(3600);  // a long prompt may take a while before the first event
    httplib::Headers headers;
    if (!key_.empty()) headers.emplace("Authorization", "Bearer " + key_);

    Answer a;
    Inbox inbox;
    std::atomic<bool> abort{false};
    int status = 0;
    std::string error_body;
    std::string finish;
    int prompt_tokens = -1, completion_tokens = -1;
    std::string stream_error;
    httplib::Error net = httplib::Error::Success;
    SseParser sse;
    const auto t0 = Clock::now();
    double t_first = -1, t_last = -1;

    // Runs on the worker: the HTTP exchange, streamed text into the inbox.
    auto work = [&] {
      httplib::Request req;
      req.method = "POST";
      req.path = base_ + "/chat/completions";
      req.headers = headers;
      req.set_header("Content-Type", "application/json");
      req.set_header("Accept", "text/event-stream");
      req.body = body.dump();
      req.response_handler = [&](const httplib::Response& res) {
        status = res.status;
        return !abort.load();
      };
      req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        if (abort.load()) return false;
        if (status != 200) {
          error_body.append(data, n);
          return true;
        }
        for (const std::string& ev : sse.feed(data, n)) {
          if (ev == "[DONE]") continue;
          json j;
          try {
            j = json::parse(ev);
          } catch (const json::exception&) {
            stream_error = "the server sent an event that is not JSON: " + ev.substr(0, 200);
            return false;
          }
          if (j.contains("error")) {
            stream_error = error_message(ev, nullptr);
            return false;
          }
          if (j.contains("usage") && j["usage"].is_object()) {
            prompt_tokens = j["usage"].value("prompt_tokens", -1);
            completion_tokens = j["usage"].value("completion_tokens", -1);
          }
          if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;
          const json& c = j["choices"][0];
          if (c.contains("finish_reason") && c["finish_reason"].is_string())
            finish = c["finish_reason"].get<std::string>();
          if (!c.contains("delta") || !c["delta"].is_object()) continue;
          const json& d = c["delta"];
          if (!d.contains("content") || !d["content"].is_string()) continue;
          std::string text = d["content"].get<std::string>();
          if (text.empty()) continue;
          std::lock_guard<std::mutex> lock(inbox.mu);
          inbox.texts.push_back(std::move(text));
          inbox.cv.notify_one();
        }
        return true;
      };
      httplib::Response res;
      if (!cli.send(req, res, net) && net == httplib::Error::Success) net = httplib::Error::Unknown;
      std::lock_guard<std::mutex> lock(inbox.mu);
      inbox.done = true;
      inbox.cv.notify_one();
    };
    std::thread worker(work);

    // The caller's thread: print what arrives, watch for Ctrl-C.
    bool interrupted = false;
    for (;;) {
      std::deque<std::string> got;
      bool done;
      {
        std::unique_lock<std::mutex> lock(inbox.mu);
        inbox.cv.wait_for(lock, std::chrono::milliseconds(20),
                          [&] { return inbox.done || !inbox.texts.empty(); });
        got.swap(inbox.texts);
        done = inbox.done;
      }
      for (const std::string& t : got) {
        t_last = seconds_since(t0);
        if (t_first < 0) t_first = t_last;
        a.text += t;
        on_text(t);
      }
      if (done) break;
      if (!interrupted && stop_requested()) {
        interrupted = true;
        abort = true;
        cli.stop();  // ends a request that is still waiting for its first byte
      }
    }
    worker.join();

    a.stats.prompt_tokens = prompt_tokens;
    a.stats.generated_tokens = completion_tokens >= 0 ? completion_tokens : 0;
    a.stats.context_max = context_max_;
    a.stats.ttft = t_first;
    a.stats.gen_s = t_first >= 0 ? t_last - t_first : 0;
    if (interrupted) {
      a.kind = Answer::Kind::Interrupted;
      return a;
    }
    if (status != 0 && status != 200) {
      std::string code;
      a.error =
          "the server answered " + std::to_string(status) + ": " + error_message(error_body, &code);
      a.kind = code == "context_length_exceeded" ? Answer::Kind::Overflow : Answer::Kind::Failed;
      // "This model's maximum context length is N tokens..." tells /stats the context.
      const std::string key = "maximum context length is ";
      const size_t at = a.error.find(key);
      if (at != std::string::npos) context_max_ = std::atoi(a.error.c_str() + at + key.size());
      if (status == 401) a.error += " (give the key with --api-key)";
      return a;
    }
    if (!stream_error.empty() || net != httplib::Error::Success) {
      a.kind = Answer::Kind::Failed;
      a.error = !stream_error.empty()
                    ? stream_error
                    : "cannot reach " + url_ + " (" + httplib::to_string(net) + ")";
      return a;
    }
    a.finish = finish.empty() ? "stop" : finish;
    return a;
  }

 private:
  // GET /v1/models: the model to ask for when none was named, and its context length
  // when the server tells it (vLLM's "max_model_len"). A server without the endpoint is
  // fine when the model is named.
  void look_up_model() {
    httplib::Client cli(origin_);
    cli.set_connection_timeout(10);
    cli.set_read_timeout(60);
    httplib::Headers headers;
    if (!key_.empty()) headers.emplace("Authorization", "Bearer " + key_);
    auto res = cli.Get(base_ + "/models", headers);
    if (!res)
      throw Error("llm chat: cannot reach " + url_ + " (" + httplib::to_string(res.error()) +
                  "); is `llm serve` running there?");
    if (res->status == 401)
      throw Error("llm chat: " + url_ + " wants an API key: " + error_message(res->body, nullptr) +
                  " (give it with --api-key)");
    json list;
    try {
      if (res->status == 200) list = json::parse(res->body).at("data");
    } catch (const json::exception&) {
    }
    if (model_.empty()) {
      if (!list.is_array() || list.empty() || !list[0].contains("id") || !list[0]["id"].is_string())
        throw Error("llm chat: " + url_ + " lists no models (GET " + base_ + "/models answered " +
                    std::to_string(res->status) + "); name one with --model NAME");
      model_ = list[0]["id"].get<std::string>();
    }
    if (!list.is_array()) return;
    for (const json& m : list)
      if (m.is_object() && m.value("id", "") == model_ && m.contains("max_model_len") &&
          m["max_model_len"].is_number_integer())
        context_max_ = m["max_model_len"].get<int>();
  }

  std::string url_, key_, model_;
  std::string origin_, base_;
  int context_max_ = 0;  // learnt from a context_length_exceeded error; 0 = unknown
};

}  // namespace

std::unique_ptr<ChatBackend> make_remote_chat(const std::string& url, const std::string& api_key,
                                              const std::string& model) {
  return std::make_unique<RemoteChat>(url, api_key, model);
}

#endif  // LLM_HAVE_HTTPLIB

}  // namespace llm
