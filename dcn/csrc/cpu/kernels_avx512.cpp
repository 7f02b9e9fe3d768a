// The CPU kernels (kernels_impl.h) compiled for the instruction set "avx512"; setup.py gives this
// file its compiler flags. See kernels.h.
#define DCN_ISA avx512
#define DCN_ISA_NAME "avx512"
// Empty on other architectures (the table then does not exist and is never asked for).
#if defined(__x86_64__) || defined(_M_X64)
#include "kernels_impl.h"

namespace dcn {
namespace cpu {
const KernelTable kAvx512Kernels = avx512::kTable;
}  // namespace cpu
}  // namespace dcn
#endif
