#include "evl/video_list.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace evl {

std::string ReadListFile(const std::string& list_path) {
  std::ifstream in(list_path, std::ios::binary);
  if (!in) throw DataError(list_path + ": cannot open dataset list (" + std::strerror(errno) + ")");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw DataError(list_path + ": cannot read dataset list (" + std::strerror(errno) + ")");
  return bytes.str();
}

std::vector<VideoEntry> ParseVideoList(const std::string& text, const std::string& list_path,
                                       const std::string& data_root, int num_classes) {
  std::vector<VideoEntry> out;
  int line_no = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
    const std::string where = list_path + ":" + std::to_string(line_no) + ": ";
    const size_t sp = line.find_last_of(' ');
    if (sp == std::string::npos || sp == 0) throw DataError(where + "expected '<path> <label>', got '" + line + "'");
    VideoEntry e;
    e.path = line.substr(0, sp);
    const std::string label = line.substr(sp + 1);
    size_t used = 0;
    try {
      e.label = std::stoi(label, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != label.size()) throw DataError(where + "label '" + label + "' is not an integer");
    if (e.label < 0 || e.label >= num_classes)
      throw DataError(where + "label " + label + " is outside [0, " + std::to_string(num_classes) + ")");
    if (!data_root.empty() && e.path[0] != '/') e.path = data_root + "/" + e.path;
    out.push_back(std::move(e));
  }
  if (out.empty()) throw DataError(list_path + ": dataset list has no entries");
  return out;
}

std::vector<VideoEntry> ReadVideoList(const std::string& list_path, const std::string& data_root,
                                      int num_classes) {
  return ParseVideoList(ReadListFile(list_path), list_path, data_root, num_classes);
}

}  // namespace evl
