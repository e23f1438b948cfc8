// Bounds of the numeric command-line options, declared once where each option is registered.
// Every validator checks an option's text before CLI11 converts it: the whole text must be a
// number (an empty value is not 0, trailing characters are not ignored), finite, and inside the
// stated range, so that a value can neither wrap (`--seed -1` into 2^64 − 1), saturate
// (`--steps 9223372036854775808`) nor reach the library as a zero divisor. The library checks its
// options again (it has other callers); these checks give the user the option's own name.
#pragma once

#include <CLI/CLI.hpp>
#include <cfloat>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/train.h"

namespace aegis::app {

// Upper bounds of counts: far above any sensible run, far below what overflows the products
// the library forms from them (epochs × steps per epoch, examples × samples per example, ...).
constexpr std::int64_t kMaxEpochs = 1'000'000;
constexpr std::int64_t kMaxBatch = std::int64_t{1} << 24;     // examples (or noisy inputs) per pass
constexpr std::int64_t kMaxExamples = std::int64_t{1} << 40;  // --max, --skip and the like
constexpr std::int64_t kMaxIterations = 1'000'000;            // attack steps, restarts, replays
constexpr std::int64_t kMaxSamples = std::int64_t{1} << 40;   // Monte Carlo samples per input
constexpr std::int64_t kMaxDpSteps = std::int64_t{1} << 40;   // DP-SGD steps an accountant composes

// An integer in [lo, hi].
CLI::Validator integer_in(std::int64_t lo, std::int64_t hi);
// An unsigned 64-bit seed: 0 … 2^64 − 1, without a sign.
CLI::Validator seed_value();
// A finite real number in the interval from lo to hi, each end open or closed. Options stored as
// float pass hi = FLT_MAX so that a value cannot become inf on conversion.
CLI::Validator real_in(double lo, double hi, bool lo_open, bool hi_open);
// Shorthands: (0, max], [0, max], (0, 1), (0, 1], [0, 1].
CLI::Validator positive(double max = DBL_MAX);
CLI::Validator non_negative(double max = DBL_MAX);
CLI::Validator open_unit();
CLI::Validator unit_open_closed();
CLI::Validator unit_closed();
// A mode: exactly one of `names` (the library parses the name into its enum once, after parsing).
CLI::Validator one_of(std::vector<std::string> names);
// --optimizer (sgd | adam | adamw) and --schedule (constant | step | cosine | onecycle), parsed
// into the training options' enums; their defaults are the options' values when registered.
void add_optimizer_option(CLI::App* cmd, nn::TrainOptions& train);
void add_schedule_option(CLI::App* cmd, nn::TrainOptions& train);

}  // namespace aegis::app
