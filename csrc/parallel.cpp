#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace fastpad {

int hardware_threads() noexcept { return static_cast<int>(std::thread::hardware_concurrency()); }

namespace {

// One call's ranges, claimed in order by whichever thread is free: the calling thread works
// through them too, so a helper that the OS schedules late (a busy machine) finds nothing left
// and the call costs about what one thread costs. Owned jointly by the caller and the helpers
// (detached): a helper that starts after the call returned touches only this object.
struct Job {
  RowRangeFn fn;
  void* context;
  std::int64_t rows;
  std::int64_t ranges;
  std::atomic<std::int64_t> next{0};
  std::atomic<std::int64_t> done{0};
  std::vector<std::exception_ptr> errors;
  std::mutex mutex;
  std::condition_variable finished;

  Job(RowRangeFn fn_, void* context_, std::int64_t rows_, std::int64_t ranges_)
      : fn(fn_), context(context_), rows(rows_), ranges(ranges_),
        errors(static_cast<std::size_t>(ranges_)) {}

  // Runs the next unclaimed range; false when none is left. `fn` and `context` are used only
  // for a claimed range, and the caller returns only once every range is done.
  bool run_next() {
    const std::int64_t range = next.fetch_add(1);
    if (range >= ranges) return false;
    try {
      fn(context, rows * range / ranges, rows * (range + 1) / ranges);
    } catch (...) {
      errors[static_cast<std::size_t>(range)] = std::current_exception();
    }
    if (done.fetch_add(1) + 1 == ranges) {
      std::lock_guard<std::mutex> lock(mutex);
      finished.notify_all();
    }
    return true;
  }
};

}  // namespace

void parallel_rows(std::int64_t rows, int threads, RowRangeFn fn, void* context) {
  if (threads <= 1 || rows < 2) {
    fn(context, std::int64_t{0}, rows);
    return;
  }
  // More threads than this only adds start-up cost (and a huge `threads` would exhaust the
  // process's threads); it also keeps rows * range far from overflowing.
  constexpr std::int64_t kMaxThreads = 256;
  // Ranges per thread: a thread preempted within a range holds the call up by that range only.
  constexpr std::int64_t kRangesPerThread = 4;
  const std::int64_t helpers = std::min<std::int64_t>({threads, rows, kMaxThreads}) - 1;
  const std::int64_t ranges = std::min<std::int64_t>(rows, (helpers + 1) * kRangesPerThread);
  auto job = std::make_shared<Job>(fn, context, rows, ranges);
  for (std::int64_t helper = 0; helper < helpers; ++helper) {
    try {
      std::thread([job] {
        while (job->run_next()) {
        }
      }).detach();
    } catch (const std::system_error&) {
      break;  // no thread available: the calling thread does the rest
    }
  }
  while (job->run_next()) {
  }
  {
    std::unique_lock<std::mutex> lock(job->mutex);
    job->finished.wait(lock, [&] { return job->done.load() == ranges; });
  }
  // Every range is done, so no helper writes `errors` any more. The exceptions leave the Job
  // here: a helper may drop the last reference to the Job later, and must not free them.
  std::exception_ptr first;
  for (auto& error : job->errors) {
    if (error && !first) first = error;
    error = nullptr;
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace fastpad
