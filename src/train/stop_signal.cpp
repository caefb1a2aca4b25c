#include "btm/train/stop_signal.hpp"

#include <atomic>
#include <csignal>

namespace btm {

namespace {
// Signal handlers can only talk to the program through a lock-free flag.
std::atomic<bool> stop_flag{false};

extern "C" void on_stop_signal(int) { stop_flag.store(true); }
}  // namespace

StopSignals::StopSignals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool StopSignals::requested() { return stop_flag.load(); }

}  // namespace btm
