// What a long library call reports while it works. The library calls these as work is done; a
// front end implements them (the command-line tool draws a progress line on stderr, the Python
// package calls back into Python). The defaults do nothing, so a caller that wants no progress
// passes a plain ProgressSink (or none: every entry point takes a ProgressSink* that may be null).
#pragma once

#include <cstdint>
#include <string>

namespace aegis {

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // A phase of work begins: `total` units of `unit` ("samples", "examples", "steps") under `label`.
  virtual void begin(const std::string& label, std::int64_t total, const std::string& unit) {
    (void)label, (void)total, (void)unit;
  }
  // `done` of the phase's units are finished; `extra` is a short status ("loss 0.412").
  virtual void update(std::int64_t done, const std::string& extra) { (void)done, (void)extra; }
  // The phase ended (every unit done, or fewer when the work needed less).
  virtual void end(const std::string& extra) { (void)extra; }
  // A line about the work that is starting ("training mlp (8,010 parameters) on digits ...").
  virtual void info(const std::string& message) { (void)message; }
  // Something the user should know that is not an error (a resumed file's different batch size).
  virtual void warning(const std::string& message) { (void)message; }
};

// `progress`, or a sink that ignores every report when it is null.
inline ProgressSink& progress_or_silent(ProgressSink* progress) {
  static ProgressSink silent;  // stateless: shared safely
  return progress ? *progress : silent;
}

}  // namespace aegis
