// `llm serve`: load a model, start the batching engine, serve the OpenAI API.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "engine/error.h"
#include "server/args.h"
#include "server/cli.h"
#include "server/cli_common.h"

#ifdef LLM_HAVE_HTTPLIB
#include "server/http_server.h"
#endif

namespace llm {

#ifndef LLM_HAVE_HTTPLIB
int cmd_serve(int, char**) {
  throw Error("this llm was built without cpp-httplib (Debian package libcpp-httplib-dev); serve is unavailable");
}
#else

int cmd_serve(int argc, char** argv) {
  Args a("serve", "-m MODEL [options]",
         "Serve the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models), a web chat at /\n"
         "and Prometheus metrics at /metrics, batching all requests on one device.");
  add_model_flags(a);
  a.flag("--host", "ADDR", "address to listen on", "127.0.0.1");
  a.flag("--port", "N", "port to listen on (0: any free port)", "8080");
  a.flag("--api-key", "KEY", "require 'Authorization: Bearer KEY' on /v1/* and /metrics (or env LLM_API_KEY)");
  a.flag("--alias", "NAME", "model name shown to clients", "the file name");
  a.flag("--chat-template", "NAME|FILE", "chat template: a built-in name (chatml, llama3, llama2, zephyr, gemma, phi3) or a Jinja file");
  a.flag("--max-queue", "N", "waiting requests before answering 429", "256");
  a.flag("--http-threads", "N", "HTTP worker threads (each open stream holds one)", "128");
  a.flag("--shutdown-timeout", "SEC", "on SIGINT/SIGTERM, seconds in-flight requests get to finish", "30");
  a.flag("--no-webui", "", "do not serve the web chat at /");
  if (!a.parse(argc, argv)) return 0;

  LoadedModel lm = load_model(a);
  const std::string tmpl_flag = a.str("--chat-template");
  ChatTemplate tmpl = pick_chat_template(tmpl_flag, lm.model->file, *lm.tokenizer, "serve");

  ServeOptions opt;
  opt.host = a.str("--host", "127.0.0.1");
  opt.port = static_cast<int>(a.i64("--port", 8080));
  if (opt.port < 0 || opt.port > 65535) throw Error("llm serve: --port must be 0..65535");
  opt.api_key = a.str("--api-key");
  if (opt.api_key.empty())
    if (const char* k = std::getenv("LLM_API_KEY")) opt.api_key = k;
  opt.model_id = a.str("--alias", std::filesystem::path(a.str("--model")).filename().string());
  opt.max_waiting = static_cast<int>(a.i64("--max-queue", 256));
  opt.http_threads = static_cast<int>(a.i64("--http-threads", 128));
  opt.shutdown_grace_s = a.f64("--shutdown-timeout", 30);
  opt.web_ui = !a.on("--no-webui");
  if (opt.max_waiting < 1 || opt.http_threads < 4 || opt.shutdown_grace_s < 0)
    throw Error("llm serve: --max-queue >= 1, --http-threads >= 4 and --shutdown-timeout >= 0 are required");

  // SIGINT/SIGTERM are taken by a thread of ours (sigwait), never by a handler: block
  // them before any other thread starts so that every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Engine engine(*lm.backend, engine_config(a, lm));
  engine.start();

  ServeContext ctx;
  ctx.engine = &engine;
  ctx.tokenizer = lm.tokenizer.get();
  ctx.chat_template = &tmpl;
  ctx.tool_style = tool_style_of_template(chat_template_source(tmpl_flag, lm.model->file));
  ctx.token_index = TokenIndex::build(*lm.tokenizer);
  HttpServer server(ctx, opt);
  server.bind();

  std::fprintf(stderr, "llm serve: %s on %s, context %d tokens, KV cache %lld tokens (%d blocks of %d)\n",
               opt.model_id.c_str(), lm.backend->name().c_str(), engine.max_model_len(),
               static_cast<long long>(lm.backend->kv_blocks()) * lm.backend->block_size(), lm.backend->kv_blocks(),
               lm.backend->block_size());
  std::fprintf(stderr, "llm serve: listening on http://%s:%d  (OpenAI API at http://%s:%d/v1%s)\n", opt.host.c_str(),
               server.port(), opt.host.c_str(), server.port(), opt.api_key.empty() ? "" : ", API key required");
  std::fflush(stderr);

  std::thread signals([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "llm serve: %s received; finishing in-flight requests (up to %.0f s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", opt.shutdown_grace_s);
    server.shutdown();
  });
  server.run();
  // run() returned: either a signal arrived, or listening failed. Wake the signal
  // thread if it still waits.
  if (!server.draining()) {
    pthread_kill(signals.native_handle(), SIGTERM);
  }
  signals.join();
  engine.stop();
  std::fprintf(stderr, "llm serve: stopped\n");
  return 0;
}

#endif

}  // namespace llm
