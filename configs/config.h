// The evl config: loading a protobuf text-format file against configs/evl_config.proto, applying
// `--set a.b.c=VALUE` overrides, expanding presets and filling defaults into the effective config.
//
// Every error is a ConfigError whose message names the place: "FILE:LINE:COL: field 'a.b.c': ..."
// for file errors, "--set a.b.c=V: ..." for overrides, "config: field 'a.b': ..." for validation.
// Functions are pure (no global state) and thread-compatible.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "evl_config.pb.h"

namespace evl {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses protobuf text format. `source_name` is used in error messages (usually the file path).
EvlConfig ParseConfigText(const std::string& text, const std::string& source_name);

// Reads and parses FILE. Throws ConfigError if it cannot be read or parsed.
EvlConfig LoadConfigFile(const std::string& path);

// Applies one "dotted.path=VALUE" override. Scalars, enums (by name or number), strings (quotes
// optional), and repeated scalars ("a,b,c" or "[a, b, c]" replaces the list; "field[i]=v" sets one).
void ApplyOverride(EvlConfig* config, const std::string& assignment);

// Expands the backbone preset, fills every unset field with its default (so the printed config is
// complete) and validates cross-field constraints.
void Finalize(EvlConfig* config);

// LoadConfigFile (or the embedded default when `path` is empty) + overrides + Finalize.
EvlConfig LoadEffectiveConfig(const std::string& path, const std::vector<std::string>& overrides);

// The embedded default: tiny custom backbone, synthetic dataset, trains in minutes on 2 CPU cores.
const char* DefaultConfigText();

// Text format, one field per line, stable across runs (used for round trips and checkpoints).
std::string ConfigToText(const google::protobuf::Message& config);

// Differences between a checkpoint's saved config and the new one in fields that change the math of
// training, as "a.b.c: old -> new" lines: every field except those marked (resume_may_change) in
// evl_config.proto, so a field added later is compared by default.
std::vector<std::string> ResumeConfigDifferences(const EvlConfig& saved, const EvlConfig& now);

struct BackbonePreset {
  const char* name;
  int width, layers, heads, patch_size, input_size;
};
// Returns nullptr for unknown names and for "custom".
const BackbonePreset* FindBackbonePreset(const std::string& name);

}  // namespace evl
