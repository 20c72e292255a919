// Dataset lists in the official format: one "<path> <label>" per line.
//
// The label is the text after the *last* space, so paths may contain spaces (the official loader
// splits on every space and fails on them). Blank lines and lines starting with '#' are skipped.
// Relative paths are joined to data_root when it is non-empty.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace evl {

struct VideoEntry {
  std::string path;
  int label = 0;
};

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws DataError "LIST:LINE: ..." for a malformed line or a label outside [0, num_classes).
std::vector<VideoEntry> ReadVideoList(const std::string& list_path, const std::string& data_root,
                                      int num_classes);

// The same from the list's bytes, read elsewhere (a job's rank 0 reads a list once and broadcasts
// them); `list_path` names the list in errors.
std::vector<VideoEntry> ParseVideoList(const std::string& text, const std::string& list_path,
                                       const std::string& data_root, int num_classes);

// A list file's bytes; DataError naming it if it cannot be read.
std::string ReadListFile(const std::string& list_path);

}  // namespace evl
