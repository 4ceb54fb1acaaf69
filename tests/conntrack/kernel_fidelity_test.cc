#include "gtest/gtest.h"
TEST(KernelFidelity, Placeholder) { GTEST_SKIP() << "not written yet"; }
