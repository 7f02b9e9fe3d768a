// Which instruction set the CPU kernels run with (kernels.h), chosen at run time like ATen's CPU
// capability: the best this CPU supports, or the level that DCN_CPU_CAPABILITY names (read at the
// first use; a level above the CPU's is an error, not a silent fallback), or the one that
// dcn::set_cpu_capability sets (tests run every supported level in one process).
//
//   baseline  x86-64 (SSE2), or any other architecture
//   avx2      AVX2 + FMA (Haswell, Zen and later)
//   avx512    AVX-512 F, BW, VL, DQ (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "kernels.h"

namespace dcn {
namespace cpu {
namespace {

constexpr const char* kEnvVar = "DCN_CPU_CAPABILITY";
constexpr const char* kNames[] = {"baseline", "avx2", "avx512"};
constexpr int kLevels = 3;

int detected_level() {
#ifdef DCN_CPU_DISPATCH
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx2 && avx512) return 2;
  if (avx2) return 1;
#endif
  return 0;
}

const int kSupported = detected_level();

std::string supported_list() {
  std::string names;
  for (int level = 0; level <= kSupported; ++level) names += std::string(level ? ", " : "") + kNames[level];
  return names;
}

// The level named `name`, checked against this CPU; `origin` says where the name came from.
int parse_level(const std::string& name, const std::string& origin) {
  for (int level = 0; level < kLevels; ++level) {
    if (name == kNames[level]) {
      TORCH_CHECK_VALUE(level <= kSupported, origin, ": this CPU does not support ", name,
                        "; it supports ", supported_list());
      return level;
    }
  }
  TORCH_CHECK_VALUE(false, origin, ": unknown CPU capability '", name, "'; use one of baseline, avx2, avx512 (this CPU: ",
                    supported_list(), ")");
  return 0;
}

std::atomic<int> chosen{-1};  // -1: not chosen yet

int level() {
  int current = chosen.load();
  if (current >= 0) return current;
  const char* env = std::getenv(kEnvVar);
  current = (env != nullptr && *env != '\0') ? parse_level(env, std::string(kEnvVar) + "=" + env) : kSupported;
  chosen.store(current);
  return current;
}

std::string cpu_capability() { return kNames[level()]; }

// Sets the level (None: back to DCN_CPU_CAPABILITY or the best supported) and returns the previous one.
std::string set_cpu_capability(const std::optional<std::string>& name) {
  const std::string previous = cpu_capability();
  if (name.has_value()) {
    chosen.store(parse_level(*name, "dcn.set_cpu_capability"));
  } else {
    chosen.store(-1);
    level();
  }
  return previous;
}

std::vector<std::string> cpu_capabilities() {
  return std::vector<std::string>(kNames, kNames + kSupported + 1);
}

}  // namespace

const KernelTable& kernels() {
#ifdef DCN_CPU_DISPATCH
  switch (level()) {
    case 2:
      return kAvx512Kernels;
    case 1:
      return kAvx2Kernels;
    default:
      break;
  }
#else
  level();  // still validates DCN_CPU_CAPABILITY
#endif
  return kBaselineKernels;
}

TORCH_LIBRARY_FRAGMENT(dcn, m) {
  m.def("cpu_capability() -> str", &cpu_capability);
  m.def("set_cpu_capability(str? level) -> str", &set_cpu_capability);
  m.def("cpu_capabilities() -> str[]", &cpu_capabilities);
}

}  // namespace cpu
}  // namespace dcn
