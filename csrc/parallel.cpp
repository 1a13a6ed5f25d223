#include "parallel.hpp"

#include <algorithm>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

namespace fastpad {

int hardware_threads() noexcept { return static_cast<int>(std::thread::hardware_concurrency()); }

void parallel_rows(std::int64_t rows, int threads, RowRangeFn fn, void* context) {
  if (threads <= 1 || rows < 2) {
    fn(context, std::int64_t{0}, rows);
    return;
  }
  // More threads than this only adds start-up cost (and a huge `threads` would exhaust the
  // process's threads); it also keeps rows * chunk far from overflowing.
  constexpr std::int64_t kMaxThreads = 256;
  const std::int64_t chunks = std::min<std::int64_t>({threads, rows, kMaxThreads});
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(chunks));
  auto run = [&](std::int64_t chunk) {
    try {
      fn(context, rows * chunk / chunks, rows * (chunk + 1) / chunks);
    } catch (...) {
      errors[static_cast<std::size_t>(chunk)] = std::current_exception();
    }
  };
  for (std::int64_t chunk = 1; chunk < chunks; ++chunk) {
    try {
      workers.emplace_back(run, chunk);
    } catch (const std::system_error&) {
      // No thread available: this chunk runs here. Letting the exception escape would destroy
      // joinable threads (std::terminate).
      run(chunk);
    }
  }
  run(0);
  for (auto& worker : workers) worker.join();
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace fastpad
