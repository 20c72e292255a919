// What the data pipeline keeps from one clip to the next stays bounded: a loader thread that met a
// 1080p clip does not keep its RandAugment scratch, and the frame orders the readers remember are
// forgotten least recently used first, never all at once.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "augment_ops.h"
#include "cpu_features.h"
#include "decoded_orders.h"

namespace evl::test {
namespace {

// Shears a clip of 8 frames h x w (every pixel) on this thread; returns the scratch kept after it.
size_t ScratchAfterAShear(int64_t h, int64_t w) {
  std::vector<uint8_t> clip(static_cast<size_t>(8 * h * w * 3), 128);
  const AugmentRegion all{0, 0, w, h};
  augment::AffineClip(clip.data(), 8, h, w, all, all, {1, 0.1, 0, 0, 1, 0}, /*vectorized=*/true);
  return augment::AffineScratchBytes();
}

// The scratch used to grow to the largest clip a thread ever met and stay there: ~50 MB in each
// decode thread once one 1080p source passed. It follows the clip now.
TEST(DataState, TheAugmentScratchFollowsTheClipAndShrinksAfterALargeOne) {
  const size_t small = 8 * 224 * 224 * 3, large = size_t{8} * 1080 * 1920 * 3;
  if (!HaveAvx2()) {  // the scalar path keeps nothing
    EXPECT_EQ(ScratchAfterAShear(1080, 1920), 0u);
    return;
  }
  EXPECT_EQ(ScratchAfterAShear(224, 224), small);
  EXPECT_EQ(ScratchAfterAShear(1080, 1920), large);
  EXPECT_EQ(ScratchAfterAShear(224, 224), small) << "the 1080p clip's scratch stayed";
  EXPECT_EQ(ScratchAfterAShear(200, 200), small) << "a clip a little smaller must not reallocate";
}

// Used to be cleared wholesale at its bound: then every remembered file paid a full decode again at
// once. Now only the least recently used file is forgotten.
TEST(DataState, DecodedOrdersForgetTheLeastRecentlyUsedFileOnly) {
  DecodedOrders orders(3);
  orders.Remember("a", {1, 2});
  orders.Remember("b", {3});
  orders.Remember("c", {4});
  ASSERT_TRUE(orders.Find("a"));  // a is now the most recently used; b the least
  orders.Remember("d", {5});
  EXPECT_EQ(orders.size(), 3u);
  EXPECT_FALSE(orders.Find("b"));
  EXPECT_EQ(*orders.Find("a"), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(orders.Find("c"));
  EXPECT_TRUE(orders.Find("d"));
  orders.Remember("c", {6});  // a known file is updated, nothing forgotten
  EXPECT_EQ(orders.size(), 3u);
  EXPECT_EQ(*orders.Find("c"), (std::vector<int64_t>{6}));
}

}  // namespace
}  // namespace evl::test
