#include <gtest/gtest.h>

#include "config.h"

namespace evl {
namespace {

// Expects `fn` to throw ConfigError whose message contains every piece in `parts`.
template <typename Fn>
void ExpectConfigError(Fn fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    FAIL() << "no ConfigError thrown";
  } catch (const ConfigError& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
        << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

TEST(ConfigParse, ValidFileParsesAndFinalizes) {
  EvlConfig c = ParseConfigText(R"(
model {
  backbone { preset: "ViT-L/14" precision: BF16 }  # comment
  decoder { num_layers: 4 qkv_dim: 1024 num_heads: 16 }
  num_frames: 16
}
data { mean: [0.5, 0.5, 0.5] }
)", "ok.pbtxt");
  Finalize(&c);
  EXPECT_EQ(c.model().backbone().width(), 1024);
  EXPECT_EQ(c.model().backbone().layers(), 24);
  EXPECT_EQ(c.model().backbone().patch_size(), 14);
  EXPECT_EQ(c.model().backbone().precision(), BF16);
  EXPECT_EQ(c.model().num_frames(), 16);
  EXPECT_FLOAT_EQ(c.data().mean(1), 0.5f);
  EXPECT_FLOAT_EQ(c.data().std(0), 0.26862954f);  // CLIP default filled in
  EXPECT_TRUE(c.train().has_lr());                // defaults are explicit after Finalize
  EXPECT_FLOAT_EQ(c.train().lr(), 4e-4f);
}

TEST(ConfigParse, UnknownFieldNamesFileLineColumnAndPath) {
  ExpectConfigError(
      [] { ParseConfigText("model {\n  decoder {\n    num_layayers: 3\n  }\n}\n", "cfg.pbtxt"); },
      {"cfg.pbtxt:3:5:", "model.decoder.num_layayers", "no field named"});
}

TEST(ConfigParse, TypeErrorNamesFieldAndPosition) {
  ExpectConfigError([] { ParseConfigText("model { num_frames: \"eight\" }\n", "t.pbtxt"); },
                    {"t.pbtxt:1:21:", "field 'model.num_frames'", "integer"});
  ExpectConfigError(
      [] { ParseConfigText("model {\n backbone { precision: FP8 }\n}", "e.pbtxt"); },
      {"e.pbtxt:2:24:", "model.backbone.precision", "FP8"});
}

TEST(ConfigParse, SyntaxErrorNamesPosition) {
  ExpectConfigError([] { ParseConfigText("train {\n  lr: 0.1\n", "s.pbtxt"); },
                    {"s.pbtxt:3:", "Expected"});
  ExpectConfigError([] { ParseConfigText("train { lr 0.1 }", "s2.pbtxt"); },
                    {"s2.pbtxt:1:12:", "field 'train.lr'"});
}

TEST(ConfigParse, MissingFileIsNamed) {
  ExpectConfigError([] { LoadConfigFile("/nonexistent/x.pbtxt"); },
                    {"/nonexistent/x.pbtxt", "cannot open"});
}

TEST(ConfigOverride, NestedScalarEnumStringAndBool) {
  EvlConfig c;
  ApplyOverride(&c, "model.decoder.num_layers=2");
  ApplyOverride(&c, "model.backbone.precision=BF16");
  ApplyOverride(&c, "model.backbone.weights=/w/ViT-B-16.pt");
  ApplyOverride(&c, "model.decoder.temporal_conv=false");
  ApplyOverride(&c, "eval.aggregation=2");
  EXPECT_EQ(c.model().decoder().num_layers(), 2);
  EXPECT_EQ(c.model().backbone().precision(), BF16);
  EXPECT_EQ(c.model().backbone().weights(), "/w/ViT-B-16.pt");
  EXPECT_FALSE(c.model().decoder().temporal_conv());
  EXPECT_EQ(c.eval().aggregation(), MAX_SOFTMAX);
  // An empty string switches a string field off (e.g. a recipe's auto_augment).
  ApplyOverride(&c, "data.auto_augment=rand-m7-n4");
  ApplyOverride(&c, "data.auto_augment=");
  EXPECT_TRUE(c.data().has_auto_augment());
  EXPECT_EQ(c.data().auto_augment(), "");
}

TEST(ConfigOverride, RepeatedListAndIndex) {
  EvlConfig c;
  ApplyOverride(&c, "data.mean=0.1,0.2,0.3");
  ASSERT_EQ(c.data().mean_size(), 3);
  EXPECT_FLOAT_EQ(c.data().mean(2), 0.3f);
  ApplyOverride(&c, "data.mean=[0.4, 0.5]");
  ASSERT_EQ(c.data().mean_size(), 2);
  ApplyOverride(&c, "data.mean[1]=0.9");
  EXPECT_FLOAT_EQ(c.data().mean(1), 0.9f);
  ApplyOverride(&c, "data.mean[2]=0.7");  // index == size appends
  ASSERT_EQ(c.data().mean_size(), 3);
  EXPECT_FLOAT_EQ(c.data().mean(2), 0.7f);
}

TEST(ConfigOverride, BadPathsAndValuesNameThePath) {
  EvlConfig c;
  ExpectConfigError([&] { ApplyOverride(&c, "model.decodr.num_layers=3"); },
                    {"--set model.decodr.num_layers=3", "'model.decodr'", "evl.ModelConfig"});
  ExpectConfigError([&] { ApplyOverride(&c, "model.num_frames.x=3"); },
                    {"'model.num_frames' is a scalar"});
  ExpectConfigError([&] { ApplyOverride(&c, "model.num_frames=abc"); },
                    {"--set model.num_frames=abc", "'abc'", "num_frames"});
  ExpectConfigError([&] { ApplyOverride(&c, "model.backbone.precision=FP8"); },
                    {"precision", "enum"});
  ExpectConfigError([&] { ApplyOverride(&c, "model=3"); }, {"'model' is a message"});
  ExpectConfigError([&] { ApplyOverride(&c, "model.num_frames"); }, {"PATH=VALUE"});
  ExpectConfigError([&] { ApplyOverride(&c, "data.mean[5]=1"); }, {"past the end"});
  ExpectConfigError([&] { ApplyOverride(&c, "train.lr="); }, {"empty value for field 'lr'"});
}

TEST(ConfigFinalize, ValidationNamesTheField) {
  EvlConfig c;
  ApplyOverride(&c, "model.backbone.preset=ViT-H/99");
  ExpectConfigError([&] { Finalize(&c); }, {"model.backbone.preset", "ViT-H/99"});
  EvlConfig d;
  ApplyOverride(&d, "model.backbone.preset=custom");
  ApplyOverride(&d, "model.backbone.width=64");
  ExpectConfigError([&] { Finalize(&d); }, {"model.backbone.layers", "custom"});
  EvlConfig e;
  ApplyOverride(&e, "model.decoder.num_layers=13");
  ExpectConfigError([&] { Finalize(&e); }, {"model.decoder.num_layers", "exceeds"});
}

TEST(ConfigFinalize, PresetFieldsCanBeOverridden) {
  EvlConfig c = ParseConfigText("model { backbone { preset: \"ViT-B/16\" layers: 6 } }", "p");
  Finalize(&c);
  EXPECT_EQ(c.model().backbone().layers(), 6);
  EXPECT_EQ(c.model().backbone().width(), 768);
}

TEST(ConfigText, EffectiveConfigRoundTrips) {
  EvlConfig c = LoadEffectiveConfig("", {});
  std::string once = ConfigToText(c);
  EvlConfig again = ParseConfigText(once, "printed");
  Finalize(&again);
  EXPECT_EQ(ConfigToText(again), once);
}

}  // namespace
}  // namespace evl
