#include "engine/draft_model.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

#include "engine/error.h"
#include "engine/tensor_stream.h"
#include "quant/mix.h"
#include "quant/quants.h"

namespace llm {

DraftModelProposer::DraftModelProposer(std::unique_ptr<Model> model,
                                       std::unique_ptr<Backend> backend, std::string name,
                                       int max_batch_tokens)
    : model_(std::move(model)),
      backend_(std::move(backend)),
      name_(std::move(name)),
      max_batch_tokens_(std::max(1, max_batch_tokens)),
      pool_(backend_->kv_blocks(), backend_->block_size(), /*enable_prefix_caching=*/false) {}

DraftModelProposer::~DraftModelProposer() {
  backend_.reset();  // before the model whose weights it uses
}

void DraftModelProposer::propose(std::vector<DraftRequest>& reqs) {
  run(reqs, nullptr);
}

void DraftModelProposer::propose_forced(std::vector<DraftRequest>& reqs,
                                        const std::vector<std::vector<int32_t>>& forced) {
  assert(forced.size() == reqs.size());
  run(reqs, &forced);
}

void DraftModelProposer::release(RequestId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  if (keep_finished_ > 0 && !it->second.cached.empty()) {
    kept_.push_back(std::move(it->second));
    if (kept_.size() > keep_finished_) drop_kept(0);
  } else {
    pool_.free(it->second.table);
  }
  seqs_.erase(it);
}

void DraftModelProposer::set_keep_finished(int n) {
  keep_finished_ = static_cast<size_t>(std::max(0, n));
  while (kept_.size() > keep_finished_) drop_kept(0);
}

int DraftModelProposer::kept_blocks() const {
  int n = 0;
  for (const SeqState& s : kept_) n += static_cast<int>(s.table.blocks.size());
  return n;
}

void DraftModelProposer::drop_kept(size_t i) {
  pool_.free(kept_[i].table);
  kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(i));
}

void DraftModelProposer::adopt(SeqState& st, const std::vector<int32_t>& tokens) {
  size_t best = kept_.size(), best_len = 0;
  for (size_t i = 0; i < kept_.size(); ++i) {
    const std::vector<int32_t>& c = kept_[i].cached;
    const size_t lim = std::min(c.size(), tokens.size());
    const size_t len = static_cast<size_t>(
        std::mismatch(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(lim), tokens.begin())
            .first -
        c.begin());
    if (len > best_len) {
      best = i;
      best_len = len;
    }
  }
  if (best == kept_.size()) return;
  st = std::move(kept_[best]);
  kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
}

void DraftModelProposer::truncate(SeqState& st, int n_tokens) {
  st.cached.resize(static_cast<size_t>(n_tokens));
  pool_.truncate(st.table, n_tokens);
}

bool DraftModelProposer::evict_one() {
  if (!kept_.empty()) {  // finished requests' states first, the oldest
    drop_kept(0);
    return true;
  }
  auto victim = seqs_.end();
  for (auto it = seqs_.begin(); it != seqs_.end(); ++it) {
    if (it->second.last_used == clock_ || it->second.table.empty()) continue;  // in this call
    if (victim == seqs_.end() || it->second.last_used < victim->second.last_used) victim = it;
  }
  if (victim == seqs_.end()) return false;
  pool_.free(victim->second.table);
  victim->second.cached.clear();
  return true;
}

void DraftModelProposer::forward(bool top1) {
  if (top1) {
    backend_->forward_candidates(batch_, 1, cand_);
  } else {
    logits_.resize(static_cast<size_t>(batch_.n_logits()) * model_->config.n_vocab);
    backend_->forward(batch_, logits_.data());
  }
  ++forwards_;
  rows_ += batch_.n_tokens();
}

namespace {

// One request being drafted in this call.
struct Job {
  size_t r;  // index in reqs
  const std::vector<int32_t>* tokens;
  int n;                           // tokens->size()
  int k;                           // guesses to make
  int pos;                         // next position to compute in the catch-up
  std::optional<Sampler> sampler;  // the target's, advanced over the guesses (penalties)
  bool greedy = true;
  std::unique_ptr<TokenConstraint> constraint;  // the target's grammar state, advanced too
};

}  // namespace

void DraftModelProposer::run(std::vector<DraftRequest>& reqs,
                             const std::vector<std::vector<int32_t>>* forced) {
  ++clock_;
  const int bs = pool_.block_size();
  const int V = model_->config.n_vocab;
  std::vector<Job> jobs;
  std::vector<SeqState*> states;
  for (size_t r = 0; r < reqs.size(); ++r) {
    DraftRequest& req = reqs[r];
    req.draft.clear();
    req.q.clear();
    int k = req.k;
    if (forced) k = std::min(k, static_cast<int>((*forced)[r].size()));
    if (k <= 0) continue;
    const std::vector<int32_t>& t = *req.tokens;
    const int n = static_cast<int>(t.size());
    auto [it, fresh] = seqs_.try_emplace(req.id);
    SeqState& st = it->second;
    if (fresh) adopt(st, t);
    if (fresh && req.sampler) st.rng = Xoshiro256(req.sampler->seed() ^ 0xd4af7ull);
    st.last_used = clock_;
    // Keep the K/V of the longest prefix still valid; the last token is always computed
    // again, its logits give the first guess.
    const size_t lim = std::min(st.cached.size(), t.size());
    int common = static_cast<int>(
        std::mismatch(st.cached.begin(), st.cached.begin() + lim, t.begin()).first -
        st.cached.begin());
    common = std::min(common, n - 1);
    truncate(st, common);
    // Positions [common, n + k - 1) get written: the catch-up, then guesses 1..k-1.
    while (k > 0 && !pool_.can_append(st.table, common, n + k - 1))
      if (!evict_one()) --k;
    if (k == 0) continue;
    std::vector<BlockCopy> copies;  // none: without prefix caching no block is shared
    pool_.append(st.table, common, n + k - 1, copies);
    assert(copies.empty());
    Job j{r, &t, n, k, common, std::nullopt, true, nullptr};
    if (req.sampler && !forced) {
      j.sampler.emplace(*req.sampler);
      j.greedy = req.sampler->params().temperature <= 0;
    }
    if (req.constraint && !forced) j.constraint = req.constraint->clone();
    jobs.push_back(std::move(j));
    states.push_back(&st);
  }
  if (jobs.empty()) return;

  // Where every choice is an argmax (forced guesses; greedy samplers without penalties,
  // bias or grammar), the backend selects on the device and returns one candidate a row
  // instead of whole logit rows (with greedy verification from candidates too: H100
  // replay 1.65x -> 1.74-1.76x; PERF.md, tenth session).
  bool top1 = true;
  for (const Job& j : jobs)
    top1 = top1 && (forced || (!j.constraint &&
                               (!j.sampler || (j.greedy && j.sampler->candidates_needed() > 0))));

  // The draft's choice at position i of the forward's logits (the row masked by the
  // grammar, if any). A position where nothing can be chosen ends that request's guesses.
  auto choose = [&](size_t ji, size_t i) {
    Job& j = jobs[ji];
    DraftRequest& req = reqs[j.r];
    const size_t g = req.draft.size();
    int32_t tok;
    try {
      if (forced) {
        tok = (*forced)[j.r][g];
      } else if (top1) {  // the sanitised argmax, lowest id on ties: what greedy picks
        if (!(cand_.row_logits(static_cast<int>(i))[0] > -std::numeric_limits<float>::infinity()))
          throw Error("draft: every token has probability zero");
        tok = cand_.row_ids(static_cast<int>(i))[0];
        if (j.sampler) j.sampler->accept(tok);
      } else {
        float* row = logits_.data() + i * static_cast<size_t>(V);
        if (j.constraint) j.constraint->mask(row);
        if (j.sampler) {
          TokenDist q = j.sampler->distribution(row);
          tok = j.greedy ? q.front().first : dist_sample(q, states[ji]->rng.uniform());
          j.sampler->accept(tok);
          if (!j.greedy) req.q.push_back(std::move(q));
        } else {
          tok = static_cast<int32_t>(std::max_element(row, row + V) - row);
        }
        if (j.constraint) j.constraint->accept(tok);
      }
    } catch (const Error&) {  // e.g. every token banned
      j.k = static_cast<int>(g);
      return;
    }
    req.draft.push_back(tok);
  };

  // Catch-up: rows [pos, n) of every job, in forwards of at most max_batch_tokens rows;
  // the row of position n - 1 gives the first guess.
  for (;;) {
    batch_.clear();
    std::vector<size_t> with_logits;
    int budget = max_batch_tokens_;
    std::vector<std::pair<size_t, int>> advanced;  // (job, rows)
    for (size_t ji = 0; ji < jobs.size() && budget > 0; ++ji) {
      Job& j = jobs[ji];
      if (j.pos >= j.n) continue;
      const int len = std::min(j.n - j.pos, budget);
      const bool last = j.pos + len == j.n;
      batch_.add_sequence(j.tokens->data() + j.pos, len, j.pos, states[ji]->table.blocks, bs, last);
      if (last) with_logits.push_back(ji);
      advanced.emplace_back(ji, len);
      budget -= len;
    }
    if (advanced.empty()) break;
    forward(top1);
    for (auto [ji, len] : advanced) jobs[ji].pos += len;
    for (size_t i = 0; i < with_logits.size(); ++i) choose(with_logits[i], i);
  }

  // Guesses 2..k: one row per job still guessing, at the position after its last guess.
  for (;;) {
    batch_.clear();
    std::vector<size_t> rows;
    for (size_t ji = 0; ji < jobs.size(); ++ji) {
      Job& j = jobs[ji];
      const std::vector<int32_t>& d = reqs[j.r].draft;
      if (static_cast<int>(d.size()) >= j.k) continue;
      const int32_t tok = d.back();
      batch_.add_sequence(&tok, 1, j.n + static_cast<int>(d.size()) - 1, states[ji]->table.blocks,
                          bs, true);
      rows.push_back(ji);
    }
    if (rows.empty()) break;
    forward(top1);
    for (size_t i = 0; i < rows.size(); ++i) choose(rows[i], i);
  }

  // What the cache now holds: the tokens, then every guess but the last.
  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    const Job& j = jobs[ji];
    const std::vector<int32_t>& d = reqs[j.r].draft;
    SeqState& st = *states[ji];
    st.cached.assign(j.tokens->begin(), j.tokens->end());
    if (!d.empty()) st.cached.insert(st.cached.end(), d.begin(), d.end() - 1);
  }
}

// --- vocabulary check ----------------------------------------------------------------

void check_draft_vocab(const Model& target, const Model& draft) {
  const std::string& dp = draft.file.path();
  const int tv = target.config.n_vocab, dv = draft.config.n_vocab;
  if (tv != dv)
    throw Error("draft model " + dp + " has a vocabulary of " + std::to_string(dv) +
                " tokens, the target " + std::to_string(tv) +
                ": a draft model must use the target's tokenizer");
  const auto tt = target.file.get_string_array("tokenizer.ggml.tokens");
  const auto dt = draft.file.get_string_array("tokenizer.ggml.tokens");
  if (tt.has_value() != dt.has_value())
    throw Error("draft model " + dp + (dt ? " has" : " has no") +
                " token list (tokenizer.ggml.tokens) and the target" + (tt ? " has" : " has not") +
                ": cannot tell whether they share a tokenizer");
  if (tt) {
    if (tt->size() != dt->size())
      throw Error("draft model " + dp + " lists " + std::to_string(dt->size()) +
                  " tokens, the target " + std::to_string(tt->size()) +
                  ": a draft model must use the target's tokenizer");
    for (size_t i = 0; i < tt->size(); ++i)
      if ((*tt)[i] != (*dt)[i])
        throw Error("draft model " + dp + " has another vocabulary than the target: token " +
                    std::to_string(i) + " is '" + std::string((*dt)[i]) + "' in the draft, '" +
                    std::string((*tt)[i]) + "' in the target");
  }
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    const auto a = target.file.get_int(key), b = draft.file.get_int(key);
    if (a && b && *a != *b)
      throw Error("draft model " + dp + " has " + key + " " + std::to_string(*b) + ", the target " +
                  std::to_string(*a) + ": a draft model must use the target's tokenizer");
  }
}

// --- self-speculation: a lower-bit copy of the target ---------------------------------

std::unique_ptr<Model> make_quantized_copy(const Model& target, DType type, int n_threads) {
  if (!quant_supported(type) || !traits(type).supported)
    throw Error(std::string("--draft-quant: cannot store weights as ") + dtype_name(type) +
                " (try q4_0, q8_0, q4_K)");
  const GgufFile& in = target.file;
  GgufWriter w;
  for (const GgufKV& kv : in.metadata()) {
    // The writer aligns to 32 bytes; the type keys and the name are set below.
    if (kv.key == "general.alignment" || kv.key == "general.file_type" ||
        kv.key == "general.quantization_version" || kv.key == "general.name")
      continue;
    w.copy_value(kv.key, kv.value);
  }
  w.set_string("general.name", target.config.name + " (" + dtype_name(type) + " self-draft)");
  if (traits(type).block_elems > 1) w.set_u32("general.quantization_version", 2);

  std::vector<TensorSource> out;
  for (const GgufTensor& t : in.tensors()) {
    TensorSource s;
    s.name = t.name;
    s.shape = t.shape;
    const int n_dims = static_cast<int>(t.shape.size());
    const bool fits = t.shape[0] % traits(type).block_elems == 0;
    s.type = n_dims >= 2 && tensor_is_quantizable(t.name, n_dims) && fits ? type : t.type;
    s.rows = dequantized_rows(t);
    out.push_back(std::move(s));
  }
  static std::atomic<int> counter{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  const std::string path = (dir / ("llm-self-draft-" + std::to_string(getpid()) + "-" +
                                   std::to_string(counter++) + ".gguf"))
                               .string();
  StreamOptions so;
  so.n_threads = n_threads;
  try {
    write_gguf_streamed(w, out, path, so);
  } catch (...) {
    std::remove(path.c_str());
    throw;
  }
  std::unique_ptr<Model> m;
  try {
    m = Model::load(path);
  } catch (...) {
    std::remove(path.c_str());
    throw;
  }
  std::remove(path.c_str());  // the mapping keeps the data while the model lives
  return m;
}

}  // namespace llm
