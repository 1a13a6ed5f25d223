// The plain C++ core on its own, with no Python: built and run by tests/test_core_cpp.py, which
// compiles it with every core source (csrc/*.cpp, no Python include path, so a Python header in
// the core fails the build). Prints one line per failed check and exits non-zero on any.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pack.hpp"
#include "parallel.hpp"
#include "plan.hpp"

namespace {

int failures = 0;

#define CHECK(condition)                                               \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      ++failures;                                                      \
    }                                                                  \
  } while (false)

// Every range fn was called with, in the order of their first row.
struct Ranges {
  std::mutex mutex;
  std::vector<std::pair<std::int64_t, std::int64_t>> seen;
  void add(std::int64_t begin, std::int64_t end) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.emplace_back(begin, end);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> sorted() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<std::pair<std::int64_t, std::int64_t>> result = seen;
    std::sort(result.begin(), result.end());
    return result;
  }
};

void ranges_cover_every_row_once() {
  for (const std::int64_t rows : {0, 1, 2, 3, 5, 64, 1000}) {
    for (const int threads : {-1, 0, 1, 2, 3, 8, 300}) {
      Ranges ranges;
      std::unique_ptr<std::atomic<int>[]> visits(new std::atomic<int>[rows + 1]);
      for (std::int64_t row = 0; row <= rows; ++row) visits[row] = 0;
      fastpad::parallel_rows(rows, threads, [&](std::int64_t begin, std::int64_t end) {
        ranges.add(begin, end);
        for (std::int64_t row = begin; row < end; ++row) ++visits[row];
      });
      for (std::int64_t row = 0; row < rows; ++row) CHECK(visits[row] == 1);
      const auto seen = ranges.sorted();
      // One range on the calling thread below two threads or two rows; else four per thread (at
      // most 256 threads), at most one per row.
      const std::int64_t expected =
          (threads <= 1 || rows < 2)
              ? 1
              : std::min<std::int64_t>(rows, 4 * std::min<std::int64_t>({threads, rows, 256}));
      CHECK(static_cast<std::int64_t>(seen.size()) == expected);
      // Contiguous, non-empty (when there are rows) and in order from 0 to rows.
      std::int64_t next = 0;
      for (const auto& range : seen) {
        CHECK(range.first == next);
        CHECK(range.second > range.first || rows == 0);
        next = range.second;
      }
      CHECK(next == rows);
    }
  }
}

void one_thread_runs_on_the_caller() {
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  int calls = 0;
  fastpad::parallel_rows(10, 1, [&](std::int64_t begin, std::int64_t end) {
    ran_on = std::this_thread::get_id();
    ++calls;
    CHECK(begin == 0 && end == 10);
  });
  CHECK(calls == 1);
  CHECK(ran_on == caller);
}

void first_exception_in_row_order_wins() {
  for (const int threads : {1, 2, 4, 8}) {
    std::atomic<std::int64_t> rows_done{0};
    std::string message;
    try {
      fastpad::parallel_rows(80, threads, [&](std::int64_t begin, std::int64_t end) {
        // Rows 30 and 70 fail; with threads > 1 they fall into different ranges.
        for (std::int64_t row = begin; row < end; ++row) {
          if (row == 30 || row == 70) throw std::runtime_error("row " + std::to_string(row));
          ++rows_done;
        }
      });
    } catch (const std::runtime_error& error) {
      message = error.what();
    }
    CHECK(message == "row 30");
    // Every range ran to its end or its failing row before the exception reached the caller: with
    // 4 threads (16 ranges of 5 rows), ranges [30, 35) and [70, 75) stop at their first row.
    if (threads == 4) CHECK(rows_done == 80 - 5 - 5);
  }
}

void late_helpers_find_nothing_left() {
  // Helpers are detached and may start after the call returned: they must then call nothing
  // (the ranges' state lives on the caller's stack, gone by then).
  std::atomic<std::int64_t> after_return{0};
  for (int call = 0; call < 500; ++call) {
    std::atomic<std::int64_t> rows_done{0};
    std::atomic<bool> returned{false};
    fastpad::parallel_rows(64, 8, [&](std::int64_t begin, std::int64_t end) {
      if (returned.load()) ++after_return;
      rows_done += end - begin;
    });
    returned = true;
    CHECK(rows_done == 64);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(after_return == 0);
}

void core_errors_keep_their_kind() {
  bool caught = false;
  try {
    fastpad::parallel_rows(4, 2, [](std::int64_t begin, std::int64_t) {
      if (begin > 0) throw fastpad::Error(fastpad::ErrorKind::Overflow, "too big");
    });
  } catch (const fastpad::Error& error) {
    caught = error.kind() == fastpad::ErrorKind::Overflow && std::string(error.what()) == "too big";
  }
  CHECK(caught);
}

void concat_pieces_copies_and_stops_at_uint64_overflow() {
  const std::int32_t first[] = {-1, 2, 3};
  const std::uint8_t second[] = {255};
  const std::uint64_t third[] = {7, static_cast<std::uint64_t>(1) << 63};
  const std::uint64_t fourth[] = {9};
  std::vector<std::int64_t> out(8, -100);
  const fastpad::ConcatPiece ok[] = {
      {first, fastpad::Scalar::Int32, 3, 0},
      {second, fastpad::Scalar::UInt8, 1, 3},
      {fourth, fastpad::Scalar::UInt64, 1, 4},
  };
  CHECK(fastpad::concat_pieces(ok, 3, out.data()) == 3);
  CHECK((out == std::vector<std::int64_t>{-1, 2, 3, 255, 9, -100, -100, -100}));
  const fastpad::ConcatPiece bad[] = {
      {second, fastpad::Scalar::UInt8, 1, 0},
      {third, fastpad::Scalar::UInt64, 2, 1},
      {fourth, fastpad::Scalar::UInt64, 1, 3},
  };
  CHECK(fastpad::concat_pieces(bad, 3, out.data()) == 1);
  CHECK(out[0] == 255 && out[1] == 7);
  CHECK(out[3] == 255);  // the piece after the failing one is not copied
  CHECK(fastpad::concat_pieces(nullptr, 0, out.data()) == 0);
}

}  // namespace

int main() {
  ranges_cover_every_row_once();
  one_thread_runs_on_the_caller();
  first_exception_in_row_order_wins();
  late_helpers_find_nothing_left();
  core_errors_keep_their_kind();
  concat_pieces_copies_and_stops_at_uint64_overflow();
  CHECK(fastpad::hardware_threads() >= 0);
  if (failures != 0) {
    std::printf("%d checks failed\n", failures);
    return 1;
  }
  std::printf("core tests passed\n");
  return 0;
}
