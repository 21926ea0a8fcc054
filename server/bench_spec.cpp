#include "server/bench_spec.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/draft_model.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/topk.h"
#include "server/op_profile.h"

#ifdef LLM_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

namespace llm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Sequences 0..n_seqs-1 with `ctx` positions of random tokens in the backend's cache, each
// in its own blocks, for timing forwards of m new positions per sequence.
class ForwardTimer {
 public:
  ForwardTimer(Backend& be, int n_seqs, int ctx, int max_new, int vocab, uint64_t seed)
      : be_(be), ctx_(ctx), vocab_(vocab) {
    const int bs = be.block_size();
    const int nb = (ctx + max_new + bs - 1) / bs;
    if (static_cast<int64_t>(n_seqs) * nb > be.kv_blocks())
      throw Error("bench: the KV cache is too small for the timing sequences");
    std::mt19937_64 g(seed);
    for (int s = 0; s < n_seqs; ++s) {
      std::vector<int32_t> blocks(static_cast<size_t>(nb));
      std::iota(blocks.begin(), blocks.end(), s * nb);
      tables_.push_back(blocks);
      std::vector<int32_t> toks(static_cast<size_t>(ctx));
      for (int32_t& t : toks) t = static_cast<int32_t>(3 + g() % static_cast<uint64_t>(vocab - 3));
      for (int pos = 0; pos < ctx; pos += 512) {  // prefill in chunks
        const int len = std::min(512, ctx - pos);
        Batch b;
        b.add_sequence(toks.data() + pos, len, pos, blocks, bs, true);
        std::vector<float> logits(static_cast<size_t>(be.config().n_vocab));
        be.forward(b, logits.data());
      }
    }
  }

  // Median seconds of one forward of n_seqs sequences x m positions (ctx..ctx+m-1), with
  // the best candidate of every row, as a greedy verification (and a greedy draft) asks.
  double time(int n_seqs, int m, int reps) {
    const Batch b = batch(n_seqs, m);
    LogitCandidates cand;
    for (int i = 0; i < 2; ++i) be_.forward_candidates(b, 1, cand);  // warm-up (graphs, caches)
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = Clock::now();
      be_.forward_candidates(b, 1, cand);
      t.push_back(seconds_since(t0));
    }
    return median(t);
  }

  // The same forward `times` times, untimed (a profiler measures them).
  void run(int n_seqs, int m, int times) {
    const Batch b = batch(n_seqs, m);
    LogitCandidates cand;
    for (int i = 0; i < times; ++i) be_.forward_candidates(b, 1, cand);
  }

 private:
  Batch batch(int n_seqs, int m) const {
    Batch b;
    std::vector<int32_t> toks(static_cast<size_t>(m));
    for (int i = 0; i < m; ++i) toks[static_cast<size_t>(i)] = 3 + (17 * i) % (vocab_ - 3);
    for (int s = 0; s < n_seqs; ++s) {
      const int first = b.n_tokens();
      b.add_sequence(toks.data(), m, ctx_, tables_[static_cast<size_t>(s)], be_.block_size(),
                     false);
      for (int r = 0; r < m; ++r) b.logit_rows.push_back(first + r);
    }
    return b;
  }

  Backend& be_;
  int ctx_, vocab_;
  std::vector<std::vector<int32_t>> tables_;
};

// The benchmark's proposer (never a serving option): guesses the target's own greedy
// continuation recorded in an earlier pass, each guess kept with probability alpha and
// otherwise replaced by a wrong token, so that acceptance is whatever alpha says; without
// a recording every guess is wrong. With a cost model, that draft model runs on the same
// guesses (DraftModelProposer::propose_forced), for its real cost.
class ReplayProposer : public Proposer {
 public:
  ReplayProposer(double alpha, int n_vocab, int n_prompt, DraftModelProposer* cost, uint64_t seed)
      : alpha_(alpha), n_vocab_(n_vocab), n_prompt_(n_prompt), cost_(cost), rng_(seed) {}
  std::string name() const override { return "replay (benchmark harness)"; }

  // The whole recorded sequence (prompt + continuation) of one prompt.
  void record(const std::vector<int32_t>& full) {
    recs_[std::vector<int32_t>(full.begin(), full.begin() + n_prompt_)] = full;
  }

  void propose(std::vector<DraftRequest>& reqs) override {
    std::vector<std::vector<int32_t>> guesses(reqs.size());
    for (size_t r = 0; r < reqs.size(); ++r) {
      const std::vector<int32_t>& t = *reqs[r].tokens;
      const std::vector<int32_t>* rec = nullptr;
      if (static_cast<int>(t.size()) >= n_prompt_) {
        auto it = recs_.find(std::vector<int32_t>(t.begin(), t.begin() + n_prompt_));
        if (it != recs_.end()) rec = &it->second;
      }
      for (int j = 0; j < reqs[r].k; ++j) {
        const size_t pos = t.size() + static_cast<size_t>(j);
        int32_t g;
        if (rec && pos < rec->size()) {
          const int32_t truth = (*rec)[pos];
          g = rng_.uniform() < alpha_ ? truth : (truth + 1) % n_vocab_;
        } else {
          g = (t.back() + 1 + j) % n_vocab_;
        }
        guesses[r].push_back(g);
      }
    }
    if (cost_) {
      cost_->propose_forced(reqs, guesses);
    } else {
      for (size_t r = 0; r < reqs.size(); ++r) reqs[r].draft = guesses[r];
    }
    for (DraftRequest& r : reqs) r.q.clear();  // deterministic guesses
  }
  void release(RequestId id) override {
    if (cost_) cost_->release(id);
  }

 private:
  double alpha_;
  int n_vocab_, n_prompt_;
  DraftModelProposer* cost_;
  Xoshiro256 rng_;
  std::map<std::vector<int32_t>, std::vector<int32_t>> recs_;
};

struct Pass {
  std::vector<std::vector<int32_t>> tokens;  // per request
  double tpot = 0;                           // mean over requests, seconds
  double wall = 0;                           // the timed generate_all
  SpecStats spec;
};

// Mean accepted guesses per verification a = α(1 - α^k)/(1 - α) when each guess is right
// with probability α independently: solved for α.
double alpha_from_mean(double a, int k) {
  if (a <= 0) return 0;
  if (a >= k) return 1;
  double lo = 0, hi = 1;
  for (int i = 0; i < 60; ++i) {
    const double x = 0.5 * (lo + hi);
    const double f = x * (1 - std::pow(x, k)) / (1 - x);
    (f < a ? lo : hi) = x;
  }
  return 0.5 * (lo + hi);
}

double ideal_speedup(double alpha, double c, int k, double r) {
  const double tokens = alpha >= 1 ? k + 1 : (1 - std::pow(alpha, k + 1)) / (1 - alpha);
  return tokens / (c * k + r);
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      v.push_back(std::stoi(item));
    } catch (...) {
      throw Error("bench: --spec-batches expects numbers separated by commas, got '" + s + "'");
    }
    if (v.back() < 1 || v.back() > 1024) throw Error("bench: batch sizes must be in 1..1024");
  }
  if (v.empty()) throw Error("bench: --spec-batches is empty");
  return v;
}

}  // namespace

void add_bench_spec_flags(Args& a) {
  a.flag("--spec-bench", "",
         "speculative decoding harness: r(k) (and c with --draft-model) at each batch");
  a.flag("--spec-replay", "ALPHA",
         "also end to end with a replay proposer (benchmark harness only) that guesses the "
         "target's own continuation, each guess right with probability ALPHA");
  a.flag("--draft-model", "FILE",
         "a draft-shaped model: c, and the cost of drafting in the replay");
  a.flag("--spec-k", "N", "draft tokens per step (r(k) for k = 1..N; k of the replay)", "8");
  a.flag("--spec-adaptive", "",
         "the replay picks k per sequence as serving does (at most --spec-k), instead of always "
         "--spec-k. On a GPU a forward over another number of rows may round differently, and "
         "random weights' greedy text then leaves the recording: acceptance falls below ALPHA "
         "(compare fixed k values there)");
  a.flag("--spec-batches", "LIST", "batch sizes", "1,8,32");
  a.flag("--spec-cold-draft", "",
         "the replay's draft model meets each prompt inside the timed pass (a first turn: its "
         "prompt processing counts), instead of keeping the K/V of the untimed pass that cached "
         "the prompts, as it does for a request that starts with a finished one's tokens");
}

bool bench_spec_requested(const Args& a) {
  return a.on("spec-bench") || a.has("spec-replay");
}

int run_bench_spec(const Args& a, BackendOptions opt) {
  const std::string path = a.str("model");
  const int ctx = static_cast<int>(a.i64("n-prompt", 512));
  const int n_gen = static_cast<int>(a.i64("n-gen", 128));
  const int reps = std::max(10, 3 * static_cast<int>(a.i64("repetitions", 3)));
  const int K = static_cast<int>(a.i64("spec-k", 8));
  const std::vector<int> batches = parse_list(a.str("spec-batches", "1,8,32"));
  const bool replay = a.has("spec-replay");
  const bool adaptive = a.on("spec-adaptive");
  const bool cold_draft = a.on("spec-cold-draft");
  const double alpha = a.f64("spec-replay", 0.8);
  if (ctx < 1 || n_gen < 2 || K < 1 || K > 32)
    throw Error("bench: the speculation harness needs -p >= 1, -n >= 2 and --spec-k in 1..32");
  if (replay && !(alpha >= 0 && alpha <= 1))
    throw Error("bench: --spec-replay ALPHA must be in [0, 1]");
  const int max_b = *std::max_element(batches.begin(), batches.end());

  auto model = Model::load(path);
  const int V = model->config.n_vocab;
  // Room for every sequence of the largest batch: its context, generation and guesses.
  const int64_t per_seq = ctx + n_gen + K + 32;
  opt.kv_tokens = max_b * per_seq;
  std::unique_ptr<DraftModelProposer> draft;
  const std::string draft_path = a.str("draft-model");
  if (!draft_path.empty()) {
    auto dm = Model::load(draft_path);
    if (dm->config.n_vocab < V)
      throw Error("bench: the draft model's vocabulary (" + std::to_string(dm->config.n_vocab) +
                  ") does not cover the target's (" + std::to_string(V) +
                  "); pick a draft shape with at least as many tokens");
    BackendOptions dopt = opt;
    auto be = make_backend(*dm, dopt);  // the draft first: CUDA's target KV takes the rest
    draft = std::make_unique<DraftModelProposer>(std::move(dm), std::move(be), draft_path);
    // Every sequence of the untimed pass kept for its timed twin (or none: cold).
    draft->set_keep_finished(cold_draft ? 0 : std::max(64, max_b));
  }
  auto target = make_backend(*model, opt);

  std::printf("speculative decoding factors (a benchmark harness): %s on %s\n", path.c_str(),
              target->name().c_str());
  if (draft) std::printf("draft: %s\n", draft_path.c_str());
  std::printf("context %d positions per sequence; median of %d forwards\n\n", ctx, reps);

  // r(k): verification cost.
  std::map<int, std::vector<double>> r;  // batch -> r(1..K), index k
  std::map<int, double> t1, c;
  {
    ForwardTimer timer(*target, max_b, ctx, K + 1, V, 1);
    std::printf(
        "r(k) = time of one target forward over k+1 positions / over 1 position, per sequence\n");
    std::printf("| batch | t(1) ms |");
    for (int k = 1; k <= K; ++k) std::printf(" r(%d) |", k);
    std::printf("\n|-------|---------|");
    for (int k = 1; k <= K; ++k) std::printf("------|");
    std::printf("\n");
    for (int b : batches) {
      t1[b] = timer.time(b, 1, reps);
      r[b].assign(static_cast<size_t>(K) + 1, 1.0);
      std::printf("| %5d | %7.3f |", b, t1[b] * 1e3);
      for (int k = 1; k <= K; ++k) {
        r[b][static_cast<size_t>(k)] = timer.time(b, k + 1, reps) / t1[b];
        std::printf(" %4.2f |", r[b][static_cast<size_t>(k)]);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
#ifdef LLM_HAVE_CUDA
    // --profile: where the time of the forwards behind r(K-1) and r(K) goes, batch 1.
    auto* cb = dynamic_cast<cuda::CudaBackend*>(target.get());
    if (a.on("profile") && cb) {
      for (int m : {K, K + 1}) {
        cb->set_profiling(true);
        timer.run(1, m, reps);
        const std::string what =
            "a target forward over " + std::to_string(m) + " positions (batch 1)";
        print_op_profile(*model, cb->profile(), reps, what.c_str());
        cb->set_profiling(false);
      }
    }
#endif
  }
  if (draft) {
    ForwardTimer timer(draft->backend(), max_b, ctx, K + 1, V, 2);
    std::printf("\nc = draft step / target step (one position per sequence)\n");
    std::printf(
        "| batch | target ms | draft ms |    c  |\n|-------|-----------|----------|-------|\n");
    for (int b : batches) {
      const double td = timer.time(b, 1, reps);
      c[b] = td / t1[b];
      std::printf("| %5d | %9.3f | %8.3f | %5.3f |\n", b, t1[b] * 1e3, td * 1e3, c[b]);
    }
    std::fflush(stdout);
  }
  if (!replay) return 0;

  // End to end: the target alone, a recording pass, the replay.
  std::printf(
      "\nreplay: alpha %.2f, k %s%d, %d tokens per sequence after a %d-token prompt (prefix "
      "cached); speed-up = TPOT of the target alone / TPOT with speculation\n",
      alpha, adaptive ? "adaptive, at most " : "", K, n_gen, ctx);
  std::printf(
      "| batch | alone ms/tok | spec ms/tok | speed-up |     k | tok/step | alpha meas. | ideal | "
      "%% of ideal | ideal(meas.) | %% | same output |\n");
  std::printf(
      "|-------|--------------|-------------|----------|-------|----------|-------------|-------|--"
      "-"
      "---------|--------------|----|-------------|\n");
  for (int b : batches) {
    std::mt19937_64 g(100 + static_cast<uint64_t>(b));
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(b));
    for (auto& p : prompts) {
      p.push_back(1);
      while (static_cast<int>(p.size()) < ctx)
        p.push_back(static_cast<int32_t>(3 + g() % static_cast<uint64_t>(V - 3)));
    }
    auto run_pass = [&](Proposer* prop, bool adapt) {
      EngineConfig cfg;
      cfg.sched.max_num_seqs = std::max(256, b);
      cfg.spec.proposer = prop;
      cfg.spec.k_max = K;
      cfg.spec.adaptive = adapt;
      cfg.spec.off_batch = 1 << 20;
      Engine e(*target, cfg);
      std::vector<Request> reqs;
      for (const auto& p : prompts) {
        Request q;
        q.prompt = p;
        q.sampling.temperature = 0;
        q.stop.ignore_eos = true;
        // Two tokens: one step speculates, so a draft model processes the prompt too.
        q.stop.max_tokens = 2;
        reqs.push_back(q);
      }
      e.generate_all(reqs);  // the prompts' full blocks into the prefix cache
      const SpecStats before = e.metrics().spec;
      for (Request& q : reqs) q.stop.max_tokens = n_gen;
      const auto t0 = Clock::now();
      const std::vector<GenerationResult> res = e.generate_all(reqs);
      Pass out;
      out.wall = seconds_since(t0);
      for (const GenerationResult& x : res) {
        out.tokens.push_back(x.tokens);
        out.tpot += x.stats.tpot / static_cast<double>(res.size());
      }
      const SpecStats& after = e.metrics().spec;
      out.spec.drafted = after.drafted - before.drafted;
      out.spec.accepted = after.accepted - before.accepted;
      out.spec.verifications = after.verifications - before.verifications;
      return out;
    };
    const Pass alone = run_pass(nullptr, false);
    // The recording: every guess wrong, so each step verifies k+1 positions and keeps the
    // target's own token; its arithmetic is the replay's (on a GPU, a forward over k+1
    // rows may round differently from one over 1, and free-running greedy output of
    // random weights follows the rounding).
    ReplayProposer junk(0.0, V, ctx, nullptr, 7);
    const Pass rec = run_pass(&junk, false);
    ReplayProposer rp(alpha, V, ctx, draft.get(), 11);
    for (int i = 0; i < b; ++i) {
      std::vector<int32_t> full = prompts[static_cast<size_t>(i)];
      full.insert(full.end(), rec.tokens[static_cast<size_t>(i)].begin(),
                  rec.tokens[static_cast<size_t>(i)].end());
      rp.record(full);
    }
    const Pass spec = run_pass(&rp, adaptive);
    int same = 0;
    for (int i = 0; i < b; ++i)
      same += spec.tokens[static_cast<size_t>(i)] == rec.tokens[static_cast<size_t>(i)];
    const double speedup = alone.tpot / spec.tpot;
    const double cb = draft ? c[b] : 0.0;
    const double mean_acc =
        spec.spec.verifications ? double(spec.spec.accepted) / spec.spec.verifications : 0;
    const double mean_k =
        spec.spec.verifications ? double(spec.spec.drafted) / spec.spec.verifications : 0;
    // Adaptive: the ideal of the best k for these c and r(k), and alpha from the k it used.
    int k_ideal = K;
    if (adaptive)
      for (int k = 1; k < K; ++k)
        if (ideal_speedup(alpha, cb, k, r[b][static_cast<size_t>(k)]) >
            ideal_speedup(alpha, cb, k_ideal, r[b][static_cast<size_t>(k_ideal)]))
          k_ideal = k;
    const int k_used = adaptive ? std::clamp(static_cast<int>(std::lround(mean_k)), 1, K) : K;
    const double a_meas = alpha_from_mean(mean_acc, k_used);
    const double ideal = ideal_speedup(alpha, cb, k_ideal, r[b][static_cast<size_t>(k_ideal)]),
                 ideal_m = ideal_speedup(a_meas, cb, k_used, r[b][static_cast<size_t>(k_used)]);
    std::printf(
        "| %5d | %12.3f | %11.3f | %7.2fx | %5.2f | %8.2f | %11.3f | %5.2f | %9.0f%% | %12.2f | "
        "%3.0f%% | %5d/%-5d |\n",
        b, alone.tpot * 1e3, spec.tpot * 1e3, speedup, mean_k, spec.spec.tokens_per_step(), a_meas,
        ideal, 100 * speedup / ideal, ideal_m, 100 * speedup / ideal_m, same, b);
    std::fflush(stdout);
  }
  std::printf(
      "\nk: guesses per verification (mean). ideal = (1 - a^(k+1)) / ((1 - a)(c*k + r(k))) with c "
      "(0 "
      "without --draft-model) and r(k) measured above at the same batch (--spec-adaptive: the "
      "best k's; ideal(meas.) at the k used). In serving, speculation turns itself off in steps "
      "with "
      "more than --spec-off-batch decoding sequences (default 32): set it below the first batch "
      "whose speed-up falls under 1.\n");
  return 0;
}

}  // namespace llm
