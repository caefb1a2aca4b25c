#pragma once
// Logging. Rank-0 lines are machine-parsable key=value records, e.g.
//   step=120 loss=3.412 lr=2.9e-03 grad_norm=0.81 tok/s=48211 tokens=3932160 eta=41s
#include <string>

namespace btm {

// Prints `line` on world rank 0 (stdout, flushed). Other ranks print nothing.
void log_root(const std::string& line);
// Prints `line` (stdout, flushed) on the calling rank, whatever it is: for group leaders.
void log_line(const std::string& line);
// Prints `line` on every rank, prefixed with "[rank r] ".
void log_all(const std::string& line);
// Prints a warning on world rank 0 ("warning: ...", stderr).
void warn_root(const std::string& line);
// Writes `text` to stderr in one write(2), after flushing stdout: mpirun forwards stdout
// and stderr separately, so a message written in pieces can have log lines spliced into it.
void write_stderr(const std::string& text);

std::string format_seconds(double seconds);  // "41s", "12m03s", "2h05m"

}  // namespace btm
