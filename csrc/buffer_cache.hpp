// fastpad core: a process-wide cache of output blocks that stay mapped between calls.
//
// Plain C++17 with no Python headers. Why it exists: glibc serves buffers of a few hundred KiB
// and more from freshly mmapped (or freshly trimmed) memory and unmaps them when freed, so a
// process in that state page-faults and zero-fills the whole output on every call (measured:
// ~480 of the 512 pages of a [256, 512] int64 pair per call, 3-4x the time of a warm process).
// Whether a process is in that state depends on what it allocated before. Blocks released here
// keep their pages, so the next output of the same size class is written into warm memory.
//
// The bindings (csrc/python/buffer_cache.cpp) hand a block to Python as the memory of a numpy
// array whose base object releases it when the last array/tensor/view sharing it dies: a block is
// idle (reusable) only once nothing references it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace fastpad {

struct BufferCacheStats {
  std::size_t limit = 0;        // most idle bytes kept (0: nothing is kept)
  std::size_t idle_bytes = 0;   // capacity of the blocks kept for reuse
  std::size_t idle_blocks = 0;
  std::size_t live_bytes = 0;   // capacity of the blocks handed out and not yet released
  std::size_t live_blocks = 0;
  std::uint64_t hits = 0;       // acquisitions served by an idle block
  std::uint64_t misses = 0;     // acquisitions that allocated a new block
  std::uint64_t evictions = 0;  // released blocks freed to stay within the limit
};

// Every block of a size class has the class's capacity: the smallest of 2^k, 1.25 * 2^k,
// 1.5 * 2^k, 1.75 * 2^k that holds the request (at most 25% more than asked; pages past the
// request are never touched unless a later, larger request of the class writes them), at least
// kMinBlockBytes.
constexpr std::size_t kMinBlockBytes = 4096;
// Blocks are aligned like torch's CPU allocator aligns its tensors.
constexpr std::size_t kBlockAlignment = 64;

// The capacity of the size class serving `bytes`; 0 when no class can hold it (overflow).
std::size_t block_capacity(std::size_t bytes) noexcept;

class BufferCache {
 public:
  explicit BufferCache(std::size_t limit) noexcept : limit_(limit) {}
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;
  ~BufferCache();

  // The cache of this process. Never destroyed: arrays may release blocks during interpreter
  // shutdown, after static destructors would have run. Registers fork handlers (POSIX) so that a
  // child never inherits the mutex locked by another thread of the parent.
  static BufferCache& global();

  // A block of capacity block_capacity(bytes) >= bytes: the most recently released idle block of
  // that class, else a new one. Throws Error(Memory) when it cannot be allocated.
  void* acquire(std::size_t bytes, std::size_t* capacity);
  // Gives back a block from acquire (with the capacity it reported). It is kept for reuse when
  // the idle bytes stay within the limit after evicting least recently released blocks, else
  // freed. Never throws.
  void release(void* block, std::size_t capacity) noexcept;

  // Sets the most idle bytes kept, freeing least recently released blocks beyond it. 0 keeps
  // nothing (every released block is freed at once).
  void set_limit(std::size_t limit) noexcept;
  std::size_t limit() const noexcept;
  // Frees every idle block (live blocks are untouched and still come back later).
  void clear() noexcept;
  BufferCacheStats stats() const noexcept;

  // Fork handlers: the forking thread holds the mutex across fork(), so the child's copy is in a
  // consistent state and unlocked. Idle blocks stay cached in the child (copy-on-write pages).
  void before_fork() noexcept;
  void after_fork() noexcept;

 private:
  struct Idle {
    void* block;
    std::uint64_t released;  // release order: smaller is older
  };
  // Evicts least recently released idle blocks until idle_bytes_ + incoming <= limit_; the
  // evicted blocks are appended to `evicted` and freed by the caller after unlocking.
  void evict_locked(std::size_t incoming, std::vector<void*>* evicted) noexcept;

  mutable std::mutex mutex_;
  std::size_t limit_;
  // Idle blocks per size class index, oldest first (reuse takes the back: the warmest).
  std::vector<std::deque<Idle>> idle_;
  std::uint64_t clock_ = 0;
  BufferCacheStats counts_{};
};

}  // namespace fastpad
