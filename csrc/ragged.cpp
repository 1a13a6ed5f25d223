#include "ragged.hpp"

#include <string>

namespace fastpad {

std::int64_t ragged_layout(const std::int64_t* lengths, std::int64_t rows, const Geometry& geometry,
                           std::int64_t* token_start, std::int64_t* base, std::int64_t* bound) {
  std::int64_t cursor = 0;  // first cell of row r: its first token (right) or its pad cell (left)
  for (std::int64_t row = 0; row < rows; ++row) {
    if (lengths[row] < 0) {
      throw Error(ErrorKind::Value, "fastpad: row " + std::to_string(row) + " has a negative length");
    }
    const std::int64_t kept = place(geometry, lengths[row]).count;
    if (kept > geometry.width) {
      throw Error(ErrorKind::Value, "fastpad: row " + std::to_string(row) + " does not fit the width");
    }
    if (geometry.pad_left) {
      bound[row] = cursor;
      token_start[row] = cursor + 1;
      // The last column reads the last kept token: base + width - 1 == cursor + kept.
      base[row] = cursor + 1 + kept - geometry.width;
    } else {
      token_start[row] = cursor;
      base[row] = cursor;
      bound[row] = cursor + kept;
    }
    cursor += kept + 1;
  }
  return cursor;
}

}  // namespace fastpad
