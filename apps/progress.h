// A progress line on stderr with rate and ETA. On a terminal it redraws one line in place at
// most ten times a second; otherwise it prints a plain line at every tenth of the work, and at
// least once every `log_interval` (60 s) while work goes on, so that a log of a slow run shows
// it is alive. Disabled entirely by --quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/progress.h"

namespace aegis::app {

class Progress {
 public:
  Progress(std::string label, std::int64_t total, std::string unit, bool enabled,
           std::chrono::steady_clock::duration log_interval = std::chrono::seconds(60));
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` units finished so far; `extra` is appended ("loss 0.412").
  void update(std::int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  void draw(std::int64_t done, const std::string& extra, bool final);
  std::string m_label, m_unit;
  std::int64_t m_total;
  bool m_enabled, m_tty, m_finished = false;
  int m_last_decile = -1;
  std::chrono::steady_clock::duration m_log_interval;
  std::chrono::steady_clock::time_point m_start, m_last_draw;
};

std::string format_duration(double seconds);  // "1:02:03" or "2:03"

// The library's progress reports (core/progress.h) as progress lines on stderr, one per phase,
// and its information as "aegis: ..." lines (neither with --quiet), and its warnings as
// "aegis: warning: ..." lines (always).
class CliProgress : public ProgressSink {
 public:
  explicit CliProgress(bool enabled) : m_enabled(enabled) {}
  void begin(const std::string& label, std::int64_t total, const std::string& unit) override;
  void update(std::int64_t done, const std::string& extra) override;
  void end(const std::string& extra) override;
  void info(const std::string& message) override;
  void warning(const std::string& message) override;

 private:
  bool m_enabled;
  std::unique_ptr<Progress> m_bar;
};  // "1:02:03" or "2:03"

}  // namespace aegis::app
