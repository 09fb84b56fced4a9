// metrics.h — metrics as JSON lines under runs/ (one object per line, appended).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace muxnet::tasks {

// Appends one line to runs/<name>.jsonl (creating the directory), adding a "time" field (UTC, ISO 8601).
void append_metrics(const std::string& runs_dir, const std::string& name, nlohmann::json record);

}  // namespace muxnet::tasks
