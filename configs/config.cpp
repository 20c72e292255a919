#include "config.h"
#include "default_config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <fstream>
#include <sstream>

namespace evl {
namespace {

namespace pb = google::protobuf;

const BackbonePreset kPresets[] = {
    {"ViT-B/16", 768, 12, 12, 16, 224},
    {"ViT-L/14", 1024, 24, 16, 14, 224},
    {"ViT-L/14-336", 1024, 24, 16, 14, 336},
};

struct FieldAt {
  std::string path;           // dotted field path, e.g. "model.decoder.num_layers"
  int line = -1, column = -1;  // start of the last token before the error position
};

// Reconstructs the dotted field path at (line, col) by re-tokenizing the text: protobuf's parser
// reports positions, not the field it was inside, and users need "model.decoder.num_layers".
FieldAt FieldPathAt(const std::string& text, int line, int col) {
  pb::io::ArrayInputStream input(text.data(), static_cast<int>(text.size()));
  struct Silent : pb::io::ErrorCollector {
    void AddError(int, int, const std::string&) override {}
  } silent;
  pb::io::Tokenizer tok(&input, &silent);
  tok.set_comment_style(pb::io::Tokenizer::SH_COMMENT_STYLE);
  FieldAt at;
  std::vector<std::string> scope;
  std::string pending;  // identifier that may still turn out to name a field
  std::string field;    // last field named in the current scope
  std::string prev;     // previous token's text
  while (tok.Next()) {
    const auto& t = tok.current();
    if (t.line > line || (t.line == line && t.column >= col)) break;
    at.line = t.line;
    at.column = t.column;
    if (t.type == pb::io::Tokenizer::TYPE_IDENTIFIER && prev != ":") {
      pending = t.text;
    } else if (t.text == ":" && !pending.empty()) {
      field = pending;
      pending.clear();
    } else if (t.text == "{" || t.text == "<") {
      if (!pending.empty()) field = pending;
      scope.push_back(field);
      field.clear();
      pending.clear();
    } else if (t.text == "}" || t.text == ">") {
      if (!scope.empty()) scope.pop_back();
      field.clear();
      pending.clear();
    }
    prev = t.text;
  }
  if (!pending.empty()) field = pending;
  for (const auto& s : scope) at.path += s + ".";
  at.path += field;
  if (!at.path.empty() && at.path.back() == '.') at.path.pop_back();
  return at;
}

class CollectFirstError : public pb::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!has_error) {
      has_error = true;
      this->line = line;
      this->column = column;
      this->message = message;
    }
  }
  void AddWarning(int, int, const std::string&) override {}
  bool has_error = false;
  int line = 0, column = 0;
  std::string message;
};

[[noreturn]] void Fail(const std::string& where, const std::string& what) {
  throw ConfigError(where + ": " + what);
}

std::string FieldNames(const pb::Descriptor* d) {
  std::string s;
  for (int i = 0; i < d->field_count(); ++i) s += (i ? ", " : "") + d->field(i)->name();
  return s;
}

void FillDefaults(pb::Message* msg) {
  const pb::Descriptor* d = msg->GetDescriptor();
  const pb::Reflection* r = msg->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      FillDefaults(r->MutableMessage(msg, f));
      continue;
    }
    if (r->HasField(*msg, f) || !f->has_default_value()) continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: r->SetInt32(msg, f, f->default_value_int32()); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(msg, f, f->default_value_int64()); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(msg, f, f->default_value_uint32()); break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(msg, f, f->default_value_uint64()); break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(msg, f, f->default_value_float()); break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(msg, f, f->default_value_double()); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(msg, f, f->default_value_bool()); break;
      case pb::FieldDescriptor::CPPTYPE_STRING: r->SetString(msg, f, f->default_value_string()); break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: r->SetEnum(msg, f, f->default_value_enum()); break;
      default: break;
    }
  }
}

// Copies element 0 of `src`'s repeated field into element `index` of `dst`'s.
void CopyRepeatedElement(const pb::Message& src, pb::Message* dst, const pb::FieldDescriptor* f,
                         int index) {
  const pb::Reflection* r = dst->GetReflection();
  switch (f->cpp_type()) {
#define EVL_COPY(CT, Name) \
  case pb::FieldDescriptor::CT: r->SetRepeated##Name(dst, f, index, r->GetRepeated##Name(src, f, 0)); break;
    EVL_COPY(CPPTYPE_INT32, Int32)
    EVL_COPY(CPPTYPE_INT64, Int64)
    EVL_COPY(CPPTYPE_UINT32, UInt32)
    EVL_COPY(CPPTYPE_UINT64, UInt64)
    EVL_COPY(CPPTYPE_FLOAT, Float)
    EVL_COPY(CPPTYPE_DOUBLE, Double)
    EVL_COPY(CPPTYPE_BOOL, Bool)
    EVL_COPY(CPPTYPE_STRING, String)
    EVL_COPY(CPPTYPE_ENUM, Enum)
#undef EVL_COPY
    default: break;
  }
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Text-format literal for one value of field f: strings may be given without quotes.
std::string Literal(const pb::FieldDescriptor* f, const std::string& raw) {
  std::string v = Trim(raw);
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING &&
      !(v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())) {
    std::string q = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  }
  return v;
}

void ParseValueInto(const std::string& where, const pb::FieldDescriptor* f, const std::string& raw,
                    pb::Message* msg) {
  // An empty string field is a value (it switches auto_augment, weights, lists off); elsewhere a typo.
  if (Trim(raw).empty() && f->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING)
    Fail(where, "empty value for field '" + f->name() + "'");
  // A parser with its own error collector: the static helper prints "[libprotobuf ERROR ...]" lines
  // beside the message below, which says the same for the user.
  pb::TextFormat::Parser parser;
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFieldValueFromString(Literal(f, raw), f, msg)) {
    std::string type = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM
                           ? "enum " + f->enum_type()->name() + " (e.g. " +
                                 f->enum_type()->value(0)->name() + ")"
                           : f->cpp_type_name();
    Fail(where, "'" + Trim(raw) + "' is not a valid " + type + " for field '" + f->name() + "'");
  }
}

void RequirePositive(const std::string& field, long long v) {
  if (v <= 0) Fail("config", "field '" + field + "' must be > 0, got " + std::to_string(v));
}

}  // namespace

const BackbonePreset* FindBackbonePreset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return &p;
  return nullptr;
}

EvlConfig ParseConfigText(const std::string& text, const std::string& source_name) {
  EvlConfig config;
  pb::TextFormat::Parser parser;
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config) || errors.has_error) {
    FieldAt at = FieldPathAt(text, errors.line, errors.column);
    const std::string& path = at.path;
    // For a bad name or enum value protobuf points just past the offending token; point at it.
    const bool token_error = errors.message.find("no field named") != std::string::npos ||
                             errors.message.find("Unknown enumeration value") != std::string::npos;
    int line = errors.line, column = errors.column;
    if (token_error && at.line == line) column = at.column;
    std::ostringstream where;
    where << source_name << ":" << line + 1 << ":" << column + 1;
    Fail(where.str(), (path.empty() ? "" : "field '" + path + "': ") + errors.message);
  }
  return config;
}

EvlConfig LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, "cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfigText(ss.str(), path);
}

void ApplyOverride(EvlConfig* config, const std::string& assignment) {
  const std::string where = "--set " + assignment;
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) Fail(where, "expected PATH=VALUE, e.g. model.num_frames=16");
  const std::string path = Trim(assignment.substr(0, eq));
  const std::string value = assignment.substr(eq + 1);

  pb::Message* msg = config;
  std::string walked;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int index = -1;
    size_t br = part.find('[');
    if (br != std::string::npos) {
      if (part.back() != ']') Fail(where, "bad index in '" + part + "'");
      try {
        index = std::stoi(part.substr(br + 1, part.size() - br - 2));
      } catch (const std::exception&) {
        Fail(where, "bad index in '" + part + "'");
      }
      part = part.substr(0, br);
    }
    walked += (walked.empty() ? "" : ".") + part;
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* f = d->FindFieldByName(part);
    if (!f)
      Fail(where, "'" + walked + "': no field '" + part + "' in " + d->full_name() +
                      " (fields: " + FieldNames(d) + ")");
    const pb::Reflection* r = msg->GetReflection();
    const bool last = dot == std::string::npos;
    if (index >= 0 && !f->is_repeated()) Fail(where, "'" + walked + "' is not a repeated field");
    if (!last) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE)
        Fail(where, "'" + walked + "' is a scalar, it has no field '" + path.substr(dot + 1) + "'");
      if (f->is_repeated()) {
        if (index < 0 || index > r->FieldSize(*msg, f))
          Fail(where, "'" + walked + "' is repeated: give an index 0.." +
                          std::to_string(r->FieldSize(*msg, f)));
        msg = index == r->FieldSize(*msg, f) ? r->AddMessage(msg, f)
                                             : r->MutableRepeatedMessage(msg, f, index);
      } else {
        msg = r->MutableMessage(msg, f);
      }
      start = dot + 1;
      continue;
    }
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)
      Fail(where, "'" + walked + "' is a message; set one of its fields (" +
                      FieldNames(f->message_type()) + ")");
    if (!f->is_repeated()) {
      std::unique_ptr<pb::Message> scratch(msg->New());
      ParseValueInto(where, f, value, scratch.get());
      r->ClearField(msg, f);
      msg->MergeFrom(*scratch);
    } else if (index >= 0) {
      const int size = r->FieldSize(*msg, f);
      if (index > size)
        Fail(where, "index " + std::to_string(index) + " is past the end of '" + walked +
                        "' (size " + std::to_string(size) + ")");
      std::unique_ptr<pb::Message> scratch(msg->New());
      ParseValueInto(where, f, value, scratch.get());
      if (index == size)
        msg->MergeFrom(*scratch);
      else
        CopyRepeatedElement(*scratch, msg, f, index);
    } else {
      std::string list = Trim(value);
      if (list.size() >= 2 && list.front() == '[' && list.back() == ']')
        list = list.substr(1, list.size() - 2);
      std::unique_ptr<pb::Message> scratch(msg->New());
      std::stringstream ss(list);
      std::string item;
      while (std::getline(ss, item, ',')) ParseValueInto(where, f, item, scratch.get());
      r->ClearField(msg, f);
      msg->MergeFrom(*scratch);
    }
    return;
  }
}

void Finalize(EvlConfig* config) {
  BackboneConfig* bb = config->mutable_model()->mutable_backbone();
  const std::string preset = bb->preset();
  if (preset == "custom") {
    const char* need[] = {"width", "layers", "heads", "patch_size", "input_size"};
    for (const char* n : need)
      if (!bb->GetReflection()->HasField(*bb, bb->GetDescriptor()->FindFieldByName(n)))
        Fail("config", std::string("field 'model.backbone.") + n +
                           "' is required when model.backbone.preset is \"custom\"");
  } else {
    const BackbonePreset* p = FindBackbonePreset(preset);
    if (!p)
      Fail("config", "field 'model.backbone.preset': unknown preset \"" + preset +
                         "\" (ViT-B/16, ViT-L/14, ViT-L/14-336, custom)");
    if (!bb->has_width()) bb->set_width(p->width);
    if (!bb->has_layers()) bb->set_layers(p->layers);
    if (!bb->has_heads()) bb->set_heads(p->heads);
    if (!bb->has_patch_size()) bb->set_patch_size(p->patch_size);
    if (!bb->has_input_size()) bb->set_input_size(p->input_size);
  }
  if (!bb->has_mlp_factor()) bb->set_mlp_factor(4.0f);
  DataConfig* data = config->mutable_data();
  if (data->mean_size() == 0)
    for (float v : {0.48145466f, 0.4578275f, 0.40821073f}) data->add_mean(v);
  if (data->std_size() == 0)
    for (float v : {0.26862954f, 0.26130258f, 0.27577711f}) data->add_std(v);
  FillDefaults(config);

  RequirePositive("model.backbone.width", bb->width());
  RequirePositive("model.backbone.layers", bb->layers());
  RequirePositive("model.backbone.heads", bb->heads());
  RequirePositive("model.backbone.patch_size", bb->patch_size());
  RequirePositive("model.backbone.input_size", bb->input_size());
  if (bb->width() % bb->heads())
    Fail("config", "field 'model.backbone.width' (" + std::to_string(bb->width()) +
                       ") must divide by model.backbone.heads (" + std::to_string(bb->heads()) + ")");
  if (bb->input_size() % bb->patch_size())
    Fail("config", "field 'model.backbone.input_size' must divide by model.backbone.patch_size");
  const DecoderConfig& dec = config->model().decoder();
  RequirePositive("model.decoder.num_layers", dec.num_layers());
  RequirePositive("model.decoder.num_heads", dec.num_heads());
  if (dec.num_layers() > bb->layers())
    Fail("config", "field 'model.decoder.num_layers' (" + std::to_string(dec.num_layers()) +
                       ") exceeds model.backbone.layers (" + std::to_string(bb->layers()) + ")");
  if (dec.qkv_dim() % dec.num_heads())
    Fail("config", "field 'model.decoder.qkv_dim' must divide by model.decoder.num_heads");
  RequirePositive("model.num_frames", config->model().num_frames());
  RequirePositive("model.num_classes", config->model().num_classes());
  if (data->mean_size() != 3) Fail("config", "field 'data.mean' needs 3 values (RGB)");
  if (data->std_size() != 3) Fail("config", "field 'data.std' needs 3 values (RGB)");
  RequirePositive("data.sampling_rate", data->sampling_rate());
  if (data->num_spatial_views() != 1 && data->num_spatial_views() != 3)
    Fail("config", "field 'data.num_spatial_views' must be 1 or 3");
  RequirePositive("data.num_temporal_views", data->num_temporal_views());
  RequirePositive("train.batch_size", config->train().batch_size());
  RequirePositive("train.batch_split", config->train().batch_split());
  RequirePositive("train.num_steps", config->train().num_steps());
}

const char* DefaultConfigText() { return kQuickstartConfigText; }

EvlConfig LoadEffectiveConfig(const std::string& path, const std::vector<std::string>& overrides) {
  EvlConfig config = path.empty() ? ParseConfigText(DefaultConfigText(), "<embedded default>")
                                  : LoadConfigFile(path);
  for (const auto& o : overrides) ApplyOverride(&config, o);
  Finalize(&config);
  return config;
}

namespace {

std::string FieldValueText(const pb::Message& m, const pb::FieldDescriptor* f) {
  std::string out;
  if (f->is_repeated()) {
    const int n = m.GetReflection()->FieldSize(m, f);
    out = "[";
    for (int i = 0; i < n; ++i) {
      std::string v;
      pb::TextFormat::PrintFieldValueToString(m, f, i, &v);
      out += (i ? ", " : "") + v;
    }
    return out + "]";
  }
  pb::TextFormat::PrintFieldValueToString(m, f, -1, &out);
  return out;
}

void CompareForResume(const pb::Message& a, const pb::Message& b, const std::string& prefix,
                      std::vector<std::string>* diffs) {
  const pb::Descriptor* d = a.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->options().GetExtension(resume_may_change)) continue;
    const std::string name = prefix + f->name();
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      CompareForResume(a.GetReflection()->GetMessage(a, f), b.GetReflection()->GetMessage(b, f), name + ".", diffs);
      continue;
    }
    const std::string va = FieldValueText(a, f), vb = FieldValueText(b, f);
    if (va != vb) diffs->push_back(name + ": " + va + " -> " + vb);
  }
}

}  // namespace

std::vector<std::string> ResumeConfigDifferences(const EvlConfig& saved, const EvlConfig& now) {
  std::vector<std::string> diffs;
  CompareForResume(saved, now, "", &diffs);
  return diffs;
}

std::string ConfigToText(const pb::Message& config) {
  pb::TextFormat::Printer printer;
  printer.SetUseShortRepeatedPrimitives(true);
  std::string out;
  printer.PrintToString(config, &out);
  return out;
}

}  // namespace evl
