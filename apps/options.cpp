#include "options.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace aegis::app {

namespace {

std::string in_quotes(const std::string& text) {
  return "'" + text + "'";
}

// The text of a number may not start with white space (strtoll/strtod would skip it) and must
// be used up entirely.
bool starts_like_a_number(const std::string& text) {
  return !text.empty() && !std::isspace(static_cast<unsigned char>(text.front()));
}

}  // namespace

CLI::Validator integer_in(std::int64_t lo, std::int64_t hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        if (!starts_like_a_number(text)) return in_quotes(text) + " is not an integer";
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (*end != '\0') return in_quotes(text) + " is not an integer";
        if (errno == ERANGE || v < lo || v > hi) return text + " is not in " + range;
        return {};
      },
      "INT in " + range);
}

CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::string message = in_quotes(text) + " is not an integer in [0, 18446744073709551615]";
        // strtoull accepts "-1" and negates it modulo 2^64: refuse any sign.
        if (!starts_like_a_number(text) || !std::isdigit(static_cast<unsigned char>(text.front()))) return message;
        errno = 0;
        char* end = nullptr;
        std::strtoull(text.c_str(), &end, 10);
        if (*end != '\0' || errno == ERANGE) return message;
        return {};
      },
      "UINT64");
}

CLI::Validator real_in(double lo, double hi, bool lo_open, bool hi_open) {
  std::ostringstream range;
  range << (lo_open ? "(" : "[") << lo << ", ";
  if (hi >= DBL_MAX)
    range << "inf)";  // every finite number below infinity
  else
    range << hi << (hi_open ? ")" : "]");
  return CLI::Validator(
      [=, range = range.str()](std::string& text) -> std::string {
        if (!starts_like_a_number(text)) return in_quotes(text) + " is not a number";
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (*end != '\0') return in_quotes(text) + " is not a number";
        // strtod reads "nan" and "inf", and saturates overflow to ±HUGE_VAL with ERANGE.
        if (!std::isfinite(v) || (errno == ERANGE && std::fabs(v) > 1.0)) return text + " is not a finite number";
        const bool above_lo = lo_open ? v > lo : v >= lo;
        const bool below_hi = hi_open ? v < hi : v <= hi;
        if (!above_lo || !below_hi) return text + " is not in " + range;
        return {};
      },
      "NUMBER in " + range.str());
}

CLI::Validator positive(double max) {
  return real_in(0.0, max, true, false);
}
CLI::Validator non_negative(double max) {
  return real_in(0.0, max, false, false);
}
CLI::Validator open_unit() {
  return real_in(0.0, 1.0, true, true);
}
CLI::Validator unit_open_closed() {
  return real_in(0.0, 1.0, true, false);
}
CLI::Validator unit_closed() {
  return real_in(0.0, 1.0, false, false);
}

CLI::Validator one_of(std::vector<std::string> names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  return CLI::Validator(
      [names, list](std::string& text) -> std::string {
        for (const std::string& n : names)
          if (text == n) return {};
        return in_quotes(text) + " is not one of " + list;
      },
      "one of " + list);
}

void add_optimizer_option(CLI::App* cmd, nn::TrainOptions& train) {
  cmd->add_option_function<std::string>(
         "--optimizer", [&train](const std::string& v) { train.optimizer = nn::parse_optimizer(v); },
         "sgd | adam | adamw")
      ->default_str(nn::optimizer_name(train.optimizer))
      ->check(one_of({"sgd", "adam", "adamw"}));
}

void add_schedule_option(CLI::App* cmd, nn::TrainOptions& train) {
  cmd->add_option_function<std::string>(
         "--schedule", [&train](const std::string& v) { train.schedule = nn::parse_schedule(v); },
         "constant | step | cosine | onecycle")
      ->default_str(nn::schedule_name(train.schedule))
      ->check(one_of({"constant", "step", "cosine", "onecycle"}));
}

}  // namespace aegis::app
