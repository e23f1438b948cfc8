#include "progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace aegis::app {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

Progress::Progress(std::string label, std::int64_t total, std::string unit, bool enabled,
                   std::chrono::steady_clock::duration log_interval)
    : m_label(std::move(label)),
      m_unit(std::move(unit)),
      m_total(total),
      m_enabled(enabled),
      m_tty(isatty(fileno(stderr)) != 0),
      m_log_interval(log_interval),
      m_start(std::chrono::steady_clock::now()),
      m_last_draw(m_start) {}

Progress::~Progress() {
  if (m_enabled && m_tty && !m_finished) std::fputs("\n", stderr);
}

void Progress::update(std::int64_t done, const std::string& extra) {
  if (!m_enabled) return;
  const auto now = std::chrono::steady_clock::now();
  if (m_tty) {
    if (now - m_last_draw < std::chrono::milliseconds(100) && done < m_total) return;
  } else {
    // One line per tenth of the work, and one whenever log_interval has passed without a line;
    // the start and the end are left to finish().
    const int decile =
        m_total > 0 && done > 0 ? static_cast<int>(10.0 * static_cast<double>(done) / static_cast<double>(m_total)) : 0;
    const bool new_decile = decile != m_last_decile && decile > 0 && decile < 10;
    const bool overdue = now - m_last_draw >= m_log_interval && done < m_total;
    if (!new_decile && !overdue) return;
    if (new_decile) m_last_decile = decile;
  }
  m_last_draw = now;
  draw(done, extra, false);
}

void Progress::finish(const std::string& extra) {
  if (!m_enabled || m_finished) return;
  draw(m_total, extra, true);
  m_finished = true;
}

void Progress::draw(std::int64_t done, const std::string& extra, bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double frac = m_total > 0 ? static_cast<double>(done) / static_cast<double>(m_total) : 1.0;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  char head[256];
  std::snprintf(head, sizeof head, "%s [%s] %3.0f%% %lld/%lld %.1f %s/s %s %s", m_label.c_str(), bar.c_str(),
                100.0 * frac, static_cast<long long>(done), static_cast<long long>(m_total), rate, m_unit.c_str(),
                final ? "took" : "ETA",
                format_duration(final ? elapsed : (rate > 0 ? (m_total - done) / rate : NAN)).c_str());
  std::string line = head;
  if (!extra.empty()) line += "  " + extra;
  if (m_tty) std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

void CliProgress::begin(const std::string& label, std::int64_t total, const std::string& unit) {
  if (m_bar) m_bar->finish();
  m_bar = std::make_unique<Progress>(label, total, unit, m_enabled);
}

void CliProgress::update(std::int64_t done, const std::string& extra) {
  if (m_bar) m_bar->update(done, extra);
}

void CliProgress::end(const std::string& extra) {
  if (m_bar) m_bar->finish(extra);
  m_bar.reset();
}

void CliProgress::info(const std::string& message) {
  if (m_enabled) std::fprintf(stderr, "aegis: %s\n", message.c_str());
}

void CliProgress::warning(const std::string& message) {
  std::fprintf(stderr, "aegis: warning: %s\n", message.c_str());
}

}  // namespace aegis::app
