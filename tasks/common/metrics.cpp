// metrics.cpp — JSONL metrics.
#include "tasks/common/metrics.h"

#include <sys/stat.h>

#include <ctime>
#include <fstream>

#include "tasks/common/cli.h"

namespace muxnet::tasks {

void append_metrics(const std::string& runs_dir, const std::string& name, nlohmann::json record) {
  if (runs_dir.empty()) return;
  mkdir(runs_dir.c_str(), 0755);  // EEXIST is fine; a real failure shows up when opening the file
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  record["time"] = stamp;
  const std::string path = runs_dir + "/" + name + ".jsonl";
  std::ofstream f(path, std::ios::app);
  if (!f) throw InputError("cannot write metrics to " + path);
  f << record.dump() << "\n";
}

}  // namespace muxnet::tasks
