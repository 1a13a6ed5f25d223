#include "buffer_cache.hpp"

#include <cstdlib>
#include <limits>
#include <new>
#include <string>

#include "pack.hpp"

#if defined(_WIN32)
#include <malloc.h>
#else
#include <pthread.h>
#endif

namespace fastpad {
namespace {

int floor_log2(std::size_t value) noexcept {
  int bit = -1;
  while (value != 0) {
    value >>= 1;
    ++bit;
  }
  return bit;
}

// Size classes are numbered 4 * k + m for capacity (4 + m) * 2^(k - 2), m in [0, 4).
std::size_t class_index(std::size_t capacity) noexcept {
  const int k = floor_log2(capacity);
  const std::size_t power = std::size_t{1} << k;
  return static_cast<std::size_t>(4 * k) + (capacity - power) / (power / 4);
}

void* allocate_block(std::size_t capacity) noexcept {
#if defined(_WIN32)
  return _aligned_malloc(capacity, kBlockAlignment);
#else
  void* block = nullptr;
  return posix_memalign(&block, kBlockAlignment, capacity) == 0 ? block : nullptr;
#endif
}

void free_block(void* block) noexcept {
#if defined(_WIN32)
  _aligned_free(block);
#else
  std::free(block);
#endif
}

#if !defined(_WIN32)
void global_before_fork() { BufferCache::global().before_fork(); }
void global_after_fork() { BufferCache::global().after_fork(); }
#endif

// Idle bytes kept by default: a few batches of [1024, 512] int64 ids + mask (4 MiB each).
constexpr std::size_t kDefaultLimit = std::size_t{128} << 20;

}  // namespace

std::size_t block_capacity(std::size_t bytes) noexcept {
  if (bytes <= kMinBlockBytes) return kMinBlockBytes;
  if (bytes > std::numeric_limits<std::size_t>::max() / 4) return 0;
  const std::size_t power = std::size_t{1} << floor_log2(bytes);
  if (bytes == power) return power;
  const std::size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

BufferCache::~BufferCache() { clear(); }

BufferCache& BufferCache::global() {
  // Leaked on purpose (see the header); the handlers are registered once, with the instance.
  static BufferCache* const cache = [] {
    auto* created = new BufferCache(kDefaultLimit);
#if !defined(_WIN32)
    pthread_atfork(global_before_fork, global_after_fork, global_after_fork);
#endif
    return created;
  }();
  return *cache;
}

void* BufferCache::acquire(std::size_t bytes, std::size_t* capacity) {
  const std::size_t size = block_capacity(bytes);
  if (size == 0) {
    throw Error(ErrorKind::Memory,
                "fastpad: an output of " + std::to_string(bytes) + " bytes does not fit in memory");
  }
  const std::size_t index = class_index(size);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (index < idle_.size() && !idle_[index].empty()) {
      void* block = idle_[index].back().block;
      idle_[index].pop_back();
      counts_.idle_bytes -= size;
      counts_.idle_blocks -= 1;
      counts_.live_bytes += size;
      counts_.live_blocks += 1;
      counts_.hits += 1;
      *capacity = size;
      return block;
    }
  }
  // Allocated outside the lock: the allocator may take its own locks and a long time.
  void* block = allocate_block(size);
  if (block == nullptr) {
    // Idle blocks of other classes may be what stands in the way: drop them and retry once.
    clear();
    block = allocate_block(size);
    if (block == nullptr) {
      throw Error(ErrorKind::Memory,
                  "fastpad: cannot allocate an output of " + std::to_string(bytes) + " bytes");
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  counts_.live_bytes += size;
  counts_.live_blocks += 1;
  counts_.misses += 1;
  *capacity = size;
  return block;
}

void BufferCache::release(void* block, std::size_t capacity) noexcept {
  if (block == nullptr) return;
  std::vector<void*> evicted;
  bool kept = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counts_.live_bytes -= capacity;
    counts_.live_blocks -= 1;
    if (capacity <= limit_) {
      try {
        const std::size_t index = class_index(capacity);
        if (idle_.size() <= index) idle_.resize(index + 1);
        evicted.reserve(4);
        evict_locked(capacity, &evicted);
        idle_[index].push_back(Idle{block, ++clock_});
        counts_.idle_bytes += capacity;
        counts_.idle_blocks += 1;
        kept = true;
      } catch (...) {  // std::bad_alloc growing the bookkeeping: free the block instead
      }
    }
    if (!kept) counts_.evictions += 1;
  }
  for (void* old : evicted) free_block(old);
  if (!kept) free_block(block);
}

void BufferCache::evict_locked(std::size_t incoming, std::vector<void*>* evicted) noexcept {
  while (counts_.idle_bytes + incoming > limit_ && counts_.idle_blocks > 0) {
    std::deque<Idle>* oldest = nullptr;
    std::size_t oldest_index = 0;
    for (std::size_t index = 0; index < idle_.size(); ++index) {
      std::deque<Idle>& blocks = idle_[index];
      if (!blocks.empty() && (oldest == nullptr || blocks.front().released < oldest->front().released)) {
        oldest = &blocks;
        oldest_index = index;
      }
    }
    const std::size_t size = std::size_t{4 + oldest_index % 4} << (oldest_index / 4 - 2);
    // `evicted` has room reserved by the caller for a few blocks; past that, freeing inside the
    // lock is still correct (the allocator never calls back into the cache).
    if (evicted->size() < evicted->capacity()) {
      evicted->push_back(oldest->front().block);
    } else {
      free_block(oldest->front().block);
    }
    oldest->pop_front();
    counts_.idle_bytes -= size;
    counts_.idle_blocks -= 1;
    counts_.evictions += 1;
  }
}

void BufferCache::set_limit(std::size_t limit) noexcept {
  std::vector<void*> evicted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = limit;
    evict_locked(0, &evicted);  // no reserved room: frees inside the lock (a rare call)
  }
}

std::size_t BufferCache::limit() const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return limit_;
}

void BufferCache::clear() noexcept {
  std::vector<std::deque<Idle>> idle;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    idle.swap(idle_);
    counts_.idle_bytes = 0;
    counts_.idle_blocks = 0;
  }
  for (const std::deque<Idle>& blocks : idle) {
    for (const Idle& entry : blocks) free_block(entry.block);
  }
}

BufferCacheStats BufferCache::stats() const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  BufferCacheStats result = counts_;
  result.limit = limit_;
  return result;
}

void BufferCache::before_fork() noexcept { mutex_.lock(); }

void BufferCache::after_fork() noexcept { mutex_.unlock(); }

}  // namespace fastpad
