// A single-writer seqlock over a block of shared memory, correct on any CPU (x86's TSO, aarch64's weak order):
// the ordering comes from C++ atomics, not from the hardware. Used by robot/shm.py between the planner, the
// 1 kHz control process, the camera and the simulator (separate processes, one writer per block).
//
// Layout (the same as robot/shm.py has always used): uint64 sequence at byte 0, float64 stamp (the writer's
// CLOCK_MONOTONIC time of its last completed write) at byte 8, the data from byte 16.
//
// Ordering (H.-J. Boehm, "Can seqlocks get along with programming language memory models?", MSPC 2012):
//   writer: seq = s + 1 (relaxed); release fence; data stores (relaxed atomics); seq = s + 2 (release)
//   reader: s0 = seq (acquire); data loads (relaxed atomics); acquire fence; s1 = seq (relaxed); ok if s0 == s1
// The release fence keeps the data stores after the odd sequence; the acquire fence keeps the data loads
// before the second sequence load. A reader that saw any store of a write therefore sees s1 != s0.
//
// Writers that fill the data with plain stores between begin_write() and end_write() (numpy, from Python) get
// the same order from the CPU: the fence and the release store sit in these out-of-line calls, which the
// compiler cannot move plain stores across, and they emit the barrier instructions (dmb ish / stlr on aarch64).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>

namespace vjepa_fast::seqlock {

constexpr size_t kHeaderBytes = 16;

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free,
              "the seqlock needs lock-free 64-bit atomics (address-free across processes)");
static_assert(std::atomic_ref<unsigned char>::is_always_lock_free, "the seqlock needs lock-free byte atomics");

inline std::atomic_ref<uint64_t> word(void* p) { return std::atomic_ref<uint64_t>(*static_cast<uint64_t*>(p)); }

// Copies n bytes out of / into the shared block word by word with relaxed atomic accesses (no torn words,
// no data race in the C++ sense). `shared` is 8-byte aligned; the private side may be unaligned.
inline void load_relaxed(unsigned char* dst, unsigned char* shared, size_t n) {
  const size_t words = n / 8;
  auto* src = reinterpret_cast<uint64_t*>(shared);
  for (size_t i = 0; i < words; ++i) {
    const uint64_t v = std::atomic_ref<uint64_t>(src[i]).load(std::memory_order_relaxed);
    std::memcpy(dst + 8 * i, &v, 8);
  }
  for (size_t i = 8 * words; i < n; ++i) {
    dst[i] = std::atomic_ref<unsigned char>(shared[i]).load(std::memory_order_relaxed);
  }
}

inline void store_relaxed(unsigned char* shared, const unsigned char* src, size_t n) {
  const size_t words = n / 8;
  auto* dst = reinterpret_cast<uint64_t*>(shared);
  for (size_t i = 0; i < words; ++i) {
    uint64_t v;
    std::memcpy(&v, src + 8 * i, 8);
    std::atomic_ref<uint64_t>(dst[i]).store(v, std::memory_order_relaxed);
  }
  for (size_t i = 8 * words; i < n; ++i) {
    std::atomic_ref<unsigned char>(shared[i]).store(src[i], std::memory_order_relaxed);
  }
}

inline double monotonic_seconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of Python's time.monotonic()
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The writer side. A block left odd by a writer that died mid-write stays odd (and changes) on the next
// begin_write, so readers keep rejecting it until that write ends.
inline void begin_write(unsigned char* block) {
  auto seq = word(block);
  const uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store((s & 1) ? s + 2 : s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

// Returns false (and changes nothing) when no write is in progress.
inline bool end_write(unsigned char* block, double stamp) {
  auto seq = word(block);
  const uint64_t s = seq.load(std::memory_order_relaxed);
  if (!(s & 1)) {
    return false;
  }
  uint64_t bits;
  std::memcpy(&bits, &stamp, 8);
  word(block + 8).store(bits, std::memory_order_relaxed);
  seq.store(s + 1, std::memory_order_release);
  return true;
}

// One attempt, never waits: true and the block's data in dst when no write overlapped the copy; false when a
// write was in progress or happened during the copy (dst then holds a mix: do not use it).
inline bool try_read(unsigned char* block, unsigned char* dst, size_t n, uint64_t* sequence) {
  auto seq = word(block);
  const uint64_t s0 = seq.load(std::memory_order_acquire);
  if (s0 & 1) {
    return false;
  }
  load_relaxed(dst, block + kHeaderBytes, n);
  std::atomic_thread_fence(std::memory_order_acquire);
  const uint64_t s1 = seq.load(std::memory_order_relaxed);
  if (s1 != s0) {
    return false;
  }
  *sequence = s0;
  return true;
}

inline uint64_t sequence(unsigned char* block) { return word(block).load(std::memory_order_acquire); }

inline double stamp(unsigned char* block) {
  const uint64_t bits = word(block + 8).load(std::memory_order_relaxed);
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

}  // namespace vjepa_fast::seqlock
