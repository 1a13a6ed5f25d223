// fastpad core: ragged integer rows -> padded [rows, width] buffers plus masks.
//
// Plain C++17 with no Python headers: functions over pointers, lengths and small spec structs, so
// the core can be unit-tested and benchmarked on its own. The bindings (csrc/python/, module in
// csrc/bindings.cpp) convert Python objects into these views and translate fastpad::Error into
// Python exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace fastpad {

enum class ErrorKind { Value, Type, Overflow, Memory };

// The one exception type of the core; `kind` picks the Python exception class.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// Element types a buffer may hold. Bool is stored as one byte holding 0 or 1 (numpy/torch layout).
enum class Scalar : std::uint8_t { Bool, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64 };

std::size_t scalar_size(Scalar type) noexcept;
const char* scalar_name(Scalar type) noexcept;
// Inclusive value range of `type` clamped to int64 (UInt64's upper end is reported as INT64_MAX).
std::int64_t scalar_min(Scalar type) noexcept;
std::int64_t scalar_max(Scalar type) noexcept;
bool value_fits(std::int64_t value, Scalar type) noexcept;

enum class Padding { Longest, MaxLength, DoNotPad };

struct PadOptions {
  Padding padding = Padding::Longest;
  std::int64_t max_length = -1;   // -1: not given
  bool truncate = false;          // cut rows longer than max_length
  std::int64_t multiple_of = 0;   // 0: no rounding
};

// Where every row lands: the output has `width` columns; a row of n tokens keeps
// min(n, keep_limit) of them (keep_limit < 0: all), taken from the head or the tail, and is
// written against the left or right edge.
struct Geometry {
  std::int64_t width = 0;
  std::int64_t keep_limit = -1;
  bool pad_left = false;
  bool truncate_left = false;
};

struct Placement {
  std::int64_t src_begin;  // first kept source element
  std::int64_t count;      // kept elements
  std::int64_t dst_begin;  // first output column written with a real token
};

inline Placement place(const Geometry& geometry, std::int64_t length) noexcept {
  const std::int64_t count =
      (geometry.keep_limit >= 0 && length > geometry.keep_limit) ? geometry.keep_limit : length;
  return Placement{geometry.truncate_left ? length - count : 0, count,
                   geometry.pad_left ? geometry.width - count : 0};
}

// Checks the options against the row lengths and returns the output width. Raises
// Error(Value) for a row longer than max_length with padding=MaxLength and no truncation (row
// named), unequal rows with DoNotPad, and invalid option values.
std::int64_t output_width(const std::int64_t* lengths, std::int64_t rows, const PadOptions& options);

// rows * width elements of `type` must be addressable: raises Error(Memory) naming the size.
std::int64_t checked_cells(std::int64_t rows, std::int64_t width, Scalar type);

// A C-contiguous [rows, width] output buffer.
struct Column {
  void* data;
  Scalar type;
  std::int64_t rows;
  std::int64_t width;
};

// A ragged source in flat layout: row r is values[offsets[r] : offsets[r + 1]].
struct RaggedView {
  const void* values;
  Scalar value_type;
  std::int64_t value_count;
  const void* offsets;
  Scalar offset_type;
  std::int64_t rows;  // offsets holds rows + 1 entries
};

// Row lengths of a ragged view; raises Error(Value) for offsets that do not start at 0, decrease
// or run past the values, naming the row.
void ragged_lengths(const RaggedView& source, std::int64_t* lengths, const char* field);

// Writes rows [row_begin, row_end) of `out` from `source` (placement by `geometry`, padding with
// `pad_value`). Values are range-checked against out.type: Error(Overflow) names row and field.
void write_ragged(const Column& out, const Geometry& geometry, const RaggedView& source,
                  std::int64_t pad_value, std::int64_t row_begin, std::int64_t row_end,
                  const char* field);

// Writes row `row` of `out` from a contiguous source of `length` elements of `type`.
void write_row(const Column& out, const Geometry& geometry, std::int64_t row, const void* values,
               Scalar type, std::int64_t length, std::int64_t pad_value, const char* field);

// Fills the padding cells of row `row` (everything outside the placement of a `length`-token row)
// with pad_value; the caller writes the kept tokens itself (used by the Python-list path, which
// unboxes straight into the output).
void write_row_padding(const Column& out, const Geometry& geometry, std::int64_t row,
                       std::int64_t length, std::int64_t pad_value);

// Attention mask: 1 over each row's kept tokens, 0 elsewhere, for rows [row_begin, row_end).
void write_mask(const Column& out, const Geometry& geometry, const std::int64_t* lengths,
                std::int64_t row_begin, std::int64_t row_end);

// Stores one already-unboxed value at out[row, column]; false when it does not fit out.type.
inline bool store_value(const Column& out, std::int64_t row, std::int64_t column,
                        std::int64_t value) noexcept {
  if (!value_fits(value, out.type)) return false;
  const std::int64_t index = row * out.width + column;
  switch (out.type) {
    case Scalar::Bool:
    case Scalar::UInt8: static_cast<std::uint8_t*>(out.data)[index] = static_cast<std::uint8_t>(value); break;
    case Scalar::Int8: static_cast<std::int8_t*>(out.data)[index] = static_cast<std::int8_t>(value); break;
    case Scalar::Int16: static_cast<std::int16_t*>(out.data)[index] = static_cast<std::int16_t>(value); break;
    case Scalar::UInt16: static_cast<std::uint16_t*>(out.data)[index] = static_cast<std::uint16_t>(value); break;
    case Scalar::Int32: static_cast<std::int32_t*>(out.data)[index] = static_cast<std::int32_t>(value); break;
    case Scalar::UInt32: static_cast<std::uint32_t*>(out.data)[index] = static_cast<std::uint32_t>(value); break;
    case Scalar::Int64: static_cast<std::int64_t*>(out.data)[index] = value; break;
    case Scalar::UInt64: static_cast<std::uint64_t*>(out.data)[index] = static_cast<std::uint64_t>(value); break;
  }
  return true;
}

std::string overflow_message(const char* field, std::int64_t row, std::int64_t value, Scalar type);

}  // namespace fastpad
