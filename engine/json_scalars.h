// Grammar expressions for the text of JSON scalars under JSON Schema constraints: decimal
// digits, integers in a range, decimals between integral bounds, and string formats. Used
// by json_schema.cpp; the bounds on digit counts keep generation finite and every number
// a finite double (integers within int64).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/grammar.h"

namespace llm {

constexpr uint32_t kMaxIntDigits = 18;   // integer part: always inside int64
constexpr uint32_t kMaxFracDigits = 20;  // fraction digits
constexpr uint32_t kMaxExpDigits = 2;    // 1e99 at most: always a finite double

Expr json_digits(uint32_t min, uint32_t max);  // [0-9]{min,max}
Expr json_fraction();                          // ("." [0-9]{1,kMaxFracDigits})?

// Integers in [lo, hi] (a missing side is open; |bounds| <= 1e18), without leading zeros
// or "-0": the classic range-to-regex construction, digit by digit.
Expr json_int_range(std::optional<int64_t> lo, std::optional<int64_t> hi);

// Decimals x (no exponent) with lo <(=) x <(=) hi, the bounds integral; *_ex: exclusive.
// nullopt when no number lies between them.
std::optional<Expr> json_number_range(std::optional<int64_t> lo, bool lo_ex,
                                      std::optional<int64_t> hi, bool hi_ex);

// The body of a string in the given format (date, time, date-time, uuid, email, hostname,
// ipv4); nullopt for other formats, which JSON Schema treats as annotations.
std::optional<Expr> json_string_format(std::string_view format);

}  // namespace llm
