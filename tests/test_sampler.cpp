// The reference sampler against independent computations: argmax, log-softmax in double,
// hand-made distributions whose top-p / min-p survivors are known, chi-square tests of
// empirical frequencies, and published xoshiro256** / splitmix64 outputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "engine/error.h"
#include "engine/sampler.h"

using namespace llm;

// Timing bounds do not apply to ASan builds (an order of magnitude slower).
#if defined(__SANITIZE_ADDRESS__)
#define LLM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LLM_SANITIZED 1
#endif
#endif
#ifndef LLM_SANITIZED
#define LLM_SANITIZED 0
#endif

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams plain(float temperature = 1.0f, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

std::vector<float> random_logits(size_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

int argmax_lowest(const std::vector<float>& v) {
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int>(i);
  return best;
}

std::vector<double> log_softmax(const std::vector<double>& l) {
  double mx = *std::max_element(l.begin(), l.end());
  double s = 0;
  for (double x : l) s += std::exp(x - mx);
  std::vector<double> out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = l[i] - mx - std::log(s);
  return out;
}

// Logits whose softmax is exactly `probs` (up to float rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -kInf);
  return l;
}

std::set<int32_t> support(Sampler& s, const std::vector<float>& logits) {
  std::set<int32_t> ids;
  for (const auto& [id, p] : s.distribution(logits.data())) {
    CHECK(p > 0);
    ids.insert(id);
  }
  return ids;
}

// Pearson chi-square statistic of `draws` samples against `probs`.
double chi_square(Sampler& s, const std::vector<float>& logits, const std::vector<double>& probs,
                  int draws) {
  std::vector<int> count(probs.size(), 0);
  for (int i = 0; i < draws; ++i) {
    int32_t id = s.sample(logits.data()).id;
    REQUIRE(id >= 0);
    REQUIRE(static_cast<size_t>(id) < probs.size());
    REQUIRE(probs[static_cast<size_t>(id)] > 0);  // never a token outside the support
    ++count[static_cast<size_t>(id)];
  }
  double chi = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) continue;
    double e = probs[i] * draws;
    chi += (count[i] - e) * (count[i] - e) / e;
  }
  return chi;
}

}  // namespace

TEST_CASE("sampler: xoshiro256** seeded by splitmix64 gives the published sequence") {
  // splitmix64 from state 0 yields e220a8397b1dcdaf 6e789e6aa1b965f4 06c45d188009454f
  // f88bb8a8724c81ec (Vigna's reference); xoshiro256** on that state, computed by a
  // separate Python transcription of the reference C.
  Xoshiro256 r0(0);
  CHECK(r0.next() == 0x99ec5f36cb75f2b4ull);
  CHECK(r0.next() == 0xbf6e1f784956452aull);
  CHECK(r0.next() == 0x1a5f849d4933e6e0ull);
  CHECK(r0.next() == 0x6aa594f1262d2d2cull);
  Xoshiro256 r42(42);
  CHECK(r42.next() == 0x15780b2e0c2ec716ull);
  CHECK(r42.next() == 0x6104d9866d113a7eull);
  double u = Xoshiro256(7).uniform();
  CHECK(u >= 0.0);
  CHECK(u < 1.0);
}

TEST_CASE("sampler: the draw follows the documented algorithm exactly") {
  // Expected ids from a separate Python transcription of the header's steps 9-10:
  // w = exp((l - max) / T) in double, r = uniform() * sum(w), first id whose running sum
  // exceeds r. Any change to the RNG, its seeding or the walk order breaks this.
  std::vector<float> l = {0.3f, -1.2f, 1.1f, 0.9f, -0.4f, 0.0f};
  Sampler s(plain(0.7f, 42), 6);
  std::vector<int32_t> got;
  for (int i = 0; i < 24; ++i) got.push_back(s.sample(l.data()).id);
  const std::vector<int32_t> want = {0, 2, 3, 5, 5, 3, 3, 3, 3, 3, 3, 2,
                                     3, 2, 3, 4, 3, 3, 3, 3, 0, 2, 2, 3};
  CHECK(got == want);
}

TEST_CASE("sampler: greedy is the argmax, ties to the lowest id") {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto l = random_logits(1000, seed);
    Sampler s(plain(0.0f), 1000);
    CHECK(s.sample(l.data()).id == argmax_lowest(l));
    SamplingParams neg = plain(-1.0f);
    Sampler s2(neg, 1000);
    CHECK(s2.sample(l.data()).id == argmax_lowest(l));
  }
  std::vector<float> tie = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
  Sampler s(plain(0.0f), 5);
  CHECK(s.sample(tie.data()).id == 1);
  auto d = s.distribution(tie.data());
  REQUIRE(d.size() == 1);
  CHECK(d[0].first == 1);
  CHECK(d[0].second == 1.0);
}

TEST_CASE("sampler: temperature -> 0 and top-k = 1 equal greedy") {
  for (uint64_t seed = 0; seed < 30; ++seed) {
    auto l = random_logits(2000, 100 + seed);
    // Make the top gap at least 0.01 so that exp(-gap / T) underflows for T = 1e-5.
    int best = argmax_lowest(l);
    l[static_cast<size_t>(best)] += 0.01f;
    Sampler cold(plain(1e-5f, seed), 2000);
    SamplingParams k1 = plain(1.0f, seed);
    k1.top_k = 1;
    Sampler topk(k1, 2000);
    for (int rep = 0; rep < 5; ++rep) {
      CHECK(cold.sample(l.data()).id == best);
      CHECK(topk.sample(l.data()).id == best);
    }
  }
  // top-k = 1 resolves ties like greedy does.
  std::vector<float> tie = {0.0f, 3.0f, 1.0f, 3.0f};
  SamplingParams k1 = plain(1.0f);
  k1.top_k = 1;
  Sampler s(k1, 4);
  for (int i = 0; i < 20; ++i) CHECK(s.sample(tie.data()).id == 1);
}

TEST_CASE("sampler: empirical frequencies match the softmax (chi-square)") {
  // Chi-square critical values at p = 1e-4: 7 dof 29.9, 2 dof 18.4. The seeds are fixed,
  // so this is deterministic; the bound says the sampler is not biased.
  std::vector<float> l = {0.5f, -1.0f, 2.0f, 0.0f, 1.2f, -0.3f, 0.9f, -2.5f};
  const int draws = 200000;
  SUBCASE("temperature 1") {
    std::vector<double> ld(l.begin(), l.end());
    auto lp = log_softmax(ld);
    std::vector<double> probs;
    for (double x : lp) probs.push_back(std::exp(x));
    Sampler s(plain(1.0f, 12345), 8);
    double chi = chi_square(s, l, probs, draws);
    MESSAGE("chi-square (7 dof) = " << chi);
    CHECK(chi < 29.9);
  }
  SUBCASE("temperature 0.6") {
    std::vector<double> ld;
    for (float x : l) ld.push_back(static_cast<double>(x) / static_cast<double>(0.6f));
    auto lp = log_softmax(ld);
    std::vector<double> probs;
    for (double x : lp) probs.push_back(std::exp(x));
    Sampler s(plain(0.6f, 777), 8);
    double chi = chi_square(s, l, probs, draws);
    MESSAGE("chi-square (7 dof) = " << chi);
    CHECK(chi < 29.9);
  }
  SUBCASE("top-k 3 renormalises over the three best") {
    SamplingParams p = plain(1.0f, 99);
    p.top_k = 3;
    std::vector<double> probs(8, 0.0);
    double z = std::exp(2.0) + std::exp(1.2) + std::exp(0.9);
    probs[2] = std::exp(2.0) / z;
    probs[4] = std::exp(1.2) / z;
    probs[6] = std::exp(0.9) / z;
    Sampler s(p, 8);
    double chi = chi_square(s, l, probs, draws);
    MESSAGE("chi-square (2 dof) = " << chi);
    CHECK(chi < 18.4);
  }
}

TEST_CASE("sampler: top-p keeps the shortest prefix reaching p") {
  // Token ids are permuted so that id order and probability order differ.
  //              id:   0     1     2     3     4
  std::vector<double> probs = {0.05, 0.30, 0.02, 0.50, 0.13};
  auto l = logits_of(probs);
  auto with = [&](float top_p, int top_k = 0) {
    SamplingParams p = plain();
    p.top_p = top_p;
    p.top_k = top_k;
    Sampler s(p, 5);
    return support(s, l);
  };
  CHECK(with(0.40f) == std::set<int32_t>{3});           // 0.50 >= 0.40
  CHECK(with(0.70f) == std::set<int32_t>{1, 3});        // 0.80
  CHECK(with(0.85f) == std::set<int32_t>{1, 3, 4});     // 0.93
  CHECK(with(0.95f) == std::set<int32_t>{0, 1, 3, 4});  // 0.98
  CHECK(with(0.99f) == std::set<int32_t>{0, 1, 2, 3, 4});
  CHECK(with(0.0f) == std::set<int32_t>{3});
  // top-k first, then top-p on the renormalised survivors: after top-2 the best has
  // 0.5 / 0.8 = 0.625 >= 0.6, so only it remains (without top-k, 0.6 keeps two).
  CHECK(with(0.60f, 2) == std::set<int32_t>{3});
  CHECK(with(0.60f) == std::set<int32_t>{1, 3});

  // The surviving probabilities are renormalised.
  SamplingParams p = plain();
  p.top_p = 0.85f;
  Sampler s(p, 5);
  auto d = s.distribution(l.data());
  REQUIRE(d.size() == 3);
  CHECK(d[0].first == 1);
  CHECK(d[0].second == doctest::Approx(0.30 / 0.93).epsilon(1e-6));
  CHECK(d[1].first == 3);
  CHECK(d[1].second == doctest::Approx(0.50 / 0.93).epsilon(1e-6));
  CHECK(d[2].first == 4);
  CHECK(d[2].second == doctest::Approx(0.13 / 0.93).epsilon(1e-6));
}

TEST_CASE("sampler: top-p on a large vocabulary matches a full sort") {
  // Exercises the incremental partial sort: nuclei of ~10, ~1000 and ~30000 tokens.
  const size_t V = 150000;
  for (float scale : {6.0f, 3.0f, 2.0f, 0.5f}) {
    auto l = random_logits(V, 4242, scale);
    std::vector<double> ld(l.begin(), l.end());
    auto lp = log_softmax(ld);
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return l[size_t(a)] > l[size_t(b)] || (l[size_t(a)] == l[size_t(b)] && a < b);
    });
    const double top_p = 0.9;
    std::set<int32_t> expect;
    double cum = 0;
    for (int32_t id : order) {
      expect.insert(id);
      cum += std::exp(lp[size_t(id)]);
      if (cum >= top_p) break;
    }
    SamplingParams p = plain();
    p.top_p = 0.9f;
    Sampler s(p, static_cast<int>(V));
    auto got = support(s, l);
    MESSAGE("scale " << scale << ": nucleus of " << expect.size() << " tokens");
    CHECK(got == expect);
  }
}

TEST_CASE("sampler: min-p keeps tokens with p >= min_p * p_max") {
  //              id:   0     1     2     3     4
  std::vector<double> probs = {0.05, 0.30, 0.02, 0.50, 0.13};
  auto l = logits_of(probs);
  auto with = [&](float min_p) {
    SamplingParams p = plain();
    p.min_p = min_p;
    Sampler s(p, 5);
    return support(s, l);
  };
  CHECK(with(0.61f) == std::set<int32_t>{3});  // 0.30 / 0.50 = 0.6 < 0.61
  CHECK(with(0.5f) == std::set<int32_t>{1, 3});
  CHECK(with(0.2f) == std::set<int32_t>{1, 3, 4});         // 0.13 / 0.5 = 0.26
  CHECK(with(0.09f) == std::set<int32_t>{0, 1, 3, 4});     // 0.05 / 0.5 = 0.1
  CHECK(with(0.03f) == std::set<int32_t>{0, 1, 2, 3, 4});  // 0.04
  CHECK(with(1.0f) == std::set<int32_t>{3});
}

TEST_CASE("sampler: penalties change the right logits by the right amounts") {
  // Read the penalised logits back from the reported log-softmax: token 0 (logit 0) is
  // never touched, so penalised[i] = logprob[i] - logprob[0].
  const std::vector<float> l = {0.0f, 3.0f, -2.0f, 1.0f, 0.5f, -0.5f, 2.0f, 0.0f};
  auto penalised = [&](Sampler& s) {
    SampleResult r = s.sample(l.data());
    REQUIRE(r.top.size() == l.size());
    std::map<int32_t, float> lp;
    for (const TokenLogprob& t : r.top) lp[t.id] = t.logprob;
    std::vector<float> out;
    for (size_t i = 0; i < l.size(); ++i) out.push_back(lp[int32_t(i)] - lp[0]);
    return out;
  };
  auto expect_eq = [](const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("token " << i);
      CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
    }
  };
  SamplingParams p = plain(0.0f);
  p.n_probs = 8;

  SUBCASE("repeat penalty divides positive, multiplies negative, once per distinct token") {
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 4;
    Sampler s(p, 8);
    // Window of 4: tokens 6 and 3 fall out, leaving {1, 2, 1, 7} (7 has logit 0).
    for (int32_t id : {6, 3, 1, 2, 1, 7}) s.accept(id, /*prompt=*/true);
    expect_eq(penalised(s), {0.0f, 1.5f, -4.0f, 1.0f, 0.5f, -0.5f, 2.0f, 0.0f});
  }
  SUBCASE("repeat_last_n < 0 covers the whole history, 0 turns it off") {
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = -1;
    Sampler all(p, 8);
    for (int32_t id : {6, 3, 1, 2, 1, 7}) all.accept(id);
    expect_eq(penalised(all), {0.0f, 1.5f, -4.0f, 0.5f, 0.5f, -0.5f, 1.0f, 0.0f});
    p.repeat_last_n = 0;
    Sampler off(p, 8);
    for (int32_t id : {6, 3, 1, 2, 1, 7}) off.accept(id);
    expect_eq(penalised(off), l);
  }
  SUBCASE("presence and frequency count generated tokens only") {
    p.presence_penalty = 0.25f;
    p.frequency_penalty = 0.5f;
    Sampler s(p, 8);
    for (int32_t id : {4, 4, 4, 5}) s.accept(id, /*prompt=*/true);  // ignored
    for (int32_t id : {1, 1, 1, 2, 6}) s.accept(id);
    // 1: 3 - (3*0.5 + 0.25); 2: -2 - 0.75; 6: 2 - 0.75
    expect_eq(penalised(s), {0.0f, 1.25f, -2.75f, 1.0f, 0.5f, -0.5f, 1.25f, 0.0f});
  }
  SUBCASE("logit bias is added before the repeat penalty (llama.cpp order)") {
    p.repeat_penalty = 2.0f;
    p.logit_bias = {{1, 1.0f}, {3, -3.0f}, {5, 0.5f}};
    Sampler s(p, 8);
    for (int32_t id : {1, 3}) s.accept(id);
    // 1: (3 + 1) / 2; 3: (1 - 3) * 2; 5: -0.5 + 0.5 (not penalised)
    expect_eq(penalised(s), {0.0f, 2.0f, -2.0f, -4.0f, 0.5f, 0.0f, 2.0f, 0.0f});
  }
  SUBCASE("reset forgets the history") {
    p.repeat_penalty = 3.0f;
    p.frequency_penalty = 1.0f;
    Sampler s(p, 8);
    s.accept(1);
    s.reset();
    expect_eq(penalised(s), l);
  }
  SUBCASE("a penalty changes the greedy choice") {
    p.presence_penalty = 2.0f;
    Sampler s(p, 8);
    CHECK(s.sample(l.data()).id == 1);
    s.accept(1);
    CHECK(s.sample(l.data()).id == 6);  // 3 - 2 = 1 < 2
  }
}

TEST_CASE("sampler: a -inf logit bias bans a token") {
  auto l = random_logits(500, 7);
  const int best = argmax_lowest(l);
  SamplingParams p = plain(0.0f);
  p.logit_bias = {{best, -kInf}};
  p.n_probs = 20;
  Sampler greedy(p, 500);
  SampleResult r = greedy.sample(l.data());
  CHECK(r.id != best);
  auto rest = l;
  rest[size_t(best)] = -kInf;
  CHECK(r.id == argmax_lowest(rest));
  for (const TokenLogprob& t : r.top) CHECK(t.id != best);

  // Sampling at a high temperature never picks it.
  p.temperature = 5.0f;
  p.seed = 3;
  Sampler hot(p, 500);
  for (int i = 0; i < 3000; ++i) CHECK_FALSE(hot.sample(l.data()).id == best);

  // A token ranked in the reported top list with logprob -inf when nearly all are banned.
  std::vector<float> small = {1.0f, 2.0f, 3.0f};
  SamplingParams q = plain(1.0f);
  q.logit_bias = {{1, -kInf}, {2, -kInf}};
  q.n_probs = 3;
  Sampler s(q, 3);
  SampleResult rs = s.sample(small.data());
  CHECK(rs.id == 0);
  CHECK(rs.logprob == doctest::Approx(0.0));
  REQUIRE(rs.top.size() == 3);
  CHECK(rs.top[0].id == 0);
  CHECK(rs.top[1].logprob == -kInf);
  CHECK(rs.top[2].logprob == -kInf);

  // Everything banned is an error, not a silent pick.
  q.logit_bias.push_back({0, -kInf});
  Sampler none(q, 3);
  CHECK_THROWS_AS(none.sample(small.data()), Error);
}

TEST_CASE("sampler: the same seed gives the same sequence, different seeds differ") {
  auto l = random_logits(1000, 11, 1.0f);
  SamplingParams p;  // defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05
  auto run = [&](uint64_t seed) {
    SamplingParams q = p;
    q.seed = seed;
    q.top_k = 0;
    q.min_p = 0;
    Sampler s(q, 1000);
    std::vector<int32_t> ids;
    for (int i = 0; i < 64; ++i) ids.push_back(s.sample(l.data()).id);
    return ids;
  };
  CHECK(run(5) == run(5));
  CHECK(run(5) != run(6));
  CHECK(run(0) != run(1));

  // reset() replays; a random seed is reported and reproduces the run.
  SamplingParams q = p;
  q.seed = kRandomSeed;
  Sampler a(q, 1000);
  std::vector<int32_t> first, second;
  for (int i = 0; i < 32; ++i) first.push_back(a.sample(l.data()).id);
  a.reset();
  for (int i = 0; i < 32; ++i) second.push_back(a.sample(l.data()).id);
  CHECK(first == second);
  q.seed = a.seed();
  Sampler b(q, 1000);
  std::vector<int32_t> third;
  for (int i = 0; i < 32; ++i) third.push_back(b.sample(l.data()).id);
  CHECK(first == third);
  Sampler c(p, 1000);  // another random seed
  CHECK(c.seed() != a.seed());
}

TEST_CASE("sampler: logprobs equal an independent log-softmax in double") {
  const int V = 3000;
  auto l = random_logits(size_t(V), 21, 4.0f);
  SamplingParams p;
  p.seed = 8;
  p.n_probs = 20;
  p.repeat_penalty = 1.3f;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.2f;
  p.logit_bias = {{17, 5.0f}, {18, -2.5f}, {19, -kInf}};
  Sampler s(p, V);
  std::vector<int32_t> history = {17, 17, 40, 41, 1000};
  for (int32_t id : history) s.accept(id);

  // Independent penalised logits.
  std::vector<double> ref(l.begin(), l.end());
  ref[17] += 5.0;
  ref[18] -= 2.5;
  ref[19] = -std::numeric_limits<double>::infinity();
  for (int32_t id : {17, 40, 41, 1000}) {
    double& x = ref[size_t(id)];
    x = x <= 0 ? x * double(1.3f) : x / double(1.3f);
  }
  std::map<int32_t, int> counts = {{17, 2}, {40, 1}, {41, 1}, {1000, 1}};
  for (auto [id, c] : counts) ref[size_t(id)] -= c * double(0.4f) + double(0.2f);
  auto lp = log_softmax(ref);

  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return ref[size_t(a)] > ref[size_t(b)]; });
  for (int step = 0; step < 10; ++step) {
    SampleResult r = s.sample(l.data());
    CHECK(r.logprob == doctest::Approx(lp[size_t(r.id)]).epsilon(1e-5).scale(1));
    REQUIRE(r.top.size() == 20);
    for (size_t k = 0; k < 20; ++k) {
      CHECK(r.top[k].id == order[k]);
      CHECK(r.top[k].logprob == doctest::Approx(lp[size_t(order[k])]).epsilon(1e-5).scale(1));
    }
  }
}

TEST_CASE("sampler: bad parameters are llm::Error") {
  SamplingParams p;
  p.n_probs = 21;
  CHECK_THROWS_AS(Sampler(p, 10), Error);
  p = SamplingParams();
  p.logit_bias = {{10, 1.0f}};
  CHECK_THROWS_AS(Sampler(p, 10), Error);
  p.logit_bias = {{-1, 1.0f}};
  CHECK_THROWS_AS(Sampler(p, 10), Error);
  p = SamplingParams();
  p.repeat_penalty = 0.0f;
  CHECK_THROWS_AS(Sampler(p, 10), Error);
  p = SamplingParams();
  p.top_p = std::nanf("");
  CHECK_THROWS_AS(Sampler(p, 10), Error);
  Sampler ok(SamplingParams(), 10);
  CHECK_THROWS_AS(ok.accept(10), Error);
}

TEST_CASE("sampler: NaN and +inf logits are handled") {
  std::vector<float> l = {1.0f, std::nanf(""), 2.0f, 0.5f};
  Sampler g(plain(0.0f), 4);
  CHECK(g.sample(l.data()).id == 2);
  Sampler s(plain(1.0f, 4), 4);
  for (int i = 0; i < 200; ++i) CHECK(s.sample(l.data()).id != 1);
  l[3] = kInf;
  CHECK(g.sample(l.data()).id == 3);
}

// Reports the cost per sample; speed targets live in benchmarks, not in timed tests.
TEST_CASE("sampler: cost on a 150K vocabulary (reported, not asserted)") {
  const int V = 151936;  // Qwen2
  auto l = random_logits(size_t(V), 5, 2.0f);
  for (int which = 0; which < 2; ++which) {
    SamplingParams p;  // defaults (top-k 40) or top-k off (top-p over the vocabulary)
    p.seed = 1;
    if (which == 1) p.top_k = 0;
    Sampler s(p, V);
    const int n = 50;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) s.sample(l.data());
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
        n;
    MESSAGE(std::string(which ? "top-k off: " : "defaults: ") << ms << " ms per sample");
  }
}
