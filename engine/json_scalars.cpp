#include "engine/json_scalars.h"

#include <algorithm>
#include <string>

namespace llm {

Expr json_digits(uint32_t min, uint32_t max) {
  return repeat(chars({{'0', '9'}}), min, max);
}

namespace {

// Decimal digit strings of the same length from x to y (x <= y), the classic range-to-regex
// construction: split on the first digit, recurse on the rest.
Expr same_length_range(const std::string& x, const std::string& y) {
  size_t n = x.size();
  if (n == 1) return chars({{static_cast<uint32_t>(x[0]), static_cast<uint32_t>(y[0])}});
  std::string xr = x.substr(1), yr = y.substr(1);
  if (x[0] == y[0]) return seq({lit(std::string(1, x[0])), same_length_range(xr, yr)});
  std::vector<Expr> alts;
  char lo = x[0], hi = y[0];
  if (xr != std::string(n - 1, '0')) {
    alts.push_back(
        seq({lit(std::string(1, x[0])), same_length_range(xr, std::string(n - 1, '9'))}));
    ++lo;
  }
  if (yr != std::string(n - 1, '9')) {
    alts.push_back(
        seq({lit(std::string(1, y[0])), same_length_range(std::string(n - 1, '0'), yr)}));
    --hi;
  }
  if (lo <= hi) {
    alts.push_back(seq({chars({{static_cast<uint32_t>(lo), static_cast<uint32_t>(hi)}}),
                        json_digits(static_cast<uint32_t>(n - 1), static_cast<uint32_t>(n - 1))}));
  }
  return alt(std::move(alts));
}

uint64_t pow10u(uint32_t k) {
  uint64_t v = 1;
  while (k--) v *= 10;
  return v;
}

// Non-negative integers in [a, b] without leading zeros; no b: up to kMaxIntDigits digits.
Expr nonneg_int_range(uint64_t a, std::optional<uint64_t> b) {
  uint32_t la = static_cast<uint32_t>(std::to_string(a).size());
  uint32_t lb = b ? static_cast<uint32_t>(std::to_string(*b).size()) : la;
  std::vector<Expr> alts;
  for (uint32_t len = la; len <= lb; ++len) {
    uint64_t lo = std::max(a, len == 1 ? 0 : pow10u(len - 1));
    uint64_t hi = pow10u(len) - 1;
    if (b) hi = std::min(hi, *b);
    if (lo <= hi) alts.push_back(same_length_range(std::to_string(lo), std::to_string(hi)));
  }
  if (!b && la < kMaxIntDigits) {  // every longer number
    alts.push_back(seq({chars({{'1', '9'}}), json_digits(la, kMaxIntDigits - 1)}));
  }
  return alt(std::move(alts));
}

// Integers in [lo, hi]; a missing side is open.
}  // namespace

Expr json_int_range(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::vector<Expr> alts;
  if (!hi || *hi >= 0) {
    uint64_t a = lo && *lo > 0 ? static_cast<uint64_t>(*lo) : 0;
    std::optional<uint64_t> b;
    if (hi) b = static_cast<uint64_t>(*hi);
    alts.push_back(nonneg_int_range(a, b));
  }
  if (!lo || *lo < 0) {  // -m with m in [max(1, -hi), -lo]
    uint64_t a = hi && *hi < 0 ? static_cast<uint64_t>(-*hi) : 1;
    std::optional<uint64_t> b;
    if (lo) b = static_cast<uint64_t>(-*lo);
    alts.push_back(seq({lit("-"), nonneg_int_range(a, b)}));
  }
  return alt(std::move(alts));
}

Expr json_fraction() {
  return opt(seq({lit("."), json_digits(1, kMaxFracDigits)}));
}

namespace {

Expr zero_frac() {
  return opt(seq({lit("."), repeat(lit("0"), 1, kMaxFracDigits)}));
}
Expr nonzero_frac() {
  return seq({lit("."), repeat(lit("0"), 0, kMaxFracDigits - 1), chars({{'1', '9'}}),
              json_digits(0, kMaxFracDigits - 1)});
}

// Decimal magnitudes m (no sign, no exponent) with mlo <(=) m <(=) mhi.
std::optional<Expr> magnitude(uint64_t mlo, bool mlo_ex, std::optional<uint64_t> mhi, bool mhi_ex) {
  std::vector<Expr> alts;
  uint64_t a = mlo + (mlo_ex ? 1 : 0);
  if (!mhi || (*mhi >= 1 && a <= *mhi - 1)) {  // integer part in [a, mhi - 1], any fraction
    std::optional<uint64_t> b;
    if (mhi) b = *mhi - 1;
    alts.push_back(seq({nonneg_int_range(a, b), json_fraction()}));
  }
  if (mlo_ex && (!mhi || mlo < *mhi)) {  // just above mlo
    alts.push_back(seq({lit(std::to_string(mlo)), nonzero_frac()}));
  }
  if (mhi && !mhi_ex && (*mhi > mlo || (*mhi == mlo && !mlo_ex))) {  // exactly mhi
    alts.push_back(seq({lit(std::to_string(*mhi)), zero_frac()}));
  }
  if (alts.empty()) return std::nullopt;
  return alt(std::move(alts));
}

}  // namespace

std::optional<Expr> json_number_range(std::optional<int64_t> lo, bool lo_ex,
                                      std::optional<int64_t> hi, bool hi_ex) {
  if (lo && hi && (*lo > *hi || (*lo == *hi && (lo_ex || hi_ex)))) return std::nullopt;
  std::vector<Expr> alts;
  if (!hi || *hi > 0 || (*hi == 0 && !hi_ex)) {  // x >= 0
    bool pos_lo = lo && *lo >= 0;
    std::optional<uint64_t> mhi;
    if (hi) mhi = static_cast<uint64_t>(*hi);
    if (auto m = magnitude(pos_lo ? static_cast<uint64_t>(*lo) : 0, pos_lo && lo_ex, mhi, hi_ex)) {
      alts.push_back(std::move(*m));
    }
  }
  if (!lo || *lo < 0) {  // x < 0, written -m with m > 0
    bool neg_hi = hi && *hi < 0;
    std::optional<uint64_t> mhi;
    if (lo) mhi = static_cast<uint64_t>(-*lo);
    if (auto m = magnitude(neg_hi ? static_cast<uint64_t>(-*hi) : 0, neg_hi ? hi_ex : true, mhi,
                           lo_ex)) {
      alts.push_back(seq({lit("-"), std::move(*m)}));
    }
  }
  if (alts.empty()) return std::nullopt;
  return alt(std::move(alts));
}

std::optional<Expr> json_string_format(std::string_view f) {
  auto d = [](uint32_t n) { return json_digits(n, n); };
  Expr hex = chars({{'0', '9'}, {'A', 'F'}, {'a', 'f'}});
  Expr date = seq(
      {d(4), lit("-"),
       alt({seq({lit("0"), chars({{'1', '9'}})}), seq({lit("1"), chars({{'0', '2'}})})}), lit("-"),
       alt({seq({lit("0"), chars({{'1', '9'}})}), seq({chars({{'1', '2'}}), d(1)}),
            seq({lit("3"), chars({{'0', '1'}})})})});
  Expr hh = alt({seq({chars({{'0', '1'}}), d(1)}), seq({lit("2"), chars({{'0', '3'}})})});
  Expr mm = seq({chars({{'0', '5'}}), d(1)});
  Expr time = seq({hh, lit(":"), mm, lit(":"), mm, opt(seq({lit("."), json_digits(1, 9)})),
                   alt({chars({{'Z', 'Z'}, {'z', 'z'}}),
                        seq({chars({{'+', '+'}, {'-', '-'}}), hh, lit(":"), mm})})});
  Expr label = seq({chars({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}}),
                    opt(seq({repeat(chars({{'-', '-'}, {'0', '9'}, {'A', 'Z'}, {'a', 'z'}}), 0, 61),
                             chars({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}})}))});
  if (f == "date") return date;
  if (f == "time") return time;
  if (f == "date-time") return seq({date, chars({{'T', 'T'}, {'t', 't'}}), time});
  if (f == "uuid") {
    return seq({repeat(hex, 8, 8), lit("-"), repeat(hex, 4, 4), lit("-"), repeat(hex, 4, 4),
                lit("-"), repeat(hex, 4, 4), lit("-"), repeat(hex, 12, 12)});
  }
  if (f == "email") {
    // RFC 5322 dot-atom local part, then a hostname with at least two labels.
    Expr atom = repeat(chars({{'!', '!'},
                              {'#', '\''},
                              {'*', '+'},
                              {'-', '-'},
                              {'/', '9'},
                              {'=', '='},
                              {'?', '?'},
                              {'A', 'Z'},
                              {'^', '~'}}),
                       1, 64);
    return seq({atom, repeat(seq({lit("."), atom}), 0, 3), lit("@"), label,
                repeat(seq({lit("."), label}), 1, 4)});
  }
  if (f == "hostname") return seq({label, repeat(seq({lit("."), label}), 0, 4)});
  if (f == "ipv4") {
    Expr octet = nonneg_int_range(0, 255);
    return seq({octet, lit("."), octet, lit("."), octet, lit("."), octet});
  }
  return std::nullopt;  // not a format we know: an annotation
}

}  // namespace llm
