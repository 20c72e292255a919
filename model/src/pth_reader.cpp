// A restricted reader for torch.save zip archives (official EVL .pth checkpoints).
//
// Why not torch::pickle_load: in LibTorch 1.13 it cannot read torch.save files (no SETITEM/APPEND,
// OrderedDict becomes None). Why not Python's pickle semantics: pickle runs arbitrary code. This is
// a small pickle *interpreter* that understands the opcodes of protocols 2-5 that tensor
// checkpoints use, builds plain values, and resolves only an allow-list of globals. Every length,
// index and offset read from the file is checked before use (it is fuzzed: tests/fuzz_pth_reader).
#include "evl/weights.h"

#include <torch/torch.h>

#ifdef EVL_HAVE_LIBZIP
#include <zip.h>
#endif

#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

namespace evl {

#ifndef EVL_HAVE_LIBZIP

StateDict ReadTorchSaveStateDict(const std::string& path) {
  throw WeightsError(path + ": evl_model was built without libzip; cannot read torch.save archives");
}
StateDict ReadTorchSaveStateDictFromBuffer(const std::string&, const std::string& name) {
  return ReadTorchSaveStateDict(name);
}

#else

namespace {

struct PyObj;
using Obj = std::shared_ptr<PyObj>;

struct PyObj {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kBytes, kList, kTuple, kDict, kTensor, kGlobal, kStorage };
  Kind kind = kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // str, bytes, global name "module.name", storage key
  std::vector<Obj> items;
  std::vector<std::pair<Obj, Obj>> dict;
  torch::Tensor tensor;  // kTensor, and kStorage (1-D, the whole storage)
};

Obj Make(PyObj::Kind k) {
  auto o = std::make_shared<PyObj>();
  o->kind = k;
  return o;
}

const char* KindName(PyObj::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "bytes", "list",
                                "tuple", "dict", "tensor", "global", "storage"};
  return names[k];
}

const std::map<std::string, c10::ScalarType>& StorageTypes() {
  static const std::map<std::string, c10::ScalarType> m = {
      {"torch.FloatStorage", torch::kFloat},     {"torch.DoubleStorage", torch::kDouble},
      {"torch.HalfStorage", torch::kHalf},       {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kLong},       {"torch.IntStorage", torch::kInt},
      {"torch.ShortStorage", torch::kShort},     {"torch.CharStorage", torch::kChar},
      {"torch.ByteStorage", torch::kByte},       {"torch.BoolStorage", torch::kBool}};
  return m;
}

bool AllowedGlobal(const std::string& name) {
  return name == "collections.OrderedDict" || name == "torch._utils._rebuild_tensor_v2" ||
         name == "torch._utils._rebuild_parameter" || StorageTypes().count(name) > 0;
}

// An open zip archive, from a file or from memory.
class ZipArchive {
 public:
  ZipArchive(const std::string& path, const std::string* bytes) : name_(path) {
    zip_error_t err;
    zip_error_init(&err);
    if (bytes) {
      zip_source_t* src = zip_source_buffer_create(bytes->data(), bytes->size(), 0, &err);
      if (src) {
        zip_ = zip_open_from_source(src, ZIP_RDONLY, &err);
        if (!zip_) zip_source_free(src);
      }
      archive_bytes_ = bytes->size();
    } else {
      int code = 0;
      zip_ = zip_open(path.c_str(), ZIP_RDONLY, &code);
      if (!zip_) zip_error_init_with_code(&err, code);
      FILE* f = std::fopen(path.c_str(), "rb");
      if (f) {
        std::fseek(f, 0, SEEK_END);
        archive_bytes_ = static_cast<uint64_t>(std::ftell(f));
        std::fclose(f);
      }
    }
    if (!zip_) {
      std::string why = zip_error_strerror(&err);
      zip_error_fini(&err);
      throw WeightsError(name_ + ": not a readable torch.save zip archive (" + why +
                         "); legacy pre-1.6 torch.save files are not supported");
    }
    zip_error_fini(&err);
  }
  ~ZipArchive() {
    if (zip_) zip_discard(zip_);
  }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  // The archive's record prefix ("archive/") found from its data.pkl entry.
  std::string FindPrefix() const {
    const zip_int64_t n = zip_get_num_entries(zip_, 0);
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* nm = zip_get_name(zip_, i, 0);
      if (!nm) continue;
      std::string s = nm;
      const std::string tail = "data.pkl";
      if (s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0 &&
          (s.size() == tail.size() || s[s.size() - tail.size() - 1] == '/'))
        return s.substr(0, s.size() - tail.size());
    }
    throw WeightsError(name_ + ": zip archive has no data.pkl (not a torch.save file)");
  }

  std::string Read(const std::string& entry) const {
    zip_int64_t idx = zip_name_locate(zip_, entry.c_str(), 0);
    if (idx < 0) throw WeightsError(name_ + ": missing archive entry '" + entry + "'");
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
      throw WeightsError(name_ + ": cannot stat archive entry '" + entry + "'");
    // A damaged or hostile directory can claim any size; bound it by what the bytes can hold.
    uint64_t bound = archive_bytes_;
    if ((st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method != ZIP_CM_STORE && (st.valid & ZIP_STAT_COMP_SIZE))
      bound = st.comp_size * 1032 + (1 << 20);
    if (st.size > bound)
      throw WeightsError(name_ + ": archive entry '" + entry + "' claims " + std::to_string(st.size) +
                         " bytes, more than the file can hold (truncated or corrupt)");
    zip_file_t* zf = zip_fopen_index(zip_, idx, 0);
    if (!zf) throw WeightsError(name_ + ": cannot open archive entry '" + entry + "'");
    std::string out(st.size, '\0');
    zip_int64_t got = zip_fread(zf, out.data(), st.size);
    zip_fclose(zf);
    if (got < 0 || static_cast<uint64_t>(got) != st.size)
      throw WeightsError(name_ + ": archive entry '" + entry + "' is truncated or corrupt");
    return out;
  }

 private:
  std::string name_;
  zip_t* zip_ = nullptr;
  uint64_t archive_bytes_ = 0;
};

class Unpickler {
 public:
  Unpickler(const std::string& data, const std::string& where, const ZipArchive& zip, const std::string& prefix)
      : d_(data), where_(where), zip_(zip), prefix_(prefix) {}
  // A pickle can build reference cycles (a list appended to itself through the memo), which
  // shared_ptr cannot free: break every container's links when the interpreter goes away.
  ~Unpickler() {
    for (auto& w : created_)
      if (auto o = w.lock()) {
        o->items.clear();
        o->dict.clear();
      }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  Obj Load() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = U8();
      switch (op) {
        case 0x80: U8(); break;                        // PROTO
        case 0x95: Bytes(8); break;                    // FRAME
        case '.': {                                    // STOP
          if (stack_.size() != 1) Fail(at, "STOP with a stack of " + std::to_string(stack_.size()));
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': Push(Container(PyObj::kDict)); break;
        case ']': Push(Container(PyObj::kList)); break;
        case ')': Push(Container(PyObj::kTuple)); break;
        case 'N': Push(Make(PyObj::kNone)); break;
        case 0x88: case 0x89: { auto o = Make(PyObj::kBool); o->b = op == 0x88; Push(o); break; }
        case 'J': { auto o = Make(PyObj::kInt); o->i = static_cast<int32_t>(LE(4)); Push(o); break; }
        case 'K': { auto o = Make(PyObj::kInt); o->i = static_cast<int64_t>(LE(1)); Push(o); break; }
        case 'M': { auto o = Make(PyObj::kInt); o->i = static_cast<int64_t>(LE(2)); Push(o); break; }
        case 0x8a: case 0x8b: {                        // LONG1 / LONG4
          const uint64_t n = op == 0x8a ? LE(1) : LE(4);
          if (n > 8) Fail(at, "integer wider than 64 bits");
          uint64_t v = n ? LE(static_cast<int>(n)) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
          auto o = Make(PyObj::kInt);
          o->i = static_cast<int64_t>(v);
          Push(o);
          break;
        }
        case 'G': {                                    // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (char c : Bytes(8)) bits = (bits << 8) | static_cast<uint8_t>(c);
          auto o = Make(PyObj::kFloat);
          std::memcpy(&o->f, &bits, 8);
          Push(o);
          break;
        }
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
          const bool is_str = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
          const int width = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
          auto o = Make(is_str ? PyObj::kStr : PyObj::kBytes);
          o->s = Bytes(LE(width));
          Push(o);
          break;
        }
        case 'q': memo_[LE(1)] = Top(at); break;       // BINPUT
        case 'r': memo_[LE(4)] = Top(at); break;       // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = Top(at); break;  // MEMOIZE
        case 'h': case 'j': {                          // BINGET / LONG_BINGET
          auto it = memo_.find(LE(op == 'h' ? 1 : 4));
          if (it == memo_.end()) Fail(at, "memo lookup of an unset slot");
          Push(it->second);
          break;
        }
        case 'c': {                                    // GLOBAL "module\nname\n"
          std::string module = Line(), name = Line();
          Push(Global(at, module + "." + name));
          break;
        }
        case 0x93: {                                   // STACK_GLOBAL
          auto name = Pop(at), module = Pop(at);
          if (name->kind != PyObj::kStr || module->kind != PyObj::kStr) Fail(at, "STACK_GLOBAL of non-strings");
          Push(Global(at, module->s + "." + name->s));
          break;
        }
        case 't': { auto o = Container(PyObj::kTuple); o->items = PopToMark(at); Push(o); break; }
        case 'l': { auto o = Container(PyObj::kList); o->items = PopToMark(at); Push(o); break; }
        case 'd': {
          auto items = PopToMark(at);
          if (items.size() % 2) Fail(at, "DICT with an odd number of items");
          auto o = Container(PyObj::kDict);
          for (size_t k = 0; k < items.size(); k += 2) o->dict.emplace_back(items[k], items[k + 1]);
          Push(o);
          break;
        }
        case 0x85: case 0x86: case 0x87: {             // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n + Floor()) Fail(at, "stack underflow");
          auto o = Container(PyObj::kTuple);
          o->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          Push(o);
          break;
        }
        case 's': {                                    // SETITEM
          auto v = Pop(at), k = Pop(at);
          Expect(at, Top(at), PyObj::kDict, "SETITEM")->dict.emplace_back(k, v);
          break;
        }
        case 'u': {                                    // SETITEMS
          auto items = PopToMark(at);
          if (items.size() % 2) Fail(at, "SETITEMS with an odd number of items");
          auto d = Expect(at, Top(at), PyObj::kDict, "SETITEMS");
          for (size_t k = 0; k < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'a': { auto v = Pop(at); Expect(at, Top(at), PyObj::kList, "APPEND")->items.push_back(v); break; }
        case 'e': {
          auto items = PopToMark(at);
          auto l = Expect(at, Top(at), PyObj::kList, "APPENDS");
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case '0': Pop(at); break;                      // POP
        case '1': PopToMark(at); break;                // POP_MARK
        case '2': Push(Top(at)); break;                // DUP
        case 'Q': Push(PersistentLoad(at, Pop(at))); break;  // BINPERSID
        case 'R': case 0x81: {                         // REDUCE / NEWOBJ
          auto args = Pop(at), fn = Pop(at);
          Push(Call(at, fn, args));
          break;
        }
        case 'b': {                                    // BUILD: state of OrderedDict / Parameter only
          auto state = Pop(at);
          auto target = Top(at);
          if (target->kind != PyObj::kDict && target->kind != PyObj::kTensor)
            Fail(at, std::string("BUILD on a ") + KindName(target->kind));
          (void)state;  // OrderedDict _metadata (module versions): not needed to load weights
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          Fail(at, std::string("unsupported pickle opcode ") + hex + " (not a tensor checkpoint?)");
        }
      }
    }
  }

 private:
  [[noreturn]] void Fail(size_t at, const std::string& what) const {
    throw WeightsError(where_ + ": offset " + std::to_string(at) + ": " + what);
  }
  uint8_t U8() {
    if (pos_ >= d_.size()) Fail(pos_, "unexpected end of pickle data (truncated)");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  uint64_t LE(int n) {
    if (d_.size() - pos_ < static_cast<size_t>(n)) Fail(pos_, "unexpected end of pickle data (truncated)");
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<uint8_t>(d_[pos_ + k])) << (8 * k);
    pos_ += n;
    return v;
  }
  std::string Bytes(uint64_t n) {
    if (n > d_.size() - pos_) Fail(pos_, "length " + std::to_string(n) + " runs past the end (truncated)");
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string Line() {
    size_t nl = d_.find('\n', pos_);
    if (nl == std::string::npos || nl - pos_ > 256) Fail(pos_, "bad GLOBAL name");
    std::string s = d_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Obj Container(PyObj::Kind k) {
    Obj o = Make(k);
    created_.push_back(o);
    return o;
  }
  void Push(Obj o) {
    if (stack_.size() > (1u << 22)) Fail(pos_, "pickle stack too deep");
    stack_.push_back(std::move(o));
  }
  Obj Top(size_t at) const {
    if (stack_.size() <= Floor()) Fail(at, "stack underflow");
    return stack_.back();
  }
  Obj Pop(size_t at) {
    Obj o = Top(at);
    stack_.pop_back();
    return o;
  }
  std::vector<Obj> PopToMark(size_t at) {
    if (marks_.empty()) Fail(at, "no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) Fail(at, "corrupt MARK");
    std::vector<Obj> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  Obj Expect(size_t at, Obj o, PyObj::Kind k, const char* op) const {
    if (o->kind != k)
      Fail(at, std::string(op) + " on a " + KindName(o->kind) + ", expected a " + KindName(k));
    return o;
  }
  Obj Global(size_t at, const std::string& name) const {
    if (!AllowedGlobal(name))
      Fail(at, "forbidden global '" + name + "': only tensor checkpoints are read (nothing is executed)");
    auto o = Make(PyObj::kGlobal);
    o->s = name;
    return o;
  }
  int64_t Int(size_t at, const Obj& o, const char* what) const {
    if (o->kind != PyObj::kInt) Fail(at, std::string(what) + " is a " + KindName(o->kind) + ", expected int");
    return o->i;
  }

  // ('storage', <torch.XStorage>, key, location, numel) -> the whole storage as a 1-D tensor.
  Obj PersistentLoad(size_t at, const Obj& pid) {
    if (pid->kind != PyObj::kTuple || pid->items.size() != 5 || pid->items[0]->kind != PyObj::kStr ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != PyObj::kGlobal || pid->items[2]->kind != PyObj::kStr)
      Fail(at, "unsupported persistent id (expected a tensor storage record)");
    const auto it = StorageTypes().find(pid->items[1]->s);
    if (it == StorageTypes().end()) Fail(at, "unsupported storage type '" + pid->items[1]->s + "'");
    const std::string& key = pid->items[2]->s;
    const int64_t numel = Int(at, pid->items[4], "storage size");
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    if (numel < 0) Fail(at, "negative storage size");
    const size_t elem = c10::elementSize(it->second);
    std::string bytes = zip_.Read(prefix_ + "data/" + key);
    if (static_cast<uint64_t>(numel) > bytes.size() / elem)
      Fail(at, "storage '" + key + "' holds " + std::to_string(bytes.size()) + " bytes, fewer than its " +
                   std::to_string(numel) + " elements need (truncated)");
    auto o = Make(PyObj::kStorage);
    o->s = key;
    o->tensor = torch::empty({numel}, torch::TensorOptions().dtype(it->second));
    if (numel) std::memcpy(o->tensor.data_ptr(), bytes.data(), numel * elem);
    storages_[key] = o;
    return o;
  }

  std::vector<int64_t> IntTuple(size_t at, const Obj& o, const char* what) const {
    if (o->kind != PyObj::kTuple && o->kind != PyObj::kList) Fail(at, std::string(what) + " is not a tuple");
    std::vector<int64_t> v;
    for (const auto& x : o->items) v.push_back(Int(at, x, what));
    return v;
  }

  Obj Call(size_t at, const Obj& fn, const Obj& args) {
    if (fn->kind != PyObj::kGlobal) Fail(at, std::string("call of a ") + KindName(fn->kind));
    if (args->kind != PyObj::kTuple) Fail(at, "call arguments are not a tuple");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      if (!a.empty()) Fail(at, "OrderedDict called with arguments");
      return Container(PyObj::kDict);
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (a.size() < 2 || a[0]->kind != PyObj::kTensor) Fail(at, "bad _rebuild_parameter arguments");
      return a[0];
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4 || a[0]->kind != PyObj::kStorage) Fail(at, "bad _rebuild_tensor_v2 arguments");
      const auto& storage = a[0]->tensor;
      const int64_t offset = Int(at, a[1], "storage offset");
      auto size = IntTuple(at, a[2], "size"), stride = IntTuple(at, a[3], "stride");
      if (size.size() != stride.size()) Fail(at, "size and stride ranks differ");
      // The largest element index the view touches must lie inside the storage.
      int64_t last = offset, numel = 1;
      bool overflow = offset < 0;
      for (size_t k = 0; k < size.size(); ++k) {
        if (size[k] < 0 || stride[k] < 0) overflow = true;
        if (overflow) break;
        if (size[k] == 0) numel = 0;
        int64_t span = 0;
        if (size[k] > 0 && (__builtin_mul_overflow(size[k] - 1, stride[k], &span) ||
                            __builtin_add_overflow(last, span, &last)))
          overflow = true;
      }
      if (overflow || (numel != 0 && last >= storage.numel()))
        Fail(at, "tensor view [offset " + std::to_string(offset) + "] lies outside its storage of " +
                     std::to_string(storage.numel()) + " elements");
      auto o = Make(PyObj::kTensor);
      o->tensor = numel == 0 ? torch::empty(size, storage.options()) : storage.as_strided(size, stride, offset);
      return o;
    }
    if (StorageTypes().count(fn->s)) Fail(at, "direct construction of " + fn->s + " is not supported");
    Fail(at, "call of '" + fn->s + "' is not allowed");
  }

  const std::string& d_;
  std::string where_;
  const ZipArchive& zip_;
  std::string prefix_;
  size_t pos_ = 0;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Obj> memo_;
  std::unordered_map<std::string, Obj> storages_;
  std::vector<std::weak_ptr<PyObj>> created_;
};

StateDict ExtractStateDict(const Obj& root, const std::string& name) {
  if (root->kind != PyObj::kDict) throw WeightsError(name + ": top level is a " + KindName(root->kind) + ", not a dict");
  const PyObj* dict = root.get();
  for (const auto& [k, v] : root->dict)
    if (k->kind == PyObj::kStr && (k->s == "model" || k->s == "state_dict") && v->kind == PyObj::kDict) {
      dict = v.get();
      break;
    }
  StateDict out;
  for (const auto& [k, v] : dict->dict) {
    if (k->kind != PyObj::kStr) throw WeightsError(name + ": state dict has a non-string key");
    if (v->kind != PyObj::kTensor)
      throw WeightsError(name + ": state dict entry '" + k->s + "' is a " + KindName(v->kind) + ", not a tensor");
    std::string key = k->s;
    if (key.rfind("module.", 0) == 0) key = key.substr(7);
    out.emplace_back(key, v->tensor);
  }
  return out;
}

StateDict ReadFromArchive(const ZipArchive& zip, const std::string& name) {
  const std::string prefix = zip.FindPrefix();
  const std::string pkl = zip.Read(prefix + "data.pkl");
  Unpickler u(pkl, name + ": " + prefix + "data.pkl", zip, prefix);
  return ExtractStateDict(u.Load(), name);
}

}  // namespace

StateDict ReadTorchSaveStateDict(const std::string& path) {
  ZipArchive zip(path, nullptr);
  return ReadFromArchive(zip, path);
}

StateDict ReadTorchSaveStateDictFromBuffer(const std::string& bytes, const std::string& name) {
  ZipArchive zip(name, &bytes);
  return ReadFromArchive(zip, name);
}

#endif  // EVL_HAVE_LIBZIP

}  // namespace evl
