// The CPU kernels (kernels_impl.h) compiled for the instruction set "baseline"; setup.py gives this
// file its compiler flags. See kernels.h.
#define DCN_ISA baseline
#define DCN_ISA_NAME "baseline"
#include "kernels_impl.h"

namespace dcn {
namespace cpu {
const KernelTable kBaselineKernels = baseline::kTable;
}  // namespace cpu
}  // namespace dcn
