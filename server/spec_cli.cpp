#include "server/spec_cli.h"

#include <algorithm>
#include <chrono>

#include "engine/draft_model.h"
#include "engine/error.h"

namespace llm {

void add_spec_flags(Args& a) {
  a.flag("--spec", "none|draft|ngram|self",
         "speculative decoding: a draft model (--draft-model), n-gram prompt lookup, or a "
         "lower-bit copy of the model itself (--draft-quant)",
         "draft with --draft-model, self with --draft-quant, else none");
  a.flag("--draft-model", "FILE", "draft model for --spec draft (same vocabulary as the model)");
  a.flag("--draft-quant", "TYPE",
         "weight type of the self-speculation copy (q4_0, q8_0, q4_K, ...)", "q4_0");
  a.flag("--spec-k", "N", "draft tokens per sequence and step at most (adapted to acceptance)",
         "5");
  a.flag("--spec-off-batch", "N",
         "no speculation in steps with more than N decoding sequences; below, each sequence's "
         "k (0 included) follows its acceptance and the batch (on an H100, a 7B F16 target "
         "with a 1.1B Q4_0 draft at 80% acceptance: 2.0x alone with k 5, 1.46x at 8 "
         "sequences and 1.07x at 32 with k 3; PERF.md)",
         "32");
}

std::string SpecSetup::describe() const {
  if (!proposer) return "none";
  return proposer->name() + ", k <= " + std::to_string(config.k_max) + ", off above batch " +
         std::to_string(config.off_batch);
}

int64_t draft_kv_tokens_for(int64_t ctx) {
  return std::max<int64_t>(ctx, 1) * 4;
}

SpecSetup make_spec(const Args& a, const Model& target, const BackendOptions& bo,
                    int64_t draft_kv_tokens) {
  const std::string cmd = "llm " + a.command() + ": ";
  SpecSetup s;
  const std::string draft_path = a.str("draft-model");
  std::string m = a.str("spec");
  if (m.empty()) m = !draft_path.empty() ? "draft" : a.has("draft-quant") ? "self" : "none";
  s.method = parse_spec_method(m);
  const int64_t k = a.i64("spec-k", 5), off = a.i64("spec-off-batch", 32);
  if (k < 1 || k > 64) throw Error(cmd + "--spec-k must be between 1 and 64");
  if (off < 0 || off > (1 << 20)) throw Error(cmd + "--spec-off-batch must not be negative");
  s.config.k_max = static_cast<int>(k);
  s.config.off_batch = static_cast<int>(off);
  if (s.method != SpecMethod::Draft && !draft_path.empty())
    throw Error(cmd + "--draft-model needs --spec draft (or no --spec)");
  if (s.method != SpecMethod::Self && a.has("draft-quant"))
    throw Error(cmd + "--draft-quant needs --spec self (or no --spec)");

  BackendOptions dbo = bo;
  dbo.kv_tokens = draft_kv_tokens;
  switch (s.method) {
    case SpecMethod::None:
      return s;
    case SpecMethod::Ngram:
      s.proposer = std::make_unique<NgramProposer>();
      break;
    case SpecMethod::Draft: {
      if (draft_path.empty()) throw Error(cmd + "--spec draft needs --draft-model FILE");
      auto dm = Model::load(draft_path);
      check_draft_vocab(target, *dm);
      auto be = make_backend(*dm, dbo);
      const std::string name = "draft model " + draft_path;
      s.proposer = std::make_unique<DraftModelProposer>(std::move(dm), std::move(be), name);
      break;
    }
    case SpecMethod::Self: {
      const std::string tname = a.str("draft-quant", "q4_0");
      const auto type = dtype_from_name(tname);
      if (!type) throw Error(cmd + "--draft-quant: unknown type '" + tname + "' (try q4_0, q8_0)");
      const auto t0 = std::chrono::steady_clock::now();
      auto dm = make_quantized_copy(target, *type, bo.n_threads);
      if (bo.verbose)
        std::fprintf(stderr,
                     "%sself-speculation: %s copy of the weights (%.1f MiB) made in %.2f s\n",
                     cmd.c_str(), dtype_name(*type),
                     static_cast<double>(dm->weight_bytes()) / (1024.0 * 1024),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      auto be = make_backend(*dm, dbo);
      const std::string name = std::string("self (") + dtype_name(*type) + " copy)";
      s.proposer = std::make_unique<DraftModelProposer>(std::move(dm), std::move(be), name);
      break;
    }
  }
  s.config.proposer = s.proposer.get();
  return s;
}

void print_spec_stats(std::FILE* f, const SpecSetup& s, const SpecStats& st) {
  if (!s.proposer) return;
  std::fprintf(f, "%-20s %s\n", "speculation:", s.describe().c_str());
  std::fprintf(f,
               "%-20s %6lld drafted, %lld accepted (%.1f %%), %.2f tokens per verifying step, "
               "%lld steps\n",
               "", static_cast<long long>(st.drafted), static_cast<long long>(st.accepted),
               100.0 * st.acceptance_rate(), st.tokens_per_step(),
               static_cast<long long>(st.verifications));
  if (st.off_batch_steps > 0)
    std::fprintf(f, "%-20s %lld steps without speculation (batch above %d)\n", "",
                 static_cast<long long>(st.off_batch_steps), s.config.off_batch);
  std::fprintf(f, "%-20s %.2f ms proposing\n", "", st.propose_s * 1e3);
}

}  // namespace llm
