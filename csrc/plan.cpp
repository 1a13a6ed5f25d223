#include "plan.hpp"
#include "message.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <string>

namespace fastpad {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// Counting sort needs one counter per distinct length: used while the longest row is at most this
// many times the row count (plus a floor for small batches), else a comparison sort.
constexpr std::int64_t kCountingSortSlack = 4;
constexpr std::int64_t kCountingSortFloor = 1 << 16;

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorKind::Value, message); }

// Uniform draw in [0, bound) by rejection (no modulo bias). Written out rather than
// std::uniform_int_distribution, whose algorithm differs between standard libraries: the same
// seed must give the same plan everywhere.
std::uint64_t draw_below(std::mt19937_64& generator, std::uint64_t bound) {
  const std::uint64_t threshold = (std::uint64_t{0} - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const std::uint64_t value = generator();
    if (value >= threshold) return value % bound;
  }
}

// Fisher-Yates with draw_below (std::shuffle is not portable across standard libraries either).
void shuffle_indices(std::int64_t* first, std::int64_t count, std::mt19937_64& generator) {
  for (std::int64_t index = count - 1; index > 0; --index) {
    const auto other =
        static_cast<std::int64_t>(draw_below(generator, static_cast<std::uint64_t>(index) + 1));
    std::swap(first[index], first[other]);
  }
}

// Length rounded up to the multiple; Error(Value) when the result would not fit int64.
std::int64_t rounded(std::int64_t length, std::int64_t multiple_of, std::int64_t row) {
  if (multiple_of <= 1) return length;
  const std::int64_t remainder = length % multiple_of;
  if (remainder == 0) return length;
  if (length > kInt64Max - (multiple_of - remainder)) {
    fastpad::Message message;
    message << "plan_batches: length " << length << " of row " << row
            << " rounded up to a multiple of " << multiple_of << " does not fit int64";
    fail(message.str());
  }
  return length + (multiple_of - remainder);
}

// Stable sort of `order` (a permutation of row indices) by descending length.
void sort_longest_first(const std::int64_t* lengths, std::int64_t rows, std::int64_t longest,
                        std::int64_t* order) {
  if (longest <= kCountingSortSlack * rows + kCountingSortFloor) {
    // start[l]: first slot of rows of length l in the descending output.
    std::vector<std::int64_t> start(static_cast<std::size_t>(longest) + 2, 0);
    for (std::int64_t row = 0; row < rows; ++row) ++start[static_cast<std::size_t>(lengths[row])];
    std::int64_t next = 0;
    for (std::int64_t length = longest; length >= 0; --length) {
      const std::int64_t count = start[static_cast<std::size_t>(length)];
      start[static_cast<std::size_t>(length)] = next;
      next += count;
    }
    std::vector<std::int64_t> source(order, order + rows);
    for (const std::int64_t row : source) {
      order[start[static_cast<std::size_t>(lengths[row])]++] = row;
    }
    return;
  }
  std::stable_sort(order, order + rows,
                   [lengths](std::int64_t a, std::int64_t b) { return lengths[a] > lengths[b]; });
}

}  // namespace

std::vector<std::int64_t> plan_batches(const std::int64_t* lengths, std::int64_t rows,
                                       const PlanOptions& options, std::int64_t* order) {
  if (options.max_tokens <= 0) fail("plan_batches: max_tokens must be > 0");
  if (options.max_batch_size < 0) fail("plan_batches: max_batch_size must be > 0");
  if (options.multiple_of < 0) fail("plan_batches: multiple_of must be > 0");
  std::int64_t longest = 0;
  for (std::int64_t row = 0; row < rows; ++row) {
    if (lengths[row] < 0) {
      fastpad::Message message;
      message << "plan_batches: length of row " << row << " is negative (" << lengths[row] << ")";
      fail(message.str());
    }
    longest = std::max(longest, lengths[row]);
  }
  rounded(longest, options.multiple_of, 0);  // every rounded length fits int64 from here on

  std::mt19937_64 generator(options.seed);
  std::iota(order, order + rows, std::int64_t{0});
  if (options.sort) {
    // Shuffling before a stable sort spreads rows of equal length over batches at random.
    if (options.shuffle) shuffle_indices(order, rows, generator);
    sort_longest_first(lengths, rows, longest, order);
  }

  const std::int64_t max_rows = options.max_batch_size > 0 ? options.max_batch_size : kInt64Max;
  std::vector<std::int64_t> bounds{0};
  if (options.sort) {
    // Longest first: a batch's first row is its longest, so its capacity is known up front.
    std::int64_t begin = 0;
    while (begin < rows) {
      const std::int64_t width = rounded(lengths[order[begin]], options.multiple_of, order[begin]);
      std::int64_t capacity = width == 0 ? rows : std::max<std::int64_t>(1, options.max_tokens / width);
      capacity = std::min({capacity, max_rows, rows - begin});
      begin += capacity;
      bounds.push_back(begin);
    }
  } else {
    std::int64_t count = 0;
    std::int64_t width = 0;  // rounded longest length of the open batch
    for (std::int64_t position = 0; position < rows; ++position) {
      const std::int64_t row = order[position];
      const std::int64_t row_width = rounded(lengths[row], options.multiple_of, row);
      const std::int64_t grown = std::max(width, row_width);
      // (count + 1) * grown <= max_tokens, written as a division so it cannot overflow.
      const bool fits = count + 1 <= max_rows && (grown == 0 || count + 1 <= options.max_tokens / grown);
      if (count > 0 && !fits) {
        bounds.push_back(position);
        count = 0;
        width = row_width;
      } else {
        width = grown;
      }
      ++count;
    }
    if (rows > 0) bounds.push_back(rows);
  }

  if (options.shuffle && bounds.size() > 2) {
    const auto batches = static_cast<std::int64_t>(bounds.size()) - 1;
    std::vector<std::int64_t> batch_order(static_cast<std::size_t>(batches));
    std::iota(batch_order.begin(), batch_order.end(), std::int64_t{0});
    shuffle_indices(batch_order.data(), batches, generator);
    std::vector<std::int64_t> source(order, order + rows);
    std::vector<std::int64_t> shuffled_bounds{0};
    std::int64_t next = 0;
    for (const std::int64_t batch : batch_order) {
      const std::int64_t begin = bounds[static_cast<std::size_t>(batch)];
      const std::int64_t end = bounds[static_cast<std::size_t>(batch) + 1];
      std::copy(source.begin() + begin, source.begin() + end, order + next);
      next += end - begin;
      shuffled_bounds.push_back(next);
    }
    bounds = std::move(shuffled_bounds);
  }
  return bounds;
}

std::int64_t copy_to_int64(const void* source, Scalar type, std::int64_t count,
                           std::int64_t* destination) noexcept {
  auto copy = [&](const auto* typed) {
    for (std::int64_t index = 0; index < count; ++index) {
      destination[index] = static_cast<std::int64_t>(typed[index]);
    }
    return count;
  };
  switch (type) {
    case Scalar::Bool:
    case Scalar::UInt8: return copy(static_cast<const std::uint8_t*>(source));
    case Scalar::Int8: return copy(static_cast<const std::int8_t*>(source));
    case Scalar::Int16: return copy(static_cast<const std::int16_t*>(source));
    case Scalar::UInt16: return copy(static_cast<const std::uint16_t*>(source));
    case Scalar::Int32: return copy(static_cast<const std::int32_t*>(source));
    case Scalar::UInt32: return copy(static_cast<const std::uint32_t*>(source));
    case Scalar::Int64: return copy(static_cast<const std::int64_t*>(source));
    case Scalar::UInt64: {
      const auto* typed = static_cast<const std::uint64_t*>(source);
      for (std::int64_t index = 0; index < count; ++index) {
        if (typed[index] > static_cast<std::uint64_t>(kInt64Max)) return index;
        destination[index] = static_cast<std::int64_t>(typed[index]);
      }
      return count;
    }
  }
  return count;
}

std::size_t concat_pieces(const ConcatPiece* pieces, std::size_t count,
                          std::int64_t* destination) noexcept {
  for (std::size_t index = 0; index < count; ++index) {
    const ConcatPiece& piece = pieces[index];
    if (copy_to_int64(piece.data, piece.type, piece.size, destination + piece.start) != piece.size) {
      return index;
    }
  }
  return count;
}

}  // namespace fastpad
