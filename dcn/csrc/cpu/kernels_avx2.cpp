// The CPU kernels (kernels_impl.h) compiled for the instruction set "avx2"; setup.py gives this
// file its compiler flags. See kernels.h.
#define DCN_ISA avx2
#define DCN_ISA_NAME "avx2"
// Empty on other architectures (the table then does not exist and is never asked for).
#if defined(__x86_64__) || defined(_M_X64)
#include "kernels_impl.h"

namespace dcn {
namespace cpu {
const KernelTable kAvx2Kernels = avx2::kTable;
}  // namespace cpu
}  // namespace dcn
#endif
