// SIMD building blocks of the CPU kernels, one implementation per instruction set, picked by the
// compiler flags of the translation unit that includes this header (kernels_<isa>.cpp):
//
//   * lanes for planning DCN samples: VF (float), VI (int32), VM (comparison results), kLanes of
//     them, with the arithmetic, comparisons and select() that dcn_sampling.h's plan_corners needs;
//     kLanes = 1 (no vector planner) in the baseline build;
//   * channel vectors for the gathers over channels (Chan<T>: load/store a chunk of kWidth elements
//     of T, or its first n (a Tail, made once per loop), converted to and from float; fused
//     multiply-add, horizontal sum).
//
// bfloat16 is converted with integer operations (round to nearest even, NaN kept a quiet NaN), as
// c10::BFloat16 does, so every instruction set rounds alike.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels.h"

namespace dcn {
namespace cpu {
namespace DCN_ISA {

// ---- scalars ----

inline float to_float(float v) { return v; }
inline double to_float(double v) { return v; }
inline float to_float(BF16 v) {
  const uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline BF16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return BF16{static_cast<uint16_t>(f != f ? 0x7FC0u : rounded)};
}

template <typename T>
struct Store {
  template <typename A>
  static T from(A v) {
    return static_cast<T>(v);
  }
};
template <>
struct Store<BF16> {
  static BF16 from(float v) { return to_bf16(v); }
};

template <typename T, typename A>
inline T from_acc(A v) {
  return Store<T>::from(v);
}

#if defined(__AVX512F__)

// ---- AVX-512: 16 lanes ----
constexpr int kLanes = 16;

struct VM {
  __mmask16 m;
};
struct VF {
  __m512 v;
  VF() = default;
  explicit VF(__m512 x) : v(x) {}
  VF(float x) : v(_mm512_set1_ps(x)) {}  // NOLINT: broadcast, as a scalar would
};
struct VI {
  __m512i v;
  VI() = default;
  explicit VI(__m512i x) : v(x) {}
  VI(int x) : v(_mm512_set1_epi32(x)) {}  // NOLINT
};

inline VM operator&(VM a, VM b) { return {static_cast<__mmask16>(a.m & b.m)}; }
inline VF operator+(VF a, VF b) { return VF(_mm512_add_ps(a.v, b.v)); }
inline VF operator-(VF a, VF b) { return VF(_mm512_sub_ps(a.v, b.v)); }
inline VF operator*(VF a, VF b) { return VF(_mm512_mul_ps(a.v, b.v)); }
inline VF operator-(VF a) { return VF(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN)))); }
inline VM operator>(VF a, VF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline VM operator<(VF a, VF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline VM operator>=(VF a, VF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
// Whether m holds in every lane of `lanes`.
inline bool covers(VM m, VM lanes) { return (m.m & lanes.m) == lanes.m; }
inline VI operator+(VI a, VI b) { return VI(_mm512_add_epi32(a.v, b.v)); }
inline VI operator-(VI a, VI b) { return VI(_mm512_sub_epi32(a.v, b.v)); }
inline VI operator*(VI a, VI b) { return VI(_mm512_mullo_epi32(a.v, b.v)); }
inline VM operator>=(VI a, VI b) { return {_mm512_cmp_epi32_mask(a.v, b.v, _MM_CMPINT_NLT)}; }
inline VM operator<=(VI a, VI b) { return {_mm512_cmp_epi32_mask(a.v, b.v, _MM_CMPINT_LE)}; }
inline VF select(VM m, VF a, VF b) { return VF(_mm512_mask_blend_ps(m.m, b.v, a.v)); }
inline VI select(VM m, VI a, VI b) { return VI(_mm512_mask_blend_epi32(m.m, b.v, a.v)); }
inline VF floor_of(VF a) { return VF(_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)); }
inline VI to_index(VF a) { return VI(_mm512_cvttps_epi32(a.v)); }
inline VF to_lanes(VI a) { return VF(_mm512_cvtepi32_ps(a.v)); }
inline VM first_lanes(int n) { return {static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u)}; }
inline VI load_lanes(const int32_t* p) { return VI(_mm512_loadu_si512(p)); }
inline void store_lanes(float* p, VF a) { _mm512_storeu_ps(p, a.v); }
inline void store_lanes(int32_t* p, VI a) { _mm512_storeu_si512(p, a.v); }

// Channel vectors: 16 floats.
inline __m512 bf16_to_f32(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
inline __m256i f32_to_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(r);
}

template <typename T>
struct Chan;
template <>
struct Chan<float> {
  using V = __m512;
  static constexpr int kWidth = 16;
  struct Tail {  // the first n <= 16 elements of a chunk
    __mmask16 m;
  };
  static Tail tail(int64_t n) { return {static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u)}; }
  static V load(const float* p, Tail t) { return _mm512_maskz_loadu_ps(t.m, p); }
  // Zeros where !valid, without reading p (a masked-out load never faults).
  static V load_if(const float* p, bool valid, Tail t) { return _mm512_maskz_loadu_ps(valid ? t.m : 0, p); }
  static void store(float* p, V v, Tail t) { _mm512_mask_storeu_ps(p, t.m, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float w) { return _mm512_set1_ps(w); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
};
template <>
struct Chan<BF16> : Chan<float> {
  static V load(const BF16* p, Tail t) { return bf16_to_f32(_mm256_maskz_loadu_epi16(t.m, p)); }
  static V load_if(const BF16* p, bool valid, Tail t) {
    return bf16_to_f32(_mm256_maskz_loadu_epi16(valid ? t.m : 0, p));
  }
  static void store(BF16* p, V v, Tail t) { _mm256_mask_storeu_epi16(p, t.m, f32_to_bf16(v)); }
};

// The first n <= 16 of 16 lanes from p (the others 0; masked loads never read past them).
template <typename T>
inline VF load_lanes(const T* p, int n) {
  return VF(Chan<T>::load(p, Chan<T>::tail(n)));
}
// Lanes 0, 2, 4, ... and 1, 3, 5, ... of the first 2n <= 32 values at p (interleaved dy, dx).
template <typename T>
inline void load_pairs(const T* p, int n, VF& even, VF& odd) {
  const __m512 a = Chan<T>::load(p, Chan<T>::tail(n >= 8 ? 16 : 2 * n));
  const __m512 b = Chan<T>::load(p + 16, Chan<T>::tail(n >= 8 ? 2 * n - 16 : 0));
  const __m512i e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i o = _mm512_add_epi32(e, _mm512_set1_epi32(1));
  even = VF(_mm512_permutex2var_ps(a, e, b));
  odd = VF(_mm512_permutex2var_ps(a, o, b));
}


#elif defined(__AVX2__)

// ---- AVX2 + FMA: 8 lanes ----
constexpr int kLanes = 8;

struct VM {
  __m256i m;  // all ones or all zeros per lane
};
struct VF {
  __m256 v;
  VF() = default;
  explicit VF(__m256 x) : v(x) {}
  VF(float x) : v(_mm256_set1_ps(x)) {}  // NOLINT
};
struct VI {
  __m256i v;
  VI() = default;
  explicit VI(__m256i x) : v(x) {}
  VI(int x) : v(_mm256_set1_epi32(x)) {}  // NOLINT
};

inline VM operator&(VM a, VM b) { return {_mm256_and_si256(a.m, b.m)}; }
inline VF operator+(VF a, VF b) { return VF(_mm256_add_ps(a.v, b.v)); }
inline VF operator-(VF a, VF b) { return VF(_mm256_sub_ps(a.v, b.v)); }
inline VF operator*(VF a, VF b) { return VF(_mm256_mul_ps(a.v, b.v)); }
inline VF operator-(VF a) { return VF(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))); }
inline VM operator>(VF a, VF b) { return {_mm256_castps_si256(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ))}; }
inline VM operator<(VF a, VF b) { return {_mm256_castps_si256(_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))}; }
inline VM operator>=(VF a, VF b) { return {_mm256_castps_si256(_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ))}; }
inline bool covers(VM m, VM lanes) { return _mm256_testc_si256(m.m, lanes.m) != 0; }
inline VI operator+(VI a, VI b) { return VI(_mm256_add_epi32(a.v, b.v)); }
inline VI operator-(VI a, VI b) { return VI(_mm256_sub_epi32(a.v, b.v)); }
inline VI operator*(VI a, VI b) { return VI(_mm256_mullo_epi32(a.v, b.v)); }
inline VM operator>=(VI a, VI b) {  // not (b > a)
  return {_mm256_xor_si256(_mm256_cmpgt_epi32(b.v, a.v), _mm256_set1_epi32(-1))};
}
inline VM operator<=(VI a, VI b) { return {_mm256_xor_si256(_mm256_cmpgt_epi32(a.v, b.v), _mm256_set1_epi32(-1))}; }
inline VF select(VM m, VF a, VF b) { return VF(_mm256_blendv_ps(b.v, a.v, _mm256_castsi256_ps(m.m))); }
inline VI select(VM m, VI a, VI b) { return VI(_mm256_blendv_epi8(b.v, a.v, m.m)); }
inline VF floor_of(VF a) { return VF(_mm256_floor_ps(a.v)); }
inline VI to_index(VF a) { return VI(_mm256_cvttps_epi32(a.v)); }
inline VF to_lanes(VI a) { return VF(_mm256_cvtepi32_ps(a.v)); }
inline VM first_lanes(int n) {
  return {_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))};
}
inline VI load_lanes(const int32_t* p) { return VI(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline void store_lanes(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline void store_lanes(int32_t* p, VI a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.v); }

inline __m256 bf16_to_f32(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline __m128i f32_to_bf16(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
  // pack the 8 low halves: packus works per 128-bit lane, then put the two 64-bit results together
  const __m256i packed = _mm256_packus_epi32(r, r);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

template <typename T>
struct Chan;
template <>
struct Chan<float> {
  using V = __m256;
  static constexpr int kWidth = 8;
  struct Tail {  // the first n <= 8 elements of a chunk
    __m256i m;
    int64_t n;
  };
  static Tail tail(int64_t n) {
    return {_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), n};
  }
  static V load(const float* p, Tail t) { return t.n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, t.m); }
  static V load_if(const float* p, bool valid, Tail t) { return valid ? load(p, t) : zero(); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(float* p, V v, Tail t) {
    if (t.n >= 8) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, t.m, v);
    }
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float w) { return _mm256_set1_ps(w); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static float sum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
template <>
struct Chan<BF16> : Chan<float> {
  static V load(const BF16* p, Tail t) {
    if (t.n >= 8) return bf16_to_f32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    uint16_t h[8] = {};
    std::memcpy(h, p, t.n * sizeof(uint16_t));
    return bf16_to_f32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
  static V load_if(const BF16* p, bool valid, Tail t) { return valid ? load(p, t) : zero(); }
  static void store(BF16* p, V v, Tail t) {
    const __m128i h = f32_to_bf16(v);
    if (t.n >= 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
    } else {
      uint16_t b[8];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(b), h);
      std::memcpy(p, b, t.n * sizeof(uint16_t));
    }
  }
};

// The first n <= 8 of 8 lanes from p (the others 0; never read past them).
template <typename T>
inline VF load_lanes(const T* p, int n) {
  return VF(Chan<T>::load(p, Chan<T>::tail(n)));
}
// Lanes 0, 2, 4, ... and 1, 3, 5, ... of the first 2n <= 16 values at p (interleaved dy, dx).
template <typename T>
inline void load_pairs(const T* p, int n, VF& even, VF& odd) {
  const __m256 a = Chan<T>::load(p, Chan<T>::tail(n >= 4 ? 8 : 2 * n));
  const __m256 b = Chan<T>::load(p + 8, Chan<T>::tail(n >= 4 ? 2 * n - 8 : 0));
  // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 | b0 b2 b4 b6] (64-bit lanes 0, 2, 1, 3)
  even = VF(_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));
  odd = VF(_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8)));
}


#else

// ---- baseline: no vector planner (kLanes = 1); channel "vectors" of one element ----
constexpr int kLanes = 1;

struct ScalarTail {};

template <typename T>
struct Chan {
  using V = float;
  static constexpr int kWidth = 1;
  using Tail = ScalarTail;
  static Tail tail(int64_t) { return {}; }
  static V load(const T* p, Tail) { return to_float(*p); }
  static V load_if(const T* p, bool valid, Tail) { return valid ? to_float(*p) : 0.0f; }
  static void store(T* p, V v, Tail) { *p = from_acc<T>(v); }
  static V add(V a, V b) { return a + b; }
  static V zero() { return 0.0f; }
  static V set1(float w) { return w; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static float sum(V v) { return v; }
};

#endif

// Channel vectors of exactly W elements of T (no masks): Fixed<T, W>::kOk says whether this set has them.
template <typename T, int W>
struct Fixed {
  static constexpr bool kOk = false;
};

#if defined(__AVX2__) || defined(__AVX512F__)
template <>
struct Fixed<float, 4> {
  static constexpr bool kOk = true;
  using V = __m128;
  static V load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static V set1(float w) { return _mm_set1_ps(w); }
  static V fmadd(V a, V b, V c) { return _mm_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static float sum(V v) {
    const __m128 t = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
template <>
struct Fixed<float, 8> {
  static constexpr bool kOk = true;
  using V = __m256;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float w) { return _mm256_set1_ps(w); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static float sum(V v) { return Fixed<float, 4>::sum(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))); }
};
inline __m128i f32x4_to_bf16(__m128 f) {
  const __m128i u = _mm_castps_si128(f);
  const __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
  __m128i r = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(u, _mm_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm_blendv_epi8(r, _mm_set1_epi32(0x7FC0), _mm_castps_si128(_mm_cmpunord_ps(f, f)));
  return _mm_packus_epi32(r, r);
}
template <>
struct Fixed<BF16, 4> : Fixed<float, 4> {
  static V load(const BF16* p) {
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 16));
  }
  static void store(BF16* p, V v) { _mm_storel_epi64(reinterpret_cast<__m128i*>(p), f32x4_to_bf16(v)); }
};
template <>
struct Fixed<BF16, 8> : Fixed<float, 8> {
  static V load(const BF16* p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  static void store(BF16* p, V v) {
    const __m128i lo = f32x4_to_bf16(_mm256_castps256_ps128(v));
    const __m128i hi = f32x4_to_bf16(_mm256_extractf128_ps(v, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_unpacklo_epi64(lo, hi));
  }
};
#endif
#if defined(__AVX512F__)
template <>
struct Fixed<float, 16> {
  static constexpr bool kOk = true;
  using V = __m512;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float w) { return _mm512_set1_ps(w); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
};
template <>
struct Fixed<BF16, 16> : Fixed<float, 16> {
  static V load(const BF16* p) { return bf16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static void store(BF16* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), f32_to_bf16(v)); }
};
#endif

// double: one element at a time on every instruction set (the golden float64 reference path).
#if defined(__AVX2__) || defined(__AVX512F__)
struct ScalarTail {};
#endif
template <>
struct Chan<double> {
  using V = double;
  static constexpr int kWidth = 1;
  using Tail = ScalarTail;
  static Tail tail(int64_t) { return {}; }
  static V load(const double* p, Tail) { return *p; }
  static V load_if(const double* p, bool valid, Tail) { return valid ? *p : 0.0; }
  static void store(double* p, V v, Tail) { *p = v; }
  static V add(V a, V b) { return a + b; }
  static V zero() { return 0.0; }
  static V set1(double w) { return w; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static double sum(V v) { return v; }
};

}  // namespace DCN_ISA
}  // namespace cpu
}  // namespace dcn
