#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "server/openai_api.h"
#include "server/text_stream.h"
#include "server/web_ui.h"

namespace llm {

namespace {

using api::ApiError;
using api::ApiException;
using json = api::json;
using Clock = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.to_json().dump(), "application/json");
}

ApiError make_error(int status, const std::string& message, const std::string& type, const std::string& code = "") {
  ApiError e;
  e.status = status;
  e.message = message;
  e.type = type;
  e.code = code;
  return e;
}

// Events cross from the engine's thread to the HTTP thread through this box.
struct EventBox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<TokenEvent> q;
  void push(const TokenEvent& e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      q.push_back(e);
    }
    cv.notify_one();
  }
  bool pop(TokenEvent& out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, timeout, [&] { return !q.empty(); })) return false;
    out = std::move(q.front());
    q.pop_front();
    return true;
  }
};

// What one step of a choice adds for the client.
struct ChoiceDelta {
  int index = 0;
  std::string text;
  std::vector<api::TokenLogprobs> logprobs;
  bool finished = false;
};

struct ChoiceState {
  int index = 0;
  RequestId id = 0;
  std::unique_ptr<StreamDecoder> decoder;
  std::unique_ptr<StopMatcher> stop;
  std::string text;          // everything shown (or to be shown) so far
  std::string tool_buffer;   // held back while the answer may be a tool call
  bool holding = false;      // tool_buffer in use
  std::vector<api::TokenLogprobs> logprobs;
  size_t streamed_bytes = 0;  // text of the tokens whose logprobs were streamed (text_offset)
  std::vector<api::ToolCall> tool_calls;
  bool done = false;
  std::string finish_reason;
  std::string error;
  RequestStats stats;
  // Counted here for a choice that a stop string ends: the engine's statistics come only
  // with its final event, which the cancel sends later (and after more tokens).
  int n_prompt = 0;
  int n_tokens = 0;
  Clock::time_point t_submit, t_first, t_last;
};

// One HTTP request: its engine requests (n choices per prompt) and their text state.
class Generation {
 public:
  // queued: choices submitted that have not had an event yet (the server's queue length).
  Generation(Engine& engine, const Tokenizer& tok, bool tools, ToolStyle style, std::shared_ptr<std::atomic<int>> queued)
      : engine_(engine),
        tok_(tok),
        tools_(tools),
        style_(style),
        box_(std::make_shared<EventBox>()),
        queued_(std::move(queued)) {}

  ~Generation() { cancel_all(); }

  // Submits one engine request as choice `index`. Throws llm::Error from the engine.
  void add(int index, Request req, const std::vector<std::string>& stops) {
    ChoiceState c;
    c.index = index;
    c.decoder = std::make_unique<StreamDecoder>(tok_);
    c.stop = std::make_unique<StopMatcher>(stops);
    c.holding = tools_;
    c.n_prompt = static_cast<int>(req.prompt.size());
    c.t_submit = Clock::now();
    std::shared_ptr<EventBox> box = box_;
    // Every submitted request gets at least one event (its last one when cancelled), so
    // the queue count always comes back down.
    std::shared_ptr<std::atomic<int>> queued = queued_;
    auto first = std::make_shared<std::atomic<bool>>(false);
    queued->fetch_add(1);
    try {
      c.id = engine_.submit(std::move(req), [box, queued, first](const TokenEvent& e) {
        if (!first->exchange(true)) queued->fetch_sub(1);
        box->push(e);
      });
    } catch (...) {
      queued->fetch_sub(1);
      throw;
    }
    by_id_[c.id] = choices_.size();
    choices_.push_back(std::move(c));
  }

  bool all_done() const {
    return std::all_of(choices_.begin(), choices_.end(), [](const ChoiceState& c) { return c.done; });
  }

  // Waits up to `timeout` for an event; returns what it adds for the client.
  std::optional<ChoiceDelta> next(std::chrono::milliseconds timeout) {
    TokenEvent ev;
    if (!box_->pop(ev, timeout)) return std::nullopt;
    auto it = by_id_.find(ev.id);
    if (it == by_id_.end()) return std::nullopt;
    ChoiceState& c = choices_[it->second];
    if (c.done) return std::nullopt;  // e.g. the cancel that follows a stop string
    ChoiceDelta d;
    d.index = c.index;
    std::string piece;
    if (ev.token >= 0) {
      c.t_last = Clock::now();
      if (c.n_tokens++ == 0) c.t_first = c.t_last;
      piece = c.decoder->push(ev.token);
      if (want_logprobs_) d.logprobs.push_back(token_logprobs(ev));
    }
    if (ev.finished) piece += c.decoder->flush();
    std::string visible = c.stop->push(piece);
    if (c.stop->stopped()) {
      c.done = true;
      c.finish_reason = "stop";
      if (ev.finished) {
        c.stats = ev.stats;
      } else {
        engine_.cancel(c.id);
        c.stats = own_stats(c);
      }
    } else if (ev.finished) {
      visible += c.stop->flush();
      c.done = true;
      c.stats = ev.stats;
      switch (ev.finish_reason) {
        case FinishReason::Length: c.finish_reason = "length"; break;
        case FinishReason::Error: c.finish_reason = "error"; c.error = ev.error; break;
        default: c.finish_reason = "stop";
      }
    }
    // Tool calls: hold the answer back while it may still become one.
    if (c.holding) {
      c.tool_buffer += visible;
      visible.clear();
      if (c.done) {
        ParsedToolOutput parsed = parse_tool_calls(c.tool_buffer, style_);
        if (!parsed.calls.empty()) {
          for (api::ToolCall& call : parsed.calls) call.id = api::random_id("call_");
          c.tool_calls = parsed.calls;
          c.finish_reason = "tool_calls";
          visible = parsed.content;
        } else {
          visible = c.tool_buffer;
        }
        c.holding = false;
      } else if (!may_start_tool_call(c.tool_buffer, style_)) {
        visible.swap(c.tool_buffer);
        c.holding = false;
      }
    }
    if (want_logprobs_) c.logprobs.insert(c.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    c.text += visible;
    d.text = visible;
    d.finished = c.done;
    return d;
  }

  // on: report each token's logprob; top: how many alternatives with it (0..20).
  void set_logprobs(bool on, int top) {
    want_logprobs_ = on;
    n_top_ = top;
  }
  std::vector<ChoiceState>& choices() { return choices_; }

  void cancel_all() {
    for (ChoiceState& c : choices_)
      if (!c.done) engine_.cancel(c.id);
  }

  api::Usage usage(int prompt_tokens_per_choice_group, int groups) const {
    api::Usage u;
    u.prompt_tokens = prompt_tokens_per_choice_group * groups;
    for (const ChoiceState& c : choices_) {
      u.completion_tokens += c.stats.n_generated;
      u.cached_tokens = std::max(u.cached_tokens, c.stats.n_cached);
    }
    return u;
  }

 private:
  static RequestStats own_stats(const ChoiceState& c) {
    using Sec = std::chrono::duration<double>;
    RequestStats s;
    s.n_prompt = c.n_prompt;
    s.n_generated = c.n_tokens;
    s.e2e = Sec(Clock::now() - c.t_submit).count();
    if (c.n_tokens > 0) s.ttft = Sec(c.t_first - c.t_submit).count();
    if (c.n_tokens > 1) s.tpot = Sec(c.t_last - c.t_first).count() / (c.n_tokens - 1);
    return s;
  }

  api::TokenLogprobs token_logprobs(const TokenEvent& ev) const {
    api::TokenLogprobs t;
    t.token = tok_.token_to_piece(ev.token);
    t.logprob = ev.logprob;
    for (const TokenLogprob& x : ev.top)
      if (static_cast<int>(t.top.size()) < n_top_) t.top.push_back({tok_.token_to_piece(x.id), x.logprob});
    return t;
  }

  Engine& engine_;
  const Tokenizer& tok_;
  bool tools_;
  ToolStyle style_;
  bool want_logprobs_ = false;
  int n_top_ = 0;  // the engine reports at least one alternative; clients asked for this many
  std::shared_ptr<EventBox> box_;
  std::shared_ptr<std::atomic<int>> queued_;
  std::vector<ChoiceState> choices_;
  std::unordered_map<RequestId, size_t> by_id_;
};

// The API takes JSON only. A body sent as another media type (curl -d sends form data
// unless told otherwise) is refused as OpenAI refuses it; no Content-Type at all is accepted.
std::string content_type_error(const httplib::Request& req) {
  if (!req.has_header("Content-Type")) return "";
  std::string ct = req.get_header_value("Content-Type");
  std::string mime = ct.substr(0, ct.find(';'));
  while (!mime.empty() && (mime.back() == ' ' || mime.back() == '\t')) mime.pop_back();
  while (!mime.empty() && (mime.front() == ' ' || mime.front() == '\t')) mime.erase(0, 1);
  std::transform(mime.begin(), mime.end(), mime.begin(), [](unsigned char c) { return std::tolower(c); });
  bool json_type = mime == "application/json" || (mime.size() > 5 && mime.compare(mime.size() - 5, 5, "+json") == 0);
  if (json_type) return "";
  return "Invalid Content-Type '" + ct + "': the request body must be JSON sent with 'Content-Type: application/json'.";
}

SamplingParams sampling_of(const api::GenerationParams& g, int choice) {
  SamplingParams s;
  s.temperature = g.temperature;
  s.top_k = g.top_k;
  s.top_p = g.top_p;
  s.min_p = g.min_p;
  s.repeat_penalty = g.repeat_penalty;
  s.presence_penalty = g.presence_penalty;
  s.frequency_penalty = g.frequency_penalty;
  s.logit_bias = g.logit_bias;
  if (g.seed) s.seed = *g.seed + static_cast<uint64_t>(choice);
  s.n_probs = g.logprobs ? std::max(g.top_logprobs, 1) : 0;
  return s;
}

}  // namespace

HttpServer::HttpServer(ServeContext ctx, ServeOptions opt)
    : ctx_(ctx), opt_(std::move(opt)), svr_(std::make_unique<httplib::Server>()) {
  int threads = opt_.http_threads > 0 ? opt_.http_threads : 128;
  svr_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr_->set_payload_max_length(opt_.max_body_bytes);
  svr_->set_read_timeout(std::chrono::seconds(60));
  svr_->set_write_timeout(std::chrono::seconds(60));
  routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  if (opt_.port == 0) {
    port_ = svr_->bind_to_any_port(opt_.host);
    if (port_ <= 0) throw Error("cannot bind to " + opt_.host + " on any port");
  } else {
    if (!svr_->bind_to_port(opt_.host, opt_.port))
      throw Error("cannot bind to " + opt_.host + ":" + std::to_string(opt_.port) +
                  " (in use? try --port with another number)");
    port_ = opt_.port;
  }
}

void HttpServer::run() { svr_->listen_after_bind(); }

void HttpServer::shutdown() {
  if (draining_.exchange(true)) return;
  // Stop accepting at once; give in-flight requests the grace period, then cancel.
  svr_->stop();
  auto deadline = Clock::now() + std::chrono::duration<double>(opt_.shutdown_grace_s);
  while (in_flight_.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (in_flight_.load() > 0) ctx_.engine->cancel_all();
}

std::string HttpServer::allowed_methods(const std::string& path) const {
  if (path == "/v1/chat/completions" || path == "/v1/completions") return "POST, OPTIONS";
  if (path == "/health" || path == "/metrics" || path == "/v1/models" || path.rfind("/v1/models/", 0) == 0 ||
      (path == "/" && opt_.web_ui))
    return "GET, HEAD, OPTIONS";
  return "";
}

bool HttpServer::authorized(const httplib::Request& req) const {
  bool protected_path = req.path.rfind("/v1/", 0) == 0 || req.path == "/metrics";
  if (opt_.api_key.empty() || !protected_path) return true;
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  return auth.rfind(prefix, 0) == 0 && auth.substr(prefix.size()) == opt_.api_key;
}

void HttpServer::send_unauthorized(const httplib::Request& req, httplib::Response& res) {
  metrics_.on_request_rejected(401);
  send_error(res, make_error(401,
                             req.get_header_value("Authorization").empty()
                                 ? "You didn't provide an API key. You need to provide your API key in an "
                                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                                 : "Incorrect API key provided.",
                             "invalid_request_error", "invalid_api_key"));
}

void HttpServer::routes() {
  httplib::Server& s = *svr_;

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Access-Control-Allow-Origin", "*");
    if (req.method == "OPTIONS") {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    // Body framing that httplib would misread: a Content-Length that is not a number
    // (a negative one reads as 2^64 - n and would wait for that many bytes), or one
    // together with chunked encoding (the classic request-smuggling ambiguity).
    if (req.has_header("Content-Length")) {
      const std::string cl = req.get_header_value("Content-Length");
      bool digits = !cl.empty() && cl.size() <= 18 &&
                    std::all_of(cl.begin(), cl.end(), [](unsigned char c) { return std::isdigit(c); });
      if (!digits || req.has_header("Transfer-Encoding") || req.get_header_value_count("Content-Length") > 1) {
        metrics_.on_request_rejected(400);
        send_error(res, make_error(400, "Invalid request framing: bad Content-Length header '" + cl + "'.",
                                   "invalid_request_error"));
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    // httplib reads a POST/PUT/PATCH that has neither Content-Length nor chunked encoding
    // until the client closes the connection; HTTP says such a request has no body.
    if ((req.method == "POST" || req.method == "PUT" || req.method == "PATCH") && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      std::string allow = allowed_methods(req.path);
      if (allow.empty() || allow.find(req.method) == std::string::npos) {
        res.status = 404;  // the error handler makes it 404 or 405 with its envelope
      } else {
        metrics_.on_request_rejected(400);
        send_error(res, make_error(400,
                                   "The request has no body: send the JSON body with a Content-Length header (or "
                                   "chunked Transfer-Encoding).",
                                   "invalid_request_error"));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    // A request with a body is answered only after its body was read: httplib leaves an
    // unread body on the connection, where it would be parsed as the next request (and
    // its error answer handed to the client's next request). The POST handlers check
    // the key themselves.
    bool has_body = req.has_header("Transfer-Encoding") ||
                    (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    if (!has_body && !authorized(req)) {
      send_unauthorized(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Statuses httplib sets itself (404 no route, 413 too large, 400 bad request line)
  // arrive here with an empty body: give them OpenAI's envelope.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    // A known path asked with another method: 405 with the methods it takes.
    std::string allow = allowed_methods(req.path);
    if ((res.status == 404 || res.status == 400) && !allow.empty() && allow.find(req.method) == std::string::npos) {
      res.status = 405;
      res.set_header("Allow", allow);
    }
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "Unknown request URL: " + req.method + " " + req.path + ". Please check the URL for typos.";
      e.code = "unknown_url";
    } else if (res.status == 413) {
      e.message = "Request body too large: the limit is " + std::to_string(opt_.max_body_bytes) + " bytes.";
      e.code = "request_too_large";
    } else if (res.status == 405) {
      e.message = "Method " + req.method + " is not allowed for " + req.path + "; use " + allow + ".";
      e.code = "method_not_allowed";
    } else {
      e.message = res.status >= 500 ? "Internal server error." : "Bad request.";
      if (res.status >= 500) e.type = "server_error";
    }
    metrics_.on_request_rejected(res.status);
    res.set_content(e.to_json().dump(), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));

  s.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    ApiError e = make_error(500, "Internal server error.", "server_error");
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      e.message = std::string("Internal server error: ") + ex.what();
    } catch (...) {
    }
    metrics_.on_request_rejected(500);
    send_error(res, e);
  });

  if (opt_.web_ui) {
    s.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(web_ui_html(), "text/html; charset=utf-8");
    });
  }

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
    } else {
      res.set_content(R"({"status":"ok"})", "application/json");
    }
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    EngineMetrics m = ctx_.engine->metrics();
    ServerGauges g;
    g.requests_running = m.running;
    g.requests_waiting = m.waiting;
    g.kv_blocks_total = m.kv.total;
    g.kv_blocks_used = m.kv.used;
    g.kv_blocks_cached = m.kv.cached;
    g.prefix_cache_hit_rate = m.prefix_hit_rate();
    g.preemptions = static_cast<uint64_t>(m.preemptions);
    g.spec_drafted = static_cast<uint64_t>(m.spec.drafted);
    g.spec_accepted = static_cast<uint64_t>(m.spec.accepted);
    g.spec_verifications = static_cast<uint64_t>(m.spec.verifications);
    res.set_content(metrics_.render(g), "text/plain; version=0.0.4; charset=utf-8");
  });

  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(api::models_json(opt_.model_id, unix_now()).dump(), "application/json");
  });
  s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    std::string id = req.matches[1];
    if (id != opt_.model_id) {
      ApiError e = make_error(404, "The model '" + id + "' does not exist.", "invalid_request_error", "model_not_found");
      e.param = "model";
      return send_error(res, e);
    }
    res.set_content(api::models_json(opt_.model_id, unix_now())["data"][0].dump(), "application/json");
  });

  // Both generation endpoints share this path: validate, tokenize, admit, then answer
  // whole or streamed.
  auto generate = [this](const std::string& body, httplib::Response& res, bool chat) {
    struct Flight {
      std::atomic<int>& n;
      explicit Flight(std::atomic<int>& c) : n(c) { ++n; }
      ~Flight() { --n; }
    };
    auto flight = std::make_shared<Flight>(in_flight_);
    try {
      if (draining_) throw ApiException(make_error(503, "The server is shutting down.", "server_error"));
      const Tokenizer& tok = *ctx_.tokenizer;
      Engine& engine = *ctx_.engine;
      std::optional<api::ChatRequest> creq;
      std::optional<api::CompletionRequest> preq;
      if (chat)
        creq = api::parse_chat_request(body);
      else
        preq = api::parse_completion_request(body);
      const api::GenerationParams& g = chat ? creq->gen : preq->gen;
      if (g.model != opt_.model_id) {
        ApiError e = make_error(404, "The model '" + g.model + "' does not exist. This server serves '" +
                                         opt_.model_id + "'.",
                                "invalid_request_error", "model_not_found");
        e.param = "model";
        throw ApiException(e);
      }
      // response_format: a JSON grammar every choice's tokens must follow.
      std::shared_ptr<const TokenConstraint> constraint;
      if (chat && creq->response_format != api::ResponseFormat::Text) {
        const bool schema = creq->response_format == api::ResponseFormat::JsonSchema;
        try {
          JsonSchemaOptions so;
          so.strict = creq->json_schema_strict;
          constraint = make_json_constraint(ctx_.token_index, schema ? &creq->json_schema : nullptr, so);
        } catch (const Error& e) {
          api::bad_param(schema ? "response_format.json_schema.schema" : "response_format",
                         std::string("Unsupported response_format: ") + e.what());
        }
      }

      // Prompts as token ids.
      std::vector<std::vector<int32_t>> prompts;
      std::vector<std::string> prompt_texts;
      if (chat) {
        json tools = creq->tool_choice == "none" ? json(nullptr) : creq->tools;
        std::string text;
        try {
          text = ctx_.chat_template->render(creq->messages, tools, true, creq->chat_template_kwargs);
        } catch (const Error& e) {
          api::bad_param("messages", std::string("The chat template rejected these messages: ") + e.what());
        }
        bool bos_in_text = tok.bos() >= 0 && text.rfind(tok.token_text(tok.bos()), 0) == 0;
        prompts.push_back(tok.encode(text, !bos_in_text, true));
      } else {
        for (const std::string& p : preq->prompts) {
          prompts.push_back(tok.encode(p, true, false));
          prompt_texts.push_back(p);
        }
        for (const std::vector<int32_t>& p : preq->prompt_tokens) {
          for (int32_t id : p)
            if (id >= tok.n_vocab())
              api::bad_param("prompt", "Token id " + std::to_string(id) + " is out of the vocabulary (size " +
                                           std::to_string(tok.n_vocab()) + ").");
          prompts.push_back(p);
          prompt_texts.push_back(tok.decode(p));
        }
      }
      const int ctx_len = engine.max_model_len();
      for (const std::vector<int32_t>& p : prompts) {
        int want = static_cast<int>(p.size()) + (g.max_tokens ? *g.max_tokens : 1);
        if (p.empty()) api::bad_param(chat ? "messages" : "prompt", "The prompt is empty.");
        if (want > ctx_len) {
          ApiError e = make_error(
              400,
              "This model's maximum context length is " + std::to_string(ctx_len) + " tokens. However, you requested " +
                  std::to_string(want) + " tokens (" + std::to_string(p.size()) + " in the " +
                  (chat ? "messages" : "prompt") + ", " + std::to_string(want - static_cast<int>(p.size())) +
                  " in the completion). Please reduce the length of the " + (chat ? "messages" : "prompt") +
                  " or completion.",
              "invalid_request_error", "context_length_exceeded");
          e.param = chat ? "messages" : "prompt";
          throw ApiException(e);
        }
      }
      // Admission: checked and submitted under one lock, against a count kept here (the
      // engine's own waiting count is published once per step: a burst would pass it).
      std::unique_lock<std::mutex> admit(admit_mu_);
      const int n_choices = static_cast<int>(prompts.size()) * g.n;
      if (queued_->load() > 0 && queued_->load() + n_choices > opt_.max_waiting) {
        res.set_header("Retry-After", "1");
        throw ApiException(make_error(429, "The server is busy: too many requests are waiting. Retry shortly.",
                                      "rate_limit_exceeded", "rate_limit_exceeded"));
      }

      const bool tools = chat && !creq->tools.is_null() && creq->tool_choice != "none";
      auto gen = std::make_shared<Generation>(engine, tok, tools, ctx_.tool_style, queued_);
      gen->set_logprobs(g.logprobs, g.top_logprobs);
      for (size_t p = 0; p < prompts.size(); ++p) {
        for (int i = 0; i < g.n; ++i) {
          Request r;
          r.prompt = prompts[p];
          r.sampling = sampling_of(g, i);
          r.n_logprobs = r.sampling.n_probs;
          r.stop.max_tokens = g.max_tokens ? *g.max_tokens : ctx_len - static_cast<int>(prompts[p].size());
          r.stop.ignore_eos = g.ignore_eos && !constraint;  // a finished grammar ends with EOS
          r.constraint = constraint;
          try {
            gen->add(static_cast<int>(p) * g.n + i, std::move(r), g.stop);
          } catch (const Error& e) {
            api::bad_param(chat ? "messages" : "prompt", e.what());
          }
        }
      }
      admit.unlock();
      const std::string id = api::random_id(chat ? "chatcmpl-" : "cmpl-");
      const int64_t created = unix_now();
      std::string model = opt_.model_id;
      const bool echo = !chat && preq->echo;

      auto record = [this](ChoiceState& c) {
        metrics_.on_request_finished(c.stats.ttft, c.stats.tpot, c.stats.e2e, c.stats.n_prompt, c.stats.n_generated,
                                     c.finish_reason);
      };

      if (!g.stream) {
        while (!gen->all_done()) {
          auto d = gen->next(std::chrono::milliseconds(100));
          if (d && d->finished) record(gen->choices()[static_cast<size_t>(d->index)]);
        }
        std::vector<api::Choice> out;
        for (ChoiceState& c : gen->choices()) {
          if (c.finish_reason == "error")
            throw ApiException(make_error(500, "Generation failed: " + c.error, "server_error"));
          api::Choice ch;
          ch.index = c.index;
          ch.text = echo ? prompt_texts[static_cast<size_t>(c.index / g.n)] + c.text : c.text;
          ch.finish_reason = c.finish_reason;
          ch.tool_calls = c.tool_calls;
          ch.has_logprobs = g.logprobs;
          ch.logprobs = c.logprobs;
          out.push_back(std::move(ch));
        }
        int total_prompt = 0;
        for (const auto& p : prompts) total_prompt += static_cast<int>(p.size());
        api::Usage u = gen->usage(0, 0);
        u.prompt_tokens = total_prompt;
        json body = chat ? api::chat_completion_json(id, created, model, out, u)
                         : api::completion_json(id, created, model, out, u);
        res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
        return;
      }

      // Streaming: server-sent events until every choice finished, then [DONE].
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      const bool include_usage = g.include_usage;
      const bool logprobs = g.logprobs;
      const int n = g.n;
      int total_prompt = 0;
      for (const auto& p : prompts) total_prompt += static_cast<int>(p.size());
      auto started = std::make_shared<std::vector<bool>>(gen->choices().size(), false);
      auto finished_stream = std::make_shared<bool>(false);
      res.set_chunked_content_provider(
          "text/event-stream",
          [gen, started, finished_stream, chat, id, created, model, include_usage, logprobs, echo, prompt_texts, n,
           total_prompt, record, flight](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            if (*finished_stream) return false;
            // Role chunks first (chat), echo text (completions).
            for (size_t i = 0; i < started->size(); ++i) {
              if ((*started)[i]) continue;
              (*started)[i] = true;
              if (chat) {
                api::ChatDelta d;
                d.index = static_cast<int>(i);
                d.role = true;
                if (!write(api::sse_event(api::chat_chunk_json(id, created, model, d, include_usage)))) return false;
              } else if (echo) {
                const std::string& text = prompt_texts[i / static_cast<size_t>(n)];
                if (!write(api::sse_event(api::completion_chunk_json(id, created, model, static_cast<int>(i), text,
                                                                    std::nullopt, include_usage))))
                  return false;
              }
            }
            while (!gen->all_done()) {
              if (!sink.is_writable()) return false;
              auto d = gen->next(std::chrono::milliseconds(50));
              if (!d) continue;
              ChoiceState& c = gen->choices()[static_cast<size_t>(d->index)];
              if (d->finished) record(c);
              if (chat) {
                // Every token's logprobs are sent, the last one's too (whose text may be
                // empty: a stop string, EOS), so that they add up to completion_tokens.
                if (!d->text.empty() || (logprobs && !d->logprobs.empty())) {
                  api::ChatDelta cd;
                  cd.index = d->index;
                  cd.content = d->text;
                  cd.has_logprobs = logprobs;
                  cd.logprobs = d->logprobs;
                  if (!write(api::sse_event(api::chat_chunk_json(id, created, model, cd, include_usage)))) return false;
                }
                if (d->finished) {
                  if (!c.tool_calls.empty()) {
                    api::ChatDelta td;
                    td.index = d->index;
                    td.tool_calls = c.tool_calls;
                    if (!write(api::sse_event(api::chat_chunk_json(id, created, model, td, include_usage)))) return false;
                  }
                  api::ChatDelta fd;
                  fd.index = d->index;
                  fd.finish_reason = c.finish_reason == "error" ? "stop" : c.finish_reason;
                  if (!write(api::sse_event(api::chat_chunk_json(id, created, model, fd, include_usage)))) return false;
                }
              } else {
                if (!d->text.empty() || d->finished || (logprobs && !d->logprobs.empty())) {
                  std::optional<std::string> fr;
                  if (d->finished) fr = c.finish_reason == "error" ? "stop" : c.finish_reason;
                  if (!write(api::sse_event(api::completion_chunk_json(id, created, model, d->index, d->text, fr,
                                                                       include_usage, logprobs ? &d->logprobs : nullptr,
                                                                       c.streamed_bytes))))
                    return false;
                  for (const api::TokenLogprobs& t : d->logprobs) c.streamed_bytes += t.token.size();
                }
              }
            }
            if (include_usage) {
              api::Usage u = gen->usage(0, 0);
              u.prompt_tokens = total_prompt;
              json j = chat ? api::chat_usage_chunk_json(id, created, model, u)
                            : api::completion_usage_chunk_json(id, created, model, u);
              if (!write(api::sse_event(j))) return false;
            }
            write(api::sse_done());
            *finished_stream = true;
            sink.done();
            return true;
          },
          [gen](bool success) {
            // A client that went away cancels what it asked for; the blocks free at once.
            if (!success) gen->cancel_all();
          });
    } catch (const ApiException& e) {
      metrics_.on_request_rejected(e.error().status);
      send_error(res, e.error());
    }
  };

  // The body is read here, not by httplib: its limit does not apply to chunked bodies
  // (Transfer-Encoding: chunked), which could otherwise grow without bound.
  auto post = [this, generate](bool chat) {
    return [this, generate, chat](const httplib::Request& req, httplib::Response& res,
                                  const httplib::ContentReader& reader) {
      // httplib parses multipart bodies itself and fails on them here: refused unread.
      const std::string ct_error = content_type_error(req);
      const bool multipart = req.is_multipart_form_data();
      std::string body;
      bool too_large = false;
      bool read = multipart || reader([&](const char* data, size_t n) {
                    if (body.size() + n > opt_.max_body_bytes) {
                      too_large = true;
                      return false;
                    }
                    body.append(data, n);
                    return true;
                  });
      if (!authorized(req)) {
        send_unauthorized(req, res);
        if (too_large || !read || multipart) res.set_header("Connection", "close");
        return;
      }
      if (too_large || res.status == 413) {
        metrics_.on_request_rejected(413);
        send_error(res, make_error(413, "Request body too large: the limit is " + std::to_string(opt_.max_body_bytes) +
                                            " bytes.",
                                   "invalid_request_error", "request_too_large"));
        res.set_header("Connection", "close");  // the rest of the body is still unread
        return;
      }
      if (!read) {
        metrics_.on_request_rejected(400);
        send_error(res, make_error(400, "The request body could not be read (truncated, or bad chunked encoding).",
                                   "invalid_request_error"));
        res.set_header("Connection", "close");
        return;
      }
      if (!ct_error.empty()) {
        metrics_.on_request_rejected(400);
        send_error(res, make_error(400, ct_error, "invalid_request_error"));
        if (multipart) res.set_header("Connection", "close");
        return;
      }
      generate(body, res, chat);
    };
  };
  s.Post("/v1/chat/completions", post(true));
  s.Post("/v1/completions", post(false));
}

}  // namespace llm
