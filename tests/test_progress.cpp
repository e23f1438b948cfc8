// The command line's progress lines (apps/progress.h) when stderr is not a terminal, as in a log
// file: a line at every tenth of the work, and one whenever the log interval passes without a
// line, so that a slow run's log shows it is alive between tenths.
#include <chrono>
#include <string>
#include <thread>

#include "apps/progress.h"
#include "support/testing.h"

namespace aegis {
namespace {

int lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

TEST(Progress, LogsEveryTenthAndWheneverTheIntervalPasses) {
  // stderr captured into a file: not a terminal.
  ::testing::internal::CaptureStderr();
  {
    app::Progress bar("work", 1000, "items", true, std::chrono::milliseconds(50));
    bar.update(1);  // neither a new tenth nor overdue
    bar.update(2);
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    bar.update(3);  // overdue: a line although still in the first tenth
    bar.update(4);
    bar.update(100);  // a new tenth
    bar.update(150);
    bar.finish();
  }
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(lines(out), 3) << out;
  EXPECT_NE(out.find(" 3/1000 "), std::string::npos) << out;
  EXPECT_NE(out.find(" 100/1000 "), std::string::npos) << out;
}

TEST(Progress, TheDefaultIntervalIsAMinute) {
  ::testing::internal::CaptureStderr();
  {
    app::Progress bar("work", 1000, "items", true);
    for (int i = 1; i < 100; ++i) bar.update(i);
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace aegis
