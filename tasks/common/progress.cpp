// progress.cpp — the progress bar.
#include "tasks/common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace muxnet::tasks {

ProgressBar::ProgressBar(int64_t total, std::string label, int64_t every)
    : total_(total), every_(every > 0 ? every : 1), label_(std::move(label)), tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t step, double loss, double accuracy) {
  const bool last = step >= total_;
  if (!tty_ && !last && step % every_ != 0) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? double(step) / elapsed : 0.0;
  double eta = rate > 0 ? double(total_ - step) / rate : 0.0;
  const int width = 24;
  int filled = total_ > 0 ? int(width * step / total_) : width;
  std::string bar = std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.');
  char acc[32] = "";
  if (accuracy >= 0) std::snprintf(acc, sizeof acc, " acc %.4f", accuracy);
  std::fprintf(stderr, "%s%s [%s] %lld/%lld loss %.4f%s %.1f it/s ETA %.0fs%s", tty_ ? "\r" : "", label_.c_str(),
               bar.c_str(), (long long)step, (long long)total_, loss, acc, rate, eta, tty_ ? "  " : "\n");
  std::fflush(stderr);
  last_drawn_ = step;
}

void ProgressBar::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace muxnet::tasks
