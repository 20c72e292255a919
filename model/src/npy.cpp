// .npy I/O, written here because Debian ships no C++ NumPy-format library (cnpy is not packaged)
// and evl needs only float32 C-order arrays.
#include "evl/npy.h"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace evl {

at::Tensor ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open .npy file");
  char magic[8];
  in.read(magic, 8);
  if (in.gcount() != 8 || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw std::runtime_error(path + ": not a .npy file (bad magic)");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t l = 0;
    in.read(reinterpret_cast<char*>(&l), 2);
    header_len = l;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  if (!in || header_len > (1u << 20)) throw std::runtime_error(path + ": corrupt .npy header");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  if (!in) throw std::runtime_error(path + ": truncated .npy header");
  auto field = [&](const std::string& key) {
    size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) throw std::runtime_error(path + ": .npy header lacks '" + key + "'");
    return header.substr(header.find(':', k) + 1);
  };
  std::string descr = field("descr");
  const bool f4 = descr.find("<f4") != std::string::npos, f8 = descr.find("<f8") != std::string::npos;
  if (!f4 && !f8) throw std::runtime_error(path + ": .npy dtype must be little-endian float32 or float64");
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw std::runtime_error(path + ": Fortran-order .npy arrays are not supported");
  std::string shape_text = field("shape");
  shape_text = shape_text.substr(shape_text.find('(') + 1, shape_text.find(')') - shape_text.find('(') - 1);
  std::vector<int64_t> shape;
  int64_t numel = 1;
  size_t p = 0;
  while (p < shape_text.size()) {
    size_t q = shape_text.find(',', p);
    std::string item = shape_text.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (item.find_first_of("0123456789") != std::string::npos) {
      shape.push_back(std::stoll(item));
      numel *= shape.back();
    }
    if (q == std::string::npos) break;
    p = q + 1;
  }
  auto t = torch::empty(shape, f4 ? torch::kFloat : torch::kDouble);
  in.read(static_cast<char*>(t.data_ptr()), numel * (f4 ? 4 : 8));
  if (in.gcount() != numel * (f4 ? 4 : 8)) throw std::runtime_error(path + ": truncated .npy data");
  return t.to(torch::kFloat);
}

std::string NpyBytes(const at::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU, torch::kFloat).contiguous();
  std::string shape = "(";
  for (int64_t d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.erase(shape.size() - 2);
  else if (t.dim() == 1) shape.erase(shape.size() - 1);
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.append(reinterpret_cast<const char*>(&len), 2);
  bytes += header;
  bytes.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * 4);
  return bytes;
}

void WriteNpy(const std::string& path, const at::Tensor& tensor) {
  const std::string bytes = NpyBytes(tensor);
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot write .npy file");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();  // the last buffer reaches the file here: a full disk shows now or never
  if (!out) throw std::runtime_error(path + ": write failed");
}

}  // namespace evl
