// fastpad core: splitting the rows of a batch over threads.
//
// Plain C++17 with no Python headers (like pack.hpp), so it is tested on its own
// (tests/cpp/test_core.cpp). The bindings call it with the GIL released; `fn` must then touch
// no Python object.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fastpad {

// Number of hardware threads (0 when unknown).
int hardware_threads() noexcept;

// The work over one range of rows: fn(context, row_begin, row_end).
using RowRangeFn = void (*)(void* context, std::int64_t row_begin, std::int64_t row_end);

// Runs fn(context, row_begin, row_end) over [0, rows) on up to `threads` threads (the calling one
// included), at most 256. The rows are cut into contiguous ranges, 4 per thread (fewer when there
// are fewer rows), covering [0, rows) exactly once; the threads claim them in order, the calling
// thread too, so a helper thread the OS starts late leaves its share to the others (on a busy
// machine the call then costs about what one thread costs). threads <= 1 or rows < 2: one call
// over [0, rows) on the calling thread. When no thread can be started, the calling thread runs
// every range. Returns once every range is done; an exception thrown by any range is then
// rethrown on the calling thread (the first range's in row order wins).
void parallel_rows(std::int64_t rows, int threads, RowRangeFn fn, void* context);

// The same for any callable fn(row_begin, row_end) (a lambda); nothing is copied or allocated.
template <class Fn>
void parallel_rows(std::int64_t rows, int threads, Fn&& fn) {
  using Callable = std::remove_reference_t<Fn>;
  parallel_rows(
      rows, threads,
      [](void* context, std::int64_t row_begin, std::int64_t row_end) {
        (*static_cast<Callable*>(context))(row_begin, row_end);
      },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace fastpad
