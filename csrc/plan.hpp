// fastpad core, beyond padding: token-budget batch planning and flat concatenation of rows.
//
// Plain C++17 with no Python headers (like pack.hpp). The bindings (csrc/python/plan.cpp) hand
// over plain arrays and turn fastpad::Error into Python exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pack.hpp"

namespace fastpad {

struct PlanOptions {
  std::int64_t max_tokens = 0;      // budget of padded cells per batch (> 0)
  std::int64_t max_batch_size = 0;  // 0: no limit on rows per batch
  std::int64_t multiple_of = 0;     // 0 or 1: the longest length is not rounded
  bool sort = true;                 // group rows of similar length (longest first)
  bool shuffle = false;             // shuffle batch order (and ties between equal lengths)
  std::uint64_t seed = 0;           // seed of the shuffle (std::mt19937_64, portable)
};

// Splits rows [0, rows) into batches. A batch of n rows whose longest row has L tokens costs
// n * round_up(L, multiple_of) padded cells; every batch costs at most max_tokens except a batch
// made of one row that alone exceeds the budget.
//
// Writes every row index exactly once into `order` (rows entries), batch after batch, and returns
// the batch boundaries: batch b is order[bounds[b] : bounds[b + 1]], bounds[0] == 0 and
// bounds.back() == rows. Raises Error(Value) for a negative length (row named) or bad options.
//
// With sort, rows are taken longest first (a stable counting sort when lengths are small, else a
// stable comparison sort) and packed greedily, so rows of one batch have neighbouring lengths;
// without sort they are packed greedily in their given order. With shuffle, row indices are
// permuted before the stable sort (rows of equal length land in random batches) and the batch
// order is permuted; the same seed gives the same plan on every platform.
std::vector<std::int64_t> plan_batches(const std::int64_t* lengths, std::int64_t rows,
                                       const PlanOptions& options, std::int64_t* order);

// Copies `count` integers of `type` to int64. Returns the index of the first value that does not
// fit int64 (only possible for UInt64), or count when all were copied.
std::int64_t copy_to_int64(const void* source, Scalar type, std::int64_t count,
                           std::int64_t* destination) noexcept;

// One contiguous source of a concatenation: `size` integers of `type`, copied to
// destination[start, start + size).
struct ConcatPiece {
  const void* data;
  Scalar type;
  std::int64_t size;
  std::int64_t start;
};

// Copies every piece into `destination` as int64 (fastpad.flatten's buffer rows). Stops at the
// first piece holding a value that does not fit int64 (only possible for UInt64) and returns its
// index; returns `count` when every piece was copied.
std::size_t concat_pieces(const ConcatPiece* pieces, std::size_t count,
                          std::int64_t* destination) noexcept;

}  // namespace fastpad
