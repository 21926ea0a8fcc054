#include "engine/spec_decode.h"

#include <algorithm>
#include <cassert>
#include <chrono>

#include "engine/error.h"

namespace llm {

// --- distributions and the acceptance rule ------------------------------------------

double dist_prob(const TokenDist& d, int32_t id) {
  auto it =
      std::lower_bound(d.begin(), d.end(), id,
                       [](const std::pair<int32_t, double>& e, int32_t v) { return e.first < v; });
  return it != d.end() && it->first == id ? it->second : 0.0;
}

int32_t dist_sample(const TokenDist& d, double u) {
  assert(!d.empty());
  double total = 0;
  for (const auto& e : d) total += e.second;
  const double r = u * total;
  double cum = 0;
  int32_t last = d.front().first;
  for (const auto& [id, p] : d) {
    cum += p;
    if (p > 0) last = id;
    if (cum > r) return id;
  }
  return last;  // r rounded up to total
}

int32_t residual_sample(const TokenDist& p, const TokenDist* q, int32_t point, double u) {
  // max(0, p - q) over p's support: tokens outside it have p = 0, hence no residual.
  // One merge walk over the two ascending lists gives q at each of p's tokens.
  auto residual = [&](auto&& visit) {
    size_t j = 0;
    for (const auto& [id, pv] : p) {
      double qv = 0;
      if (q) {
        while (j < q->size() && (*q)[j].first < id) ++j;
        if (j < q->size() && (*q)[j].first == id) qv = (*q)[j].second;
      } else if (id == point) {
        qv = 1.0;
      }
      if (visit(id, std::max(0.0, pv - qv))) return true;
    }
    return false;
  };
  double total = 0;
  residual([&](int32_t, double r) {
    total += r;
    return false;
  });
  if (!(total > 0)) return dist_sample(p, u);  // p == q: a rejection cannot really happen
  const double target = u * total;
  double cum = 0;
  int32_t chosen = -1, last = -1;
  residual([&](int32_t id, double r) {
    if (r <= 0) return false;
    cum += r;
    last = id;
    if (cum > target) {
      chosen = id;
      return true;
    }
    return false;
  });
  return chosen >= 0 ? chosen : last;
}

SpecVerdict speculative_step(const TokenDist& p, const TokenDist* q, int32_t d, Xoshiro256& rng) {
  const double pd = dist_prob(p, d);
  const double qd = q ? dist_prob(*q, d) : 1.0;
  // Accept with probability min(1, p/q), without dividing: u < p/q  <=>  u q < p.
  if (rng.uniform() * qd < pd) return {d, true};
  return {residual_sample(p, q, d, rng.uniform()), false};
}

// --- n-gram proposer ------------------------------------------------------------------

NgramProposer::NgramProposer(int min_n, int max_n) : min_n_(min_n), max_n_(max_n) {
  if (min_n < 1 || max_n < min_n) throw Error("ngram speculation: need 1 <= min_n <= max_n");
}

std::vector<int32_t> NgramProposer::lookup(const std::vector<int32_t>& t, int k) const {
  const int n = static_cast<int>(t.size());
  for (int m = std::min(max_n_, n - 1); m >= min_n_; --m) {
    const int32_t* suffix = t.data() + (n - m);
    // The most recent earlier occurrence: a start i with i + m <= n - 1, so that at least
    // one token follows it.
    for (int i = n - m - 1; i >= 0; --i) {
      if (!std::equal(suffix, suffix + m, t.data() + i)) continue;
      const int from = i + m, to = std::min(n, from + k);
      return std::vector<int32_t>(t.begin() + from, t.begin() + to);
    }
  }
  return {};
}

void NgramProposer::propose(std::vector<DraftRequest>& reqs) {
  for (DraftRequest& r : reqs) {
    r.draft = lookup(*r.tokens, r.k);
    r.q.clear();  // deterministic guesses
  }
}

// --- configuration --------------------------------------------------------------------

const char* to_string(SpecMethod m) {
  switch (m) {
    case SpecMethod::None:
      return "none";
    case SpecMethod::Draft:
      return "draft";
    case SpecMethod::Ngram:
      return "ngram";
    case SpecMethod::Self:
      return "self";
  }
  return "";
}

SpecMethod parse_spec_method(const std::string& s) {
  if (s == "none") return SpecMethod::None;
  if (s == "draft") return SpecMethod::Draft;
  if (s == "ngram") return SpecMethod::Ngram;
  if (s == "self") return SpecMethod::Self;
  throw Error("unknown speculation method '" + s + "' (expected none, draft, ngram or self)");
}

// --- SpecDecoder ----------------------------------------------------------------------

namespace {
constexpr double kDecay = 0.8;  // weight of the past in the acceptance estimate, per step
constexpr uint64_t kSeedSalt = 0x5bec0dedecade5ull;
}  // namespace

SpecDecoder::SpecDecoder(const SpecConfig& cfg, int n_vocab) : cfg_(cfg), n_vocab_(n_vocab) {
  if (cfg_.k_max < 1 || cfg_.k_max > 64) throw Error("--spec-k must be between 1 and 64");
  if (cfg_.off_batch < 0) throw Error("--spec-off-batch must not be negative");
  if (cfg_.probe_interval < 1) cfg_.probe_interval = 1;
}

int SpecDecoder::choose_k(SeqState& st, int n_seqs) {
  if (!cfg_.adaptive) return cfg_.k_max;
  const int k = best_k(st.hits / st.tries, cost_, cfg_, n_seqs);
  if (k > 0) {
    st.idle = 0;
    return k;
  }
  if (++st.idle >= cfg_.probe_interval) {  // look again: the text may have changed
    st.idle = 0;
    return 1;
  }
  return 0;
}

double verify_cost(const SpecConfig& cfg, int n_seqs) {
  return cfg.verify_cost + cfg.verify_cost_per_seq * std::max(n_seqs, 1);
}

int best_k(double alpha, double cost, const SpecConfig& cfg, int n_seqs) {
  const double a = std::clamp(alpha, 0.0, 1.0);
  const double per_guess = std::max(cost, 0.0) + verify_cost(cfg, n_seqs);
  // Guesses 1..k all accepted with chance a^k: expected tokens per verification
  // 1 + a + ... + a^k, for a time of 1 (the target step) + k (cost + verify cost).
  double best = 1.0 + cfg.min_gain, tokens = 1.0, ak = 1.0;
  int k_best = 0;
  for (int k = 1; k <= cfg.k_max; ++k) {
    ak *= a;
    tokens += ak;
    const double rate = tokens / (1.0 + k * per_guess);
    if (rate > best) {
      best = rate;
      k_best = k;
    }
  }
  return k_best;
}

bool SpecDecoder::plan(ScheduleOutput& out, const std::vector<Sampler*>& samplers,
                       const std::vector<TokenConstraint*>& constraints, BlockPool& pool,
                       int token_budget, int max_model_len) {
  assert(samplers.size() == out.seqs.size() && constraints.size() == out.seqs.size());
  cur_.assign(out.seqs.size(), Cur{});
  last_k_ = 0;
  if (!cfg_.proposer) return false;
  int n_decoding = 0;
  for (const ScheduledSeq& s : out.seqs) n_decoding += s.sample && s.n_tokens == 1 ? 1 : 0;
  if (n_decoding == 0) return false;
  if (n_decoding > cfg_.off_batch) {
    ++stats_.off_batch_steps;
    return false;
  }

  std::vector<DraftRequest> reqs;
  std::vector<int> seq_of;  // (reqs.size()) index into out.seqs
  int budget = token_budget;
  bool first_time = false;  // a sequence new to the proposer (a draft model prefills it)
  for (size_t i = 0; i < out.seqs.size(); ++i) {
    const ScheduledSeq& s = out.seqs[i];
    if (!s.sample || s.n_tokens != 1) continue;
    const Sequence& q = *s.seq;
    auto [it, fresh] = seqs_.try_emplace(q.id);
    SeqState& st = it->second;
    if (fresh) st.rng = Xoshiro256(samplers[i]->seed() ^ kSeedSalt);
    cur_[i].st = &st;
    int k = choose_k(st, n_decoding);
    // Tokens past max_tokens would be thrown away; positions past max_model_len must not
    // be written. The verified step yields up to k + 1 tokens.
    k = std::min(
        {k, q.stop.max_tokens - q.num_generated() - 1, max_model_len - q.num_tokens(), budget});
    if (k <= 0) continue;
    budget -= k;
    DraftRequest r;
    r.id = q.id;
    r.tokens = &q.tokens;
    r.k = k;
    r.sampler = samplers[i];
    r.constraint = constraints[i];
    reqs.push_back(std::move(r));
    seq_of.push_back(static_cast<int>(i));
    first_time = first_time || fresh;
  }
  if (reqs.empty()) return false;
  last_n_ = n_decoding;

  const auto t0 = std::chrono::steady_clock::now();
  cfg_.proposer->propose(reqs);
  last_propose_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.propose_s += last_propose_s_;

  bool any = false;
  for (size_t r = 0; r < reqs.size(); ++r) {
    DraftRequest& dr = reqs[r];
    const int i = seq_of[r];
    Sequence& q = *out.seqs[static_cast<size_t>(i)].seq;
    std::vector<int32_t>& d = dr.draft;
    // A proposer's guesses are untrusted in number and range: keep the valid prefix.
    if (static_cast<int>(d.size()) > dr.k) d.resize(static_cast<size_t>(dr.k));
    for (size_t j = 0; j < d.size(); ++j)
      if (d[j] < 0 || d[j] >= n_vocab_) d.resize(j);
    if (!dr.q.empty() && dr.q.size() < d.size()) d.resize(dr.q.size());
    // Draft positions take free blocks only: the scheduler already gave position
    // num_computed its block, and drafts never preempt.
    const int from = q.num_computed + 1;
    while (!d.empty() && !pool.can_append(q.table, from, from + static_cast<int>(d.size())))
      d.pop_back();
    if (d.empty()) continue;
    pool.append(q.table, from, from + static_cast<int>(d.size()), out.copies);
    Cur& c = cur_[static_cast<size_t>(i)];
    last_k_ = std::max(last_k_, static_cast<int>(d.size()));
    if (!dr.q.empty()) {
      dr.q.resize(d.size());
      c.q = std::move(dr.q);
    }
    c.draft = std::move(d);
    any = true;
  }
  if (any) ++stats_.steps;
  // A step whose proposals include a draft model's prefill of a new prompt says nothing
  // about the cost of a guess.
  if (first_time) last_k_ = 0;
  return any;
}

void SpecDecoder::fill_batch(const ScheduleOutput& out, Batch& batch, int block_size) {
  batch.clear();
  for (const ScheduledSeq& s : out.seqs)
    batch.max_blocks = std::max(batch.max_blocks, static_cast<int>(s.seq->table.blocks.size()));
  batch.block_tables.reserve(out.seqs.size() * static_cast<size_t>(batch.max_blocks));
  std::vector<int32_t> rows;
  for (size_t i = 0; i < out.seqs.size(); ++i) {
    const ScheduledSeq& s = out.seqs[i];
    const Sequence& q = *s.seq;
    Cur& c = cur_[i];
    c.logit_row = batch.n_logits();
    if (c.draft.empty()) {
      batch.add_sequence(q.tokens.data() + q.num_computed, s.n_tokens, q.num_computed,
                         q.table.blocks, block_size, s.sample);
      continue;
    }
    // [last, d1 .. dk] at positions num_computed.., every row scored.
    rows.assign(1, q.tokens[static_cast<size_t>(q.num_computed)]);
    rows.insert(rows.end(), c.draft.begin(), c.draft.end());
    const int first_row = batch.n_tokens();
    batch.add_sequence(rows.data(), static_cast<int>(rows.size()), q.num_computed, q.table.blocks,
                       block_size, false);
    for (int r = 0; r < static_cast<int>(rows.size()); ++r)
      batch.logit_rows.push_back(first_row + r);
  }
}

// Rows 0..k of a verification: step(j, last) gives row j's token (and whether it ends
// the run), which the constraint and the sampler then accept.
template <typename Step>
std::vector<SampleResult> SpecDecoder::verify_rows(Cur& c, Sampler& sampler,
                                                   TokenConstraint* constraint, const Step& step) {
  const int k = static_cast<int>(c.draft.size());
  std::vector<SampleResult> out;
  int accepted = 0;
  for (int j = 0; j <= k; ++j) {
    bool last = true;
    SampleResult r = step(j, last);
    if (constraint) constraint->accept(r.id);
    sampler.accept(r.id);
    out.push_back(std::move(r));
    if (last) break;
    ++accepted;
  }
  note_verdict(c, accepted, k);
  return out;
}

std::vector<SampleResult> SpecDecoder::verify(int i, Sampler& sampler, TokenConstraint* constraint,
                                              float* logits) {
  Cur& c = cur_[static_cast<size_t>(i)];
  const int k = static_cast<int>(c.draft.size());
  const bool greedy = sampler.params().temperature <= 0;
  return verify_rows(c, sampler, constraint, [&](int j, bool& last) {
    float* row = logits + static_cast<size_t>(j) * n_vocab_;
    // A guess the grammar refuses gets probability 0 here, so it is never kept.
    if (constraint) constraint->mask(row);
    if (greedy) {
      // The target's own choice, computed as without speculation; a draft survives by
      // being that choice.
      SampleResult r = sampler.sample(row);
      last = j == k || r.id != c.draft[static_cast<size_t>(j)];
      return r;
    }
    const TokenDist p = sampler.distribution(row);
    int32_t tok;
    if (j < k) {
      const TokenDist* q = c.q.empty() ? nullptr : &c.q[static_cast<size_t>(j)];
      const SpecVerdict v = speculative_step(p, q, c.draft[static_cast<size_t>(j)], c.st->rng);
      tok = v.token;
      last = !v.accepted;
    } else {
      tok = dist_sample(p, c.st->rng.uniform());  // the bonus token, from p alone
      last = true;
    }
    return sampler.score(row, tok);
  });
}

std::vector<SampleResult> SpecDecoder::verify_candidates(int i, Sampler& sampler,
                                                         const LogitCandidates& cand, int row0) {
  assert(sampler.params().temperature <= 0);
  Cur& c = cur_[static_cast<size_t>(i)];
  const int k = static_cast<int>(c.draft.size());
  return verify_rows(c, sampler, nullptr, [&](int j, bool& last) {
    const int row = row0 + j;
    SampleResult r = sampler.sample_candidates(cand.row_ids(row), cand.row_logits(row), cand.k,
                                               cand.stats[static_cast<size_t>(row)]);
    last = j == k || r.id != c.draft[static_cast<size_t>(j)];
    return r;
  });
}

void SpecDecoder::note_verdict(Cur& c, int accepted, int k) {
  c.n_accepted = accepted;
  // Positions tried: the accepted ones and the first rejected one, if any.
  c.st->hits = kDecay * c.st->hits + accepted;
  c.st->tries = kDecay * c.st->tries + std::min(accepted + 1, k);
}

void SpecDecoder::commit(int i, Sequence* seq, BlockPool& pool) {
  const Cur& c = cur_[static_cast<size_t>(i)];
  ++stats_.verifications;
  stats_.drafted += static_cast<int64_t>(c.draft.size());
  stats_.accepted += c.n_accepted;
  if (!seq) return;  // finished in this step: its blocks are already freed
  // Scheduler::update counted the row of the last token; the accepted drafts' rows hold
  // valid K/V too. The token emitted after them has none yet (the next step computes it).
  seq->num_computed += c.n_accepted;
  assert(seq->num_computed == seq->num_tokens() - 1);
  pool.cache_full_blocks(seq->table, seq->tokens.data(), seq->num_computed);
  // Roll back the rejected positions: give back the blocks past the computed ones.
  pool.truncate(seq->table, seq->num_computed);
}

void SpecDecoder::observe_forward(double seconds) {
  if (last_k_ <= 0 || !(seconds > 0)) return;
  // The step verified up to last_k_ guesses a sequence: the step without them is
  // seconds / r(last_k_) by the model of best_k. Capped: a guess dearer than a target step
  // is not worth making anyway, and one slow step (a draft catching up after eviction)
  // must not silence speculation for long.
  const double r = 1.0 + last_k_ * verify_cost(cfg_, last_n_);
  const double sample = std::min(2.0, last_propose_s_ * r / (last_k_ * seconds));
  cost_ = cost_ == 0 ? sample : 0.8 * cost_ + 0.2 * sample;
  last_k_ = 0;
}

void SpecDecoder::release(RequestId id) {
  seqs_.erase(id);
  if (cfg_.proposer) cfg_.proposer->release(id);
}

}  // namespace llm
