// `llm serve`: the OpenAI-compatible HTTP API, the web chat and /metrics on
// cpp-httplib, feeding every request into the one batching engine.
//
// Routes: GET / (web chat), GET /health, GET /metrics, GET /v1/models[/{id}],
// POST /v1/chat/completions, POST /v1/completions. Every error uses OpenAI's envelope.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/json_schema.h"
#include "engine/token_constraint.h"
#include "engine/tokenizer.h"
#include "server/metrics.h"
#include "server/tool_calls.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}

namespace llm {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see HttpServer::port())
  std::string api_key;             // non-empty: /v1/* and /metrics need "Authorization: Bearer KEY"
  std::string model_id;            // the name clients see in /v1/models
  int max_waiting = 256;           // queued requests beyond this get 429
  int http_threads = 0;            // 0: enough for max_num_seqs streams plus headroom
  double shutdown_grace_s = 30;    // in-flight requests get this long after SIGINT/SIGTERM
  size_t max_body_bytes = 16u << 20;
  bool web_ui = true;
};

// What the server serves with; all of it outlives the server.
struct ServeContext {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // never null: the model's or a fallback
  ToolStyle tool_style = ToolStyle::Generic;
  // The vocabulary's byte trie for grammar-constrained decoding (response_format), built
  // once at startup and shared by every request's constraint.
  std::shared_ptr<const TokenIndex> token_index;
};

class HttpServer {
 public:
  HttpServer(ServeContext ctx, ServeOptions opt);
  ~HttpServer();

  // Binds; throws llm::Error when the address cannot be bound.
  void bind();
  int port() const { return port_; }
  // Serves until shutdown() (blocking); returns after in-flight requests ended.
  void run();
  // Stops accepting, lets in-flight requests finish within the grace period, then
  // cancels what is left. Safe from any thread, once or more.
  void shutdown();
  bool draining() const { return draining_; }

  ServerMetrics& metrics() { return metrics_; }

 private:
  void routes();
  // "GET, HEAD, OPTIONS" or "POST, OPTIONS" for a served path, "" for an unknown one.
  std::string allowed_methods(const std::string& path) const;
  // With --api-key: whether the request may use its path (/v1/* and /metrics need the key).
  bool authorized(const httplib::Request& req) const;
  void send_unauthorized(const httplib::Request& req, httplib::Response& res);
  ServeContext ctx_;
  ServeOptions opt_;
  std::unique_ptr<httplib::Server> svr_;
  ServerMetrics metrics_;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  // Choices submitted to the engine that have not started (no event yet): the queue
  // that --max-queue bounds. Shared with the engine callbacks, which may outlive us.
  std::shared_ptr<std::atomic<int>> queued_ = std::make_shared<std::atomic<int>>(0);
  std::mutex admit_mu_;
};

}  // namespace llm
