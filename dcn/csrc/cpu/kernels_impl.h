// The CPU kernels of the DCN sampler and the dynamic filter, written once and compiled per
// instruction set: kernels_<isa>.cpp defines DCN_ISA (baseline, avx2, avx512), includes this file
// and is compiled with that set's flags (setup.py); the result is one KernelTable (kernels.h).
//
// DCN (channels_last input, pixel-major columns): for each output pixel the samples s = g * K + k
// of all deformable groups and taps are planned together, kLanes at a time (vec.h; the sampling
// math is dcn_sampling.h's plan_corners, shared with the CUDA kernels), from the pixel's offsets
// and masks, which lie together in channels_last maps. Each planned sample then reads the channels
// of its group at 4 corners (contiguous in channels_last) and writes them as one run of columns.
// This replaces planning one sample per output pixel and tap in scalar code, whose ~8 ns per plan
// served only 4 column entries when a deformable group has 4 channels (ADFNet: 32 channels, 8
// groups).
//
// Dynamic filter: channels_last tensors are filtered along the channels with channel vectors
// (tap-major kernels: a tap's channels contiguous; other kernel layouts one element at a time),
// NCHW tensors along rows with loops the compiler vectorises for the set's width.
#include <cstdint>
#include <type_traits>

#include "../dynamic_filter.h"
#include "vec.h"

namespace dcn {
namespace cpu {
namespace DCN_ISA {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Samples planned together: a multiple of every kLanes.
constexpr int kChunk = 80;  // ADFNet's 8 groups x 9 taps in one

template <typename Idx, typename A>
struct Plans {
  Idx idx[4][kChunk];
  Idx inner[kChunk];  // idx[0] when all four corners lie inside the image, else -1 (value plans only)
  A w[4][kChunk];
  A wy[4][kChunk];
  A wx[4][kChunk];
  A mask[kChunk];
};

template <typename T>
using AccT = typename Acc<T>::type;

// The vector planner runs for float and bfloat16 data when this build has one and the corners'
// element offsets in an image fit in int32.
template <typename T>
constexpr bool kSimdType = kLanes > 1 && !std::is_same_v<T, double>;

template <typename T>
bool use_simd(const DcnArgs<T>& a) {
  return kSimdType<T> && a.geo.height * a.geo.width * a.in_pixel < (int64_t{1} << 31) - a.in_pixel;
}

// Plans store the corners as element offsets in the image (flat index * pixel stride; negative:
// the corner is not read). Plans the samples [s0, s0 + n) of output pixel (oy, ox) one at a time
// (make_plan).
template <bool kGrad, bool kFold, typename T>
void plan_scalar(const DcnArgs<T>& a, int64_t oy, int64_t ox, const T* off, const T* msk, int64_t s0, int64_t n,
                 Plans<int64_t, AccT<T>>& pl) {
  using A = AccT<T>;
  const ConvGeometry& geo = a.geo;
  const int64_t y_base = oy * geo.stride_h - geo.pad_h;
  const int64_t x_base = ox * geo.stride_w - geo.pad_w;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t s = s0 + j;
    const A m = to_float(msk[s]);
    const A y = static_cast<A>(y_base + a.tap_y[s]) + static_cast<A>(to_float(off[2 * s]));
    const A x = static_cast<A>(x_base + a.tap_x[s]) + static_cast<A>(to_float(off[2 * s + 1]));
    SamplePlan<A, int64_t> plan;
    make_plan<kGrad>(y, x, geo.height, geo.width, kFold ? m : A(1), plan);
    for (int q = 0; q < 4; ++q) {
      pl.idx[q][j] = plan.idx[q] * a.in_pixel;
      pl.w[q][j] = plan.w[q];
      if constexpr (kGrad) {
        pl.wy[q][j] = plan.wy[q];
        pl.wx[q][j] = plan.wx[q];
      }
    }
    pl.mask[j] = m;
    if constexpr (!kGrad) pl.inner[j] = pl.idx[0][j] >= 0 && pl.idx[3][j] >= 0 ? pl.idx[0][j] : -1;
  }
}

#if defined(__AVX2__) || defined(__AVX512F__)
// The same plans, kLanes samples per step (plan_corners on vectors). With kInnerOnly (consumers that
// read only `inner` and the weights of inner samples: sample_fixed), a step whose samples all lie
// inside skips the corner indices and their masks: a third of the planner's work, and the planner
// is a fifth of the forward.
template <bool kGrad, bool kFold, bool kInnerOnly = false, typename T>
void plan_simd(const DcnArgs<T>& a, int64_t oy, int64_t ox, const T* off, const T* msk, int64_t s0, int64_t n,
               Plans<int32_t, float>& pl) {
  const ConvGeometry& geo = a.geo;
  const VI y_base(static_cast<int>(oy * geo.stride_h - geo.pad_h));
  const VI x_base(static_cast<int>(ox * geo.stride_w - geo.pad_w));
  const VI H(static_cast<int>(geo.height));
  const VI W(static_cast<int>(geo.width));
  const VF fH(static_cast<float>(geo.height));
  const VF fW(static_cast<float>(geo.width));
  const VI pixel(static_cast<int>(a.in_pixel));
  const VI row(static_cast<int>(geo.width * a.in_pixel));
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t s = s0 + j;
    const int count = static_cast<int>(imin(kLanes, n - j));
    VF dy, dx;
    load_pairs(off + 2 * s, count, dy, dx);
    const VF m = load_lanes(msk + s, count);
    // tap tables are padded to a multiple of 16 entries by the driver
    const VF y = to_lanes(y_base + load_lanes(a.tap_y + s)) + dy;
    const VF x = to_lanes(x_base + load_lanes(a.tap_x + s)) + dx;
    if constexpr (kInnerOnly && !kGrad) {
      // the four corners inside: 0 <= floor(y) <= H - 2 and likewise for x (the values and weights
      // are those of plan_corners)
      if (covers((y >= VF(0.0f)) & (y < fH - VF(1.0f)) & (x >= VF(0.0f)) & (x < fW - VF(1.0f)), first_lanes(count))) {
        const VF y0f = floor_of(y);
        const VF x0f = floor_of(x);
        const VF ly = y - y0f;
        const VF lx = x - x0f;
        const VF hy = VF(1.0f) - ly;
        const VF hx = VF(1.0f) - lx;
        const VF scale = kFold ? m : VF(1.0f);
        store_lanes(pl.inner + j, to_index(y0f) * row + to_index(x0f) * pixel);
        store_lanes(pl.w[0] + j, scale * hy * hx);
        store_lanes(pl.w[1] + j, scale * hy * lx);
        store_lanes(pl.w[2] + j, scale * ly * hx);
        store_lanes(pl.w[3] + j, scale * ly * lx);
        continue;
      }
    }
    const VM inside = in_band(y, x, fH, fW) & first_lanes(count);
    // Lanes outside the band take (0, 0) so that their conversions are defined; they get no corners.
    const VF ys = select(inside, y, VF(0.0f));
    const VF xs = select(inside, x, VF(0.0f));
    const VF y0f = floor_of(ys);
    const VF x0f = floor_of(xs);
    VI idx[4];
    VF w[4], wy[4], wx[4];
    // corner indices as element offsets: y * W * pixel + x * pixel
    plan_corners<kGrad>(inside, ys, xs, y0f, x0f, to_index(y0f), to_index(x0f), H, W, row, pixel,
                        kFold ? m : VF(1.0f), idx, w, wy, wx);
    if constexpr (!kGrad) store_lanes(pl.inner + j, select((idx[0] >= VI(0)) & (idx[3] >= VI(0)), idx[0], VI(-1)));
    for (int q = 0; q < 4; ++q) {
      store_lanes(pl.idx[q] + j, idx[q]);
      store_lanes(pl.w[q] + j, w[q]);
      if constexpr (kGrad) {
        store_lanes(pl.wy[q] + j, wy[q]);
        store_lanes(pl.wx[q] + j, wx[q]);
      }
    }
    if constexpr (kGrad) store_lanes(pl.mask + j, m);
  }
}
#endif

constexpr int64_t kPrefetchPixels = 2;

// Prefetches the cache lines of [p, p + bytes).
inline void prefetch(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i);
}

// Plans the samples [s_begin, s_end) of output pixel p of image b, kChunk at a time, and calls
// visit(plans, s0, n) for each chunk (plans[.][j] is sample s0 + j).
template <bool kGrad, bool kFold, bool kInnerOnly = false, typename T, typename Visit>
void for_samples(const DcnArgs<T>& a, bool simd, int64_t b, int64_t p, int64_t s_begin, int64_t s_end,
                 const Visit& visit) {
  const int64_t oy = p / a.geo.out_w;
  const int64_t ox = p % a.geo.out_w;
  const T* off = a.offset + b * a.off_image + oy * a.off_row + ox * a.off_col;
  const T* msk = a.mask + b * a.mask_image + oy * a.mask_row + ox * a.mask_col;
  // The offsets and masks of a pixel a little ahead are fetched meanwhile: planning waits on them.
  if (ox + kPrefetchPixels < a.geo.out_w) {
    prefetch(off + kPrefetchPixels * a.off_col + 2 * s_begin, 2 * (s_end - s_begin) * sizeof(T));
    prefetch(msk + kPrefetchPixels * a.mask_col + s_begin, (s_end - s_begin) * sizeof(T));
  }
#if defined(__AVX2__) || defined(__AVX512F__)
  if constexpr (kSimdType<T>) {
    if (simd) {
      Plans<int32_t, float> pl;
      for (int64_t s0 = s_begin; s0 < s_end; s0 += kChunk) {
        const int64_t n = imin(kChunk, s_end - s0);
        plan_simd<kGrad, kFold, kInnerOnly>(a, oy, ox, off, msk, s0, n, pl);
        visit(pl, s0, n);
      }
      return;
    }
  }
#endif
  (void)simd;
  Plans<int64_t, AccT<T>> pl;
  for (int64_t s0 = s_begin; s0 < s_end; s0 += kChunk) {
    const int64_t n = imin(kChunk, s_end - s0);
    plan_scalar<kGrad, kFold>(a, oy, ox, off, msk, s0, n, pl);
    visit(pl, s0, n);
  }
}

// Columns per output pixel in one convolution group: K * C / groups (see DcnArgs).
template <typename T>
int64_t group_columns(const DcnArgs<T>& a) {
  return a.geo.kernel_h * a.geo.kernel_w * (a.geo.channels / a.groups);
}

// Calls fn(c_lo, c_hi, column) for the runs of channels of deformable group g that lie in one
// convolution group, column = the run's first entry for tap k, relative to the pixel's first
// column entry.
template <typename T, typename Fn>
void for_runs(const DcnArgs<T>& a, int64_t g, int64_t k, const Fn& fn) {
  const int64_t cpg = a.geo.channels / a.geo.deformable_groups;
  const int64_t cg = a.geo.channels / a.groups;
  for (int64_t c = g * cpg, end = c + cpg; c < end;) {
    const int64_t grp = c / cg;
    const int64_t hi = imin(end, (grp + 1) * cg);
    fn(c, hi, grp * a.col_group + k * cg + (c - grp * cg));
    c = hi;
  }
}

// Calls fn(c, tail) for the chunks of n channels: whole vectors, then the rest with `rest`
// (Ch::tail(n % kWidth), made once by the caller outside its loops).
template <typename Ch, typename Fn>
inline void for_chunks(int64_t n, typename Ch::Tail rest, const Fn& fn) {
  const auto whole = Ch::tail(Ch::kWidth);
  int64_t c = 0;
  for (; c + Ch::kWidth <= n; c += Ch::kWidth) fn(c, whole);
  if (c < n) fn(c, rest);
}

// Calls fn(channel, column offset, channels, tail) for the runs of sample s (one unless a
// deformable group spans convolution groups).
template <typename T, typename Fn>
inline void for_sample_runs(const DcnArgs<T>& a, int64_t s, typename Chan<T>::Tail rest, const Fn& fn) {
  const int64_t cpg = a.geo.channels / a.geo.deformable_groups;
  if (a.single_run) {
    fn(a.channel[s], a.group[s] * a.col_group + a.column[s], cpg, rest);
    return;
  }
  const int64_t K = a.geo.kernel_h * a.geo.kernel_w;
  for_runs(a, s / K, s % K, [&](int64_t c_lo, int64_t c_hi, int64_t column) {
    fn(c_lo, column, c_hi - c_lo, Chan<T>::tail((c_hi - c_lo) % Chan<T>::kWidth));
  });
}

// The common case of im2col (ADFNet: 4, 8 or 16 channels per group, one run per sample): each
// planned sample is one channel vector. Everything the loop reads besides the plans is a value
// parameter: the intrinsics' vector types may alias anything, so values reached through
// references would be reloaded after every store.
template <typename T, typename Plan>
void gather_vectors(const Plan& pl, int64_t s0, int64_t n, const T* in, T* col, const int64_t* channel,
                    const int64_t* column, typename Chan<T>::Tail one) {
  using Ch = Chan<T>;
  for (int64_t j = 0; j < n; ++j) {
    const T* src = in + channel[s0 + j];
    const auto i0 = pl.idx[0][j], i1 = pl.idx[1][j], i2 = pl.idx[2][j], i3 = pl.idx[3][j];
    // Two independent sums (shorter dependency chains); absent corners load zeros (and weigh 0).
    const auto lo = Ch::fmadd(Ch::set1(pl.w[0][j]), Ch::load_if(src + i0, i0 >= 0, one),
                              Ch::mul(Ch::set1(pl.w[1][j]), Ch::load_if(src + i1, i1 >= 0, one)));
    const auto hi = Ch::fmadd(Ch::set1(pl.w[2][j]), Ch::load_if(src + i2, i2 >= 0, one),
                              Ch::mul(Ch::set1(pl.w[3][j]), Ch::load_if(src + i3, i3 >= 0, one)));
    Ch::store(col + column[s0 + j], Ch::add(lo, hi), one);
  }
}

// One bilinear sample of W channels for gather_fixed: c0..c3 point at the group's channels shifted by
// a corner's distance from the first corner (0, one pixel, one row, both). An inner sample (all four
// corners inside the image: almost every one) needs one index and no branch per corner.
template <typename F, typename Plan, typename T>
inline typename F::V sample_fixed(const Plan& pl, int64_t j, const T* c0, const T* c1, const T* c2, const T* c3) {
  // Two sums (shorter dependency chains).
  const auto f = pl.inner[j];
  if (f >= 0) {
    return F::add(F::fmadd(F::set1(pl.w[1][j]), F::load(c1 + f), F::mul(F::set1(pl.w[0][j]), F::load(c0 + f))),
                  F::fmadd(F::set1(pl.w[3][j]), F::load(c3 + f), F::mul(F::set1(pl.w[2][j]), F::load(c2 + f))));
  }
  const auto i0 = pl.idx[0][j], i1 = pl.idx[1][j], i2 = pl.idx[2][j], i3 = pl.idx[3][j];
  auto lo = F::set1(0.0f), hi = F::set1(0.0f);
  if (i0 >= 0) lo = F::mul(F::set1(pl.w[0][j]), F::load(c0 + i0));
  if (i2 >= 0) hi = F::mul(F::set1(pl.w[2][j]), F::load(c0 + i2));
  if (i1 >= 0) lo = F::fmadd(F::set1(pl.w[1][j]), F::load(c0 + i1), lo);
  if (i3 >= 0) hi = F::fmadd(F::set1(pl.w[3][j]), F::load(c0 + i3), hi);
  return F::add(lo, hi);
}

// gather_vectors for W channels per group exactly and one convolution group: plain loads folded
// into the multiply-adds, no masks; sample s = g * K + k reads channels g * W.. and writes columns
// k * C + g * W.., counted along instead of looked up. pixel and row: the input's strides.
template <typename T, int W, typename Plan>
void gather_fixed(const Plan& pl, int64_t s0, int64_t n, const T* in, T* col, int64_t taps, int64_t channels,
                  int64_t pixel, int64_t row) {
  using F = Fixed<T, W>;
  int64_t g = s0 / taps;
  int64_t k = s0 % taps;
  for (int64_t j = 0; j < n; ++j) {
    const T* c0 = in + g * W;
    F::store(col + k * channels + g * W, sample_fixed<F>(pl, j, c0, c0 + pixel, c0 + row, c0 + row + pixel));
    if (++k == taps) {
      k = 0;
      ++g;
    }
  }
}

// gather_fixed for whole deformable groups of kTaps samples (the chunk starts and ends at group
// boundaries): the taps unrolled, so that a sample's plan entries lie at constant offsets from its
// group's and its columns one stride after the previous tap's (a third fewer instructions per sample
// than counting taps and groups along, about 10 % of the forward).
template <typename T, int W, int kTaps, typename Plan>
void gather_fixed_groups(const Plan& pl, int64_t s0, int64_t n, const T* in, T* col, int64_t channels, int64_t pixel,
                         int64_t row) {
  using F = Fixed<T, W>;
  for (int64_t j0 = 0; j0 < n; j0 += kTaps) {
    const int64_t g = (s0 + j0) / kTaps;
    const T* c0 = in + g * W;
    const T* c1 = c0 + pixel;
    const T* c2 = c0 + row;
    const T* c3 = c2 + pixel;
    T* dst = col + g * W;
#pragma GCC unroll 16
    for (int k = 0; k < kTaps; ++k) {
      F::store(dst, sample_fixed<F>(pl, j0 + k, c0, c1, c2, c3));
      dst += channels;
    }
  }
}

// Runs gather_fixed<W> when this set has W-wide vectors for T (returns false otherwise).
template <int W, typename T, typename Plan>
bool gather_fixed_if(const Plan& pl, int64_t s0, int64_t n, const T* in, T* col, int64_t taps, int64_t channels,
                     int64_t pixel, int64_t row) {
  if constexpr (Fixed<T, W>::kOk) {
    if (taps == 9 && s0 % 9 == 0 && n % 9 == 0) {  // 3x3 kernels (ADFNet, SADNet)
      gather_fixed_groups<T, W, 9>(pl, s0, n, in, col, channels, pixel, row);
    } else {
      gather_fixed<T, W>(pl, s0, n, in, col, taps, channels, pixel, row);
    }
    return true;
  }
  return false;
}

template <typename T>
void dcn_im2col(const DcnArgs<T>& a, T* columns, int64_t b, int64_t p0, int64_t p1) {
  using Ch = Chan<T>;
  const T* in = a.input + b * a.in_image;
  const bool simd = use_simd(a);
  const int64_t kcg = group_columns(a);
  const int64_t cpg = a.geo.channels / a.geo.deformable_groups;
  const auto rest = Ch::tail(cpg % Ch::kWidth);
  const int64_t samples = a.geo.deformable_groups * a.geo.kernel_h * a.geo.kernel_w;
  const bool one_vector = a.single_run && a.groups == 1 && cpg <= Ch::kWidth;
  const auto one = Ch::tail(cpg);
  const int64_t taps = a.geo.kernel_h * a.geo.kernel_w;
  const int64_t channels = a.geo.channels;
  const int64_t pixel = a.in_pixel;
  const int64_t row = a.geo.width * a.in_pixel;
  const bool fixed = one_vector && ((cpg == 4 && Fixed<T, 4>::kOk) || (cpg == 8 && Fixed<T, 8>::kOk) ||
                                    (cpg == 16 && Fixed<T, 16>::kOk));
  for (int64_t p = p0; p < p1; ++p) {
    T* col = columns + (p - p0) * kcg;
    if (fixed) {  // sample_fixed reads only the inner samples' first corners
      for_samples<false, true, true>(a, simd, b, p, 0, samples, [&](const auto& pl, int64_t s0, int64_t n) {
        if (cpg == 4) {
          gather_fixed_if<4>(pl, s0, n, in, col, taps, channels, pixel, row);
        } else if (cpg == 8) {
          gather_fixed_if<8>(pl, s0, n, in, col, taps, channels, pixel, row);
        } else {
          gather_fixed_if<16>(pl, s0, n, in, col, taps, channels, pixel, row);
        }
      });
      continue;
    }
    for_samples<false, true>(a, simd, b, p, 0, samples, [&](const auto& pl, int64_t s0, int64_t n) {
      if (one_vector) {
        gather_vectors(pl, s0, n, in, col, a.channel, a.column, one);
        return;
      }
      for (int64_t j = 0; j < n; ++j) {
        const auto i0 = pl.idx[0][j], i1 = pl.idx[1][j], i2 = pl.idx[2][j], i3 = pl.idx[3][j];
        const auto w0 = Ch::set1(pl.w[0][j]), w1 = Ch::set1(pl.w[1][j]), w2 = Ch::set1(pl.w[2][j]),
                   w3 = Ch::set1(pl.w[3][j]);
        for_sample_runs(a, s0 + j, rest, [&](int64_t channel, int64_t column, int64_t count, auto last) {
          const T* src = in + channel;
          T* dst = col + column;
          for_chunks<Ch>(count, last, [&](int64_t c, auto t) {
            auto acc = Ch::zero();
            if (i0 >= 0) acc = Ch::fmadd(w0, Ch::load(src + i0 + c, t), acc);
            if (i1 >= 0) acc = Ch::fmadd(w1, Ch::load(src + i1 + c, t), acc);
            if (i2 >= 0) acc = Ch::fmadd(w2, Ch::load(src + i2 + c, t), acc);
            if (i3 >= 0) acc = Ch::fmadd(w3, Ch::load(src + i3 + c, t), acc);
            Ch::store(dst + c, acc, t);
          });
        });
      }
    });
  }
}

// col2im's scatter for W channels per group exactly (see gather_fixed): grad_input (float) +=
// w * the sample's column gradients at each corner that carries weight.
template <typename T, int W, typename Plan>
void scatter_fixed(const Plan& pl, int64_t s0, int64_t n, const T* gcol, float* gin, const int64_t* channel,
                   const int64_t* column) {
  using F = Fixed<T, W>;
  using Fa = Fixed<float, W>;
  for (int64_t j = 0; j < n; ++j) {
    const auto g = F::load(gcol + column[s0 + j]);
    float* dst = gin + channel[s0 + j];
    for (int q = 0; q < 4; ++q) {
      const float w = pl.w[q][j];
      if (w == 0.0f) continue;  // only corners that carry weight receive gradient (as DCNv2)
      float* d = dst + pl.idx[q][j];
      Fa::store(d, Fa::fmadd(Fa::set1(w), g, Fa::load(d)));
    }
  }
}

template <int W, typename T, typename Plan, typename A>
bool scatter_fixed_if(const Plan& pl, int64_t s0, int64_t n, const T* gcol, A* gin, const int64_t* channel,
                      const int64_t* column) {
  if constexpr (Fixed<T, W>::kOk && std::is_same_v<A, float>) {
    scatter_fixed<T, W>(pl, s0, n, gcol, gin, channel, column);
    return true;
  }
  return false;
}

template <typename T>
void dcn_col2im(const DcnArgs<T>& a, const T* grad_columns, AccT<T>* grad_input, int64_t b, int64_t g) {
  using A = AccT<T>;
  using Ch = Chan<T>;
  using Ca = Chan<std::conditional_t<std::is_same_v<A, double>, double, float>>;
  const int64_t K = a.geo.kernel_h * a.geo.kernel_w;
  const int64_t C = a.geo.channels;
  const int64_t P = a.geo.out_h * a.geo.out_w;
  A* gin = grad_input + b * a.geo.height * a.geo.width * C;
  const bool simd = use_simd(a);
  const int64_t kcg = group_columns(a);
  const int64_t cpg = C / a.geo.deformable_groups;
  const auto rest = Ch::tail(cpg % Ch::kWidth);
  const bool one_vector = a.single_run && a.groups == 1;
  for (int64_t p = 0; p < P; ++p) {
    const T* gcol = grad_columns + p * kcg;
    for_samples<false, true>(a, simd, b, p, g * K, (g + 1) * K, [&](const auto& pl, int64_t s0, int64_t count) {
      if (one_vector &&
          ((cpg == 4 && scatter_fixed_if<4>(pl, s0, count, gcol, gin, a.channel, a.column)) ||
           (cpg == 8 && scatter_fixed_if<8>(pl, s0, count, gcol, gin, a.channel, a.column)) ||
           (cpg == 16 && scatter_fixed_if<16>(pl, s0, count, gcol, gin, a.channel, a.column)))) {
        return;
      }
      for (int64_t j = 0; j < count; ++j) {
        for_sample_runs(a, s0 + j, rest, [&](int64_t channel, int64_t column, int64_t n, auto last) {
          // Only corners that carry weight receive gradient (as DCNv2: outside ones are never touched).
          for (int q = 0; q < 4; ++q) {
            const A w = pl.w[q][j];
            if (w == A(0)) continue;
            const auto wv = Ch::set1(w);
            const T* src = gcol + column;
            A* dst = gin + pl.idx[q][j] + channel;
            for_chunks<Ch>(n, last, [&](int64_t c, auto t) {
              Ca::store(dst + c, Ch::fmadd(wv, Ch::load(src + c, t), Ca::load(dst + c, t)), t);
            });
          }
        });
      }
    });
  }
}

// col2im_coord for W channels per group exactly (see gather_fixed): the sample's value and its
// derivatives along y and x, each dotted with the sample's column gradients.
template <typename T, int W, typename Plan>
void coord_fixed(const Plan& pl, int64_t s0, int64_t n, const T* in, const T* gcol, const int64_t* channel,
                 const int64_t* column, float* sums) {
  using F = Fixed<T, W>;
  for (int64_t j = 0; j < n; ++j) {
    const T* src = in + channel[s0 + j];
    auto v = F::set1(0.0f), vy = F::set1(0.0f), vx = F::set1(0.0f);
    for (int q = 0; q < 4; ++q) {
      const auto i = pl.idx[q][j];
      if (i < 0) continue;
      const auto value = F::load(src + i);
      v = F::fmadd(F::set1(pl.w[q][j]), value, v);
      vy = F::fmadd(F::set1(pl.wy[q][j]), value, vy);
      vx = F::fmadd(F::set1(pl.wx[q][j]), value, vx);
    }
    const auto g = F::load(gcol + column[s0 + j]);
    sums[3 * j] = F::sum(F::mul(g, v));
    sums[3 * j + 1] = F::sum(F::mul(g, vy));
    sums[3 * j + 2] = F::sum(F::mul(g, vx));
  }
}

template <int W, typename T, typename Plan>
bool coord_fixed_if(const Plan& pl, int64_t s0, int64_t n, const T* in, const T* gcol, const int64_t* channel,
                    const int64_t* column, float* sums) {
  if constexpr (Fixed<T, W>::kOk) {
    coord_fixed<T, W>(pl, s0, n, in, gcol, channel, column, sums);
    return true;
  }
  return false;
}

template <typename T>
void dcn_col2im_coord(const DcnArgs<T>& a, const T* grad_columns, T* grad_offset, const int64_t* go, T* grad_mask,
                      const int64_t* gm, int64_t b, int64_t p0, int64_t p1) {
  using Ch = Chan<T>;
  using A = AccT<T>;
  const T* in = a.input + b * a.in_image;
  const bool simd = use_simd(a);
  const int64_t kcg = group_columns(a);
  const int64_t cpg = a.geo.channels / a.geo.deformable_groups;
  const auto rest = Ch::tail(cpg % Ch::kWidth);
  const int64_t samples = a.geo.deformable_groups * a.geo.kernel_h * a.geo.kernel_w;
  const bool one_vector = a.single_run && a.groups == 1;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t oy = p / a.geo.out_w;
    const int64_t ox = p % a.geo.out_w;
    const T* gcol = grad_columns + (p - p0) * kcg;
    T* g_off = grad_offset + b * go[0] + oy * go[2] + ox * go[3];
    T* g_msk = grad_mask + b * gm[0] + oy * gm[2] + ox * gm[3];
    for_samples<true, false>(a, simd, b, p, 0, samples, [&](const auto& pl, int64_t s0, int64_t count) {
      float sums[3 * kChunk];
      if (one_vector &&
          ((cpg == 4 && coord_fixed_if<4>(pl, s0, count, in, gcol, a.channel, a.column, sums)) ||
           (cpg == 8 && coord_fixed_if<8>(pl, s0, count, in, gcol, a.channel, a.column, sums)) ||
           (cpg == 16 && coord_fixed_if<16>(pl, s0, count, in, gcol, a.channel, a.column, sums)))) {
        for (int64_t j = 0; j < count; ++j) {
          const int64_t s = s0 + j;
          const A m = pl.mask[j];
          g_off[2 * s * go[1]] = from_acc<T>(static_cast<A>(sums[3 * j + 1]) * m);
          g_off[(2 * s + 1) * go[1]] = from_acc<T>(static_cast<A>(sums[3 * j + 2]) * m);
          g_msk[s * gm[1]] = from_acc<T>(static_cast<A>(sums[3 * j]));
        }
        return;
      }
      for (int64_t j = 0; j < count; ++j) {
        const int64_t s = s0 + j;
        auto sum_v = Ch::zero(), sum_y = Ch::zero(), sum_x = Ch::zero();
        for_sample_runs(a, s, rest, [&](int64_t channel, int64_t column, int64_t n, auto last) {
          const T* src = in + channel;
          const T* g = gcol + column;
          for_chunks<Ch>(n, last, [&](int64_t c, auto t) {
            auto v = Ch::zero(), vy = Ch::zero(), vx = Ch::zero();
            for (int q = 0; q < 4; ++q) {
              const auto i = pl.idx[q][j];
              if (i < 0) continue;
              const auto value = Ch::load(src + i + c, t);
              v = Ch::fmadd(Ch::set1(pl.w[q][j]), value, v);
              vy = Ch::fmadd(Ch::set1(pl.wy[q][j]), value, vy);
              vx = Ch::fmadd(Ch::set1(pl.wx[q][j]), value, vx);
            }
            const auto gv = Ch::load(g + c, t);
            sum_v = Ch::fmadd(gv, v, sum_v);
            sum_y = Ch::fmadd(gv, vy, sum_y);
            sum_x = Ch::fmadd(gv, vx, sum_x);
          });
        });
        const A m = pl.mask[j];
        g_off[2 * s * go[1]] = from_acc<T>(static_cast<A>(Ch::sum(sum_y)) * m);
        g_off[(2 * s + 1) * go[1]] = from_acc<T>(static_cast<A>(Ch::sum(sum_x)) * m);
        g_msk[s * gm[1]] = from_acc<T>(static_cast<A>(Ch::sum(sum_v)));
      }
    });
  }
}

// ---------------- dynamic filter ----------------

using dynamic_filter::kTaps;
using dynamic_filter::shift;
using dynamic_filter::valid_columns;

// Columns of NCHW rows handled per accumulator block.
constexpr int64_t kRowBlock = 512;

// The forward and the input gradient are one sum over the taps, out(y, w) = sum_t a(y + s dy_t, w + s dx_t) k_t:
// the forward (kTransposed false, s = +1) reads the output pixel's kernels, the input gradient (the filter
// transposed, s = -1) the kernels of the source pixel, which applied them. Output rows [r0, r1) are
// first_row-relative, as the kernels' rows; a has x's strides, out the o_* strides.
template <typename T, bool kTransposed>
void tap_sum(const FilterGeometry& f, const T* a, const T* k, T* out, int64_t first_row, int64_t r0, int64_t r1) {
  using Ch = Chan<T>;
  const int64_t C = f.channels, H = f.height, Wd = f.width, d = f.dilation;
  const int64_t sign = kTransposed ? -1 : 1;
  if (f.x_channel == 1) {  // channels_last: along the channels
    const bool contiguous_taps = f.k_chan == 1;
    const auto rest = Ch::tail(C % Ch::kWidth);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = first_row + r;
      for (int64_t w = 0; w < Wd; ++w) {
        const T* src[kTaps];
        const T* ks[kTaps];
        for (int t = 0; t < kTaps; ++t) {
          const int64_t yy = y + sign * shift(t / 3, d), xx = w + sign * shift(t % 3, d);
          const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < Wd;
          src[t] = inside ? a + yy * f.x_row + xx * f.x_col : nullptr;
          const int64_t kr = kTransposed ? yy - first_row : r, kc = kTransposed ? xx : w;
          ks[t] = inside ? k + t * f.k_tap + kr * f.k_row + kc * f.k_col : nullptr;
        }
        T* o = out + r * f.o_row + w * f.o_col;
        if (contiguous_taps) {
          for_chunks<Ch>(C, rest, [&](int64_t c, auto tl) {
            auto acc = Ch::zero();
            for (int t = 0; t < kTaps; ++t) {
              if (src[t] != nullptr) acc = Ch::fmadd(Ch::load(src[t] + c, tl), Ch::load(ks[t] + c, tl), acc);
            }
            Ch::store(o + c, acc, tl);
          });
        } else {
          for (int64_t c = 0; c < C; ++c) {
            AccT<T> acc = 0;
            for (int t = 0; t < kTaps; ++t) {
              if (src[t] != nullptr) acc += to_float(src[t][c]) * to_float(ks[t][c * f.k_chan]);
            }
            o[c] = from_acc<T>(acc);
          }
        }
      }
    }
    return;
  }
  // NCHW: along each row, the taps' valid column ranges accumulated in a block buffer
  AccT<T> acc[kRowBlock];
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = first_row + r;
      for (int64_t b0 = 0; b0 < Wd; b0 += kRowBlock) {
        const int64_t b1 = imin(Wd, b0 + kRowBlock);
        for (int64_t w = b0; w < b1; ++w) acc[w - b0] = 0;
        for (int t = 0; t < kTaps; ++t) {
          const int64_t yy = y + sign * shift(t / 3, d);
          if (yy < 0 || yy >= H) continue;
          const int64_t s = sign * shift(t % 3, d);
          int64_t w0, w1;
          valid_columns(s, Wd, &w0, &w1);
          w0 = imax(w0, b0);
          w1 = imin(w1, b1);
          const T* __restrict sr = a + c * f.x_channel + yy * f.x_row + s;
          const int64_t k_offset = kTransposed ? (yy - first_row) * f.k_row + s : r * f.k_row;
          const T* __restrict kr = k + c * f.k_chan + t * f.k_tap + k_offset;
          AccT<T>* __restrict ac = acc - b0;
          for (int64_t w = w0; w < w1; ++w) ac[w] += to_float(sr[w]) * to_float(kr[w]);
        }
        T* __restrict o = out + c * f.o_channel + r * f.o_row;
        for (int64_t w = b0; w < b1; ++w) o[w] = from_acc<T>(acc[w - b0]);
      }
    }
  }
}

template <typename T>
void filter_forward(const FilterGeometry& f, const T* x, const T* k, T* out, int64_t first_row, int64_t r0,
                    int64_t r1) {
  tap_sum<T, false>(f, x, k, out, first_row, r0, r1);
}

template <typename T>
void filter_grad_input(const FilterGeometry& f, const T* g, const T* k, T* gx, int64_t r0, int64_t r1) {
  FilterGeometry in_x = f;  // grad_x has x's layout
  in_x.o_channel = f.x_channel;
  in_x.o_row = f.x_row;
  in_x.o_col = f.x_col;
  tap_sum<T, true>(in_x, g, k, gx, 0, r0, r1);
}

template <typename T>
void filter_grad_kernels(const FilterGeometry& f, const T* g, const T* x, T* gk, int64_t r0, int64_t r1) {
  using Ch = Chan<T>;
  const int64_t C = f.channels, H = f.height, Wd = f.width, d = f.dilation;
  if (f.x_channel == 1) {
    const bool contiguous_taps = f.k_chan == 1;
    const auto rest = Ch::tail(C % Ch::kWidth);
    for (int64_t y = r0; y < r1; ++y) {
      for (int64_t w = 0; w < Wd; ++w) {
        const T* gp = g + y * f.x_row + w * f.x_col;
        T* kp = gk + y * f.k_row + w * f.k_col;
        for (int t = 0; t < kTaps; ++t) {
          const int64_t yy = y + shift(t / 3, d), xx = w + shift(t % 3, d);
          const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < Wd;
          const T* xp = x + yy * f.x_row + xx * f.x_col;
          T* dst = kp + t * f.k_tap;
          if (contiguous_taps) {
            for_chunks<Ch>(C, rest, [&](int64_t c, auto tl) {
              Ch::store(dst + c, inside ? Ch::mul(Ch::load(gp + c, tl), Ch::load(xp + c, tl)) : Ch::zero(), tl);
            });
          } else {
            for (int64_t c = 0; c < C; ++c) {
              dst[c * f.k_chan] = from_acc<T>(inside ? to_float(gp[c]) * to_float(xp[c]) : AccT<T>(0));
            }
          }
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t y = r0; y < r1; ++y) {
      const T* __restrict gr = g + c * f.x_channel + y * f.x_row;
      for (int t = 0; t < kTaps; ++t) {
        T* __restrict dst = gk + c * f.k_chan + t * f.k_tap + y * f.k_row;
        const int64_t yy = y + shift(t / 3, d);
        int64_t w0 = 0, w1 = 0;
        if (yy >= 0 && yy < H) valid_columns(shift(t % 3, d), Wd, &w0, &w1);
        const T zero = from_acc<T>(AccT<T>(0));
        for (int64_t w = 0; w < w0; ++w) dst[w] = zero;
        const T* __restrict xr = x + c * f.x_channel + yy * f.x_row + shift(t % 3, d);
        for (int64_t w = w0; w < w1; ++w) dst[w] = from_acc<T>(to_float(gr[w]) * to_float(xr[w]));
        for (int64_t w = w1; w < Wd; ++w) dst[w] = zero;
      }
    }
  }
}

// The fused forward's GEMM (float32 on AVX2 and AVX-512): register blocks of kGemmRows pixels x 2
// vectors of output channels, the pixels' columns broadcast one at a time from the L1-resident
// scratch and the weight rows streamed; the bias initialises the sums. A library GEMM on tiles of
// columns in the L2 cache (the other paths) reached about 75 % of the FMA rate here and needed the
// bias in a second pass; this loop runs at the FMA rate (ADFNet's 32-channel layer: as fast as
// an equal 3x3 convolution) and each pixel sums its columns in order, so results do not depend on
// how the pixels are split.
#if defined(__AVX512F__)
constexpr int kGemmWidth = 16;
constexpr int kGemmRows = 12;  // 24 accumulators of the 32 registers
#elif defined(__AVX2__)
constexpr int kGemmWidth = 8;
constexpr int kGemmRows = 6;  // 12 accumulators of the 16 registers
#else
constexpr int kGemmWidth = 0;
constexpr int kGemmRows = 1;
#endif
constexpr int64_t kFusedPixels = 2 * kGemmRows;

// Rows [0, rows) of out (rows <= kGemmRows), NV vectors of output channels from o0: the sum over k
// of col[i][k] * wt[k][o], plus bias[o0 + o] (bias may be null). All kGemmRows rows of col are read
// (rows past `rows` hold earlier pixels' columns or zeros and are not stored).
template <typename F, int NV>
inline void gemm_rows(const float* col, int64_t kc, const float* wt, int64_t cout, const float* bias, int64_t o0,
                      float* out, int64_t rows) {
  using V = typename F::V;
  V acc[kGemmRows][NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const V init = bias != nullptr ? F::load(bias + o0 + v * kGemmWidth) : F::set1(0.0f);
#pragma GCC unroll 12
    for (int i = 0; i < kGemmRows; ++i) acc[i][v] = init;
  }
  for (int64_t k = 0; k < kc; ++k) {
    V w[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) w[v] = F::load(wt + k * cout + v * kGemmWidth);
#pragma GCC unroll 12
    for (int i = 0; i < kGemmRows; ++i) {
      const V x = F::set1(col[i * kc + k]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = F::fmadd(w[v], x, acc[i][v]);
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) F::store(out + i * cout + v * kGemmWidth, acc[i][v]);
  }
}

// DcnKernels::forward_fused: kFusedPixels pixels sampled (dcn_im2col), then multiplied.
template <typename T>
void dcn_forward_fused(const DcnArgs<T>& a, const T* weight_t, const T* bias, int64_t cout, T* out, T* scratch,
                       int64_t b, int64_t p0, int64_t p1) {
  if constexpr (std::is_same_v<T, float> && kGemmWidth > 0) {
    using F = Fixed<float, kGemmWidth>;
    const int64_t kc = group_columns(a);
    for (int64_t q = p0; q < p1; q += kFusedPixels) {
      const int64_t n = imin(kFusedPixels, p1 - q);
      dcn_im2col(a, scratch, b, q, q + n);
      for (int64_t r = 0; r < n; r += kGemmRows) {
        const float* col = scratch + r * kc;
        float* o = out + (q + r) * cout;
        const int64_t rows = imin(kGemmRows, n - r);
        int64_t o0 = 0;
        for (; o0 + 2 * kGemmWidth <= cout; o0 += 2 * kGemmWidth) {
          gemm_rows<F, 2>(col, kc, weight_t + o0, cout, bias, o0, o + o0, rows);
        }
        if (o0 < cout) gemm_rows<F, 1>(col, kc, weight_t + o0, cout, bias, o0, o + o0, rows);
      }
    }
  }
}

template <typename T>
constexpr DcnKernels<T> dcn_kernels() {
  constexpr bool fused = std::is_same_v<T, float> && kGemmWidth > 0;
  return {&dcn_im2col<T>, &dcn_col2im<T>, &dcn_col2im_coord<T>, fused ? &dcn_forward_fused<T> : nullptr,
          kFusedPixels, kGemmWidth};
}

template <typename T>
constexpr FilterKernels<T> filter_kernels() {
  return {&filter_forward<T>, &filter_grad_input<T>, &filter_grad_kernels<T>};
}

}  // namespace

constexpr KernelTable kTable{
    DCN_ISA_NAME,
    dcn_kernels<float>(),
    dcn_kernels<double>(),
    dcn_kernels<BF16>(),
    filter_kernels<float>(),
    filter_kernels<double>(),
    filter_kernels<BF16>(),
};

}  // namespace DCN_ISA
}  // namespace cpu
}  // namespace dcn
