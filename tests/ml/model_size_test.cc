// Model size: the parameter count is known before anything is allocated, models over the limit are
// refused naming their size, and a failed allocation is an error, not an escaping std::bad_alloc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "ml/model.h"

namespace p2p::ml {
namespace {

using ::testing::HasSubstr;

ModelOptions Mlp(std::vector<int> hidden) {
  ModelOptions o;
  o.name = "mlp";
  o.hidden = std::move(hidden);
  o.input = Shape{1, 28, 28};
  o.num_classes = 10;
  return o;
}

TEST(ModelSizeTest, CountParamsMatchesTheBuiltModel) {
  for (const auto& hidden : {std::vector<int>{256, 128}, std::vector<int>{7}}) {
    Result<size_t> counted = Model::CountParams(Mlp(hidden));
    ASSERT_TRUE(counted.ok()) << counted.status().ToString();
    Result<std::unique_ptr<Model>> model = Model::Create(Mlp(hidden));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_EQ(*counted, (*model)->NumParams());
  }
  EXPECT_EQ(*Model::CountParams(Mlp({256, 128})), 784u * 256 + 256 + 256 * 128 + 128 + 1290);
}

// 784*1e6+1e6 + 1e12+1e6 + 1e6*10+10 parameters: 7.3 TiB for parameters and gradients.
TEST(ModelSizeTest, AModelOverTheLimitIsRefusedNamingItsSizeWithoutAllocating) {
  for (bool create : {false, true}) {
    const Status s = create ? Model::Create(Mlp({1000000, 1000000})).status()
                            : Model::CountParams(Mlp({1000000, 1000000})).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("model mlp (hidden 1000000,1000000) has 1000796000010 "
                                       "parameters, 7.3 TiB for the parameters and their "
                                       "gradients alone; the limit is 2147483648"));
  }
  // Widths whose product overflows a 64-bit count are refused too.
  const Status s =
      Model::CountParams(Mlp({2000000000, 2000000000, 2000000000, 2000000000, 2000000000}))
          .status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("parameters"));
}

// Current virtual size of this process, bytes.
uint64_t VirtualBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  statm >> pages;
  return pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Under the limit but more than the process may map: a real allocation failure (an address-space
// limit, as a function process runs under with --fn-memory), in a child process.
void CreateUnderAnAddressSpaceLimit() {
  const rlim_t limit = VirtualBytes() + (rlim_t{256} << 20);
  const rlimit rl{limit, limit};
  if (setrlimit(RLIMIT_AS, &rl) != 0) std::_Exit(3);
  // 784*200000+200000 + 200000*10+10 = 159 M parameters: 1.2 GiB for parameters and gradients.
  const Result<std::unique_ptr<Model>> model = Model::Create(Mlp({200000}));
  if (model.ok()) std::_Exit(4);
  std::fputs(model.status().message().c_str(), stderr);
  std::_Exit(model.status().code() == StatusCode::kUnavailable ? 0 : 5);
}

TEST(ModelSizeDeathTest, AFailedAllocationIsAnErrorNamingTheSize) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(CreateUnderAnAddressSpaceLimit(), ::testing::ExitedWithCode(0),
              "model mlp \\(hidden 200000\\) with 159000010 parameters: allocating 1\\.2 GiB for "
              "its parameters and gradients failed \\(out of memory\\)");
}

}  // namespace
}  // namespace p2p::ml
