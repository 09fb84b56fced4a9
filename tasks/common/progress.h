// progress.h — a training progress bar: step, loss, accuracy, it/s, ETA.
//
// On a terminal it redraws one line (carriage return); otherwise (CI logs, pipes) it prints a line
// every `every` steps so logs stay readable.
#pragma once

#include <chrono>
#include <string>

namespace muxnet::tasks {

class ProgressBar {
 public:
  ProgressBar(int64_t total, std::string label, int64_t every = 50);
  // Call after each step; loss and accuracy are what to show (accuracy < 0: not shown).
  void update(int64_t step, double loss, double accuracy = -1.0);
  void finish();  // ends the line

 private:
  int64_t total_, every_;
  std::string label_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  int64_t last_drawn_ = -1;
};

}  // namespace muxnet::tasks
