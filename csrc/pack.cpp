#include "pack.hpp"
#include "message.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace fastpad {

namespace {

template <class T>
struct Storage {
  using type = T;
};
template <>
struct Storage<bool> {
  using type = std::uint8_t;
};

// Calls fn(T{}) with T the C++ type stored for `type` (bool is stored as uint8_t with range 0..1).
template <class Fn>
decltype(auto) dispatch(Scalar type, Fn&& fn) {
  switch (type) {
    case Scalar::Bool: return fn(std::uint8_t{});
    case Scalar::Int8: return fn(std::int8_t{});
    case Scalar::Int16: return fn(std::int16_t{});
    case Scalar::Int32: return fn(std::int32_t{});
    case Scalar::Int64: return fn(std::int64_t{});
    case Scalar::UInt8: return fn(std::uint8_t{});
    case Scalar::UInt16: return fn(std::uint16_t{});
    case Scalar::UInt32: return fn(std::uint32_t{});
    case Scalar::UInt64: return fn(std::uint64_t{});
  }
  throw Error(ErrorKind::Type, "fastpad: unknown element type");
}

// True when every value of In fits Out's range, so the copy needs no check.
template <class Out, class In>
constexpr bool always_fits() {
  if constexpr (std::is_signed_v<In> == std::is_signed_v<Out>) {
    return sizeof(Out) >= sizeof(In);
  } else if constexpr (std::is_signed_v<Out>) {
    return sizeof(Out) > sizeof(In);
  } else {
    return false;
  }
}

// Compares a source value against an int64 range without wrap-around (uint64 above INT64_MAX is
// out of every range).
template <class In>
inline bool in_range(In value, std::int64_t lo, std::int64_t hi) {
  if constexpr (std::is_same_v<In, std::uint64_t>) {
    return value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) &&
           static_cast<std::int64_t>(value) >= lo && static_cast<std::int64_t>(value) <= hi;
  } else {
    return static_cast<std::int64_t>(value) >= lo && static_cast<std::int64_t>(value) <= hi;
  }
}

template <class In>
std::int64_t as_int64_for_message(In value) {
  if constexpr (std::is_same_v<In, std::uint64_t>) {
    // Only used in messages; values above INT64_MAX are reported separately.
    return value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
               ? std::numeric_limits<std::int64_t>::max()
               : static_cast<std::int64_t>(value);
  } else {
    return static_cast<std::int64_t>(value);
  }
}

template <class Out>
void fill(Out* destination, std::int64_t count, Out value) {
  std::fill(destination, destination + count, value);
}

// Copies `count` values, range-checked for `out_type` unless the types make that impossible to
// fail; the check is accumulated branch-free so the loop vectorizes, and the first bad value is
// located only on failure.
template <class Out, class In>
void copy_checked(Out* destination, const In* source, std::int64_t count, Scalar out_type,
                  const char* field, std::int64_t row) {
  const bool is_bool = out_type == Scalar::Bool;
  if (!is_bool && always_fits<Out, In>()) {
    for (std::int64_t i = 0; i < count; ++i) destination[i] = static_cast<Out>(source[i]);
    return;
  }
  const std::int64_t lo = scalar_min(out_type);
  const std::int64_t hi = scalar_max(out_type);
  bool ok = true;
  for (std::int64_t i = 0; i < count; ++i) {
    ok &= in_range(source[i], lo, hi);
    destination[i] = static_cast<Out>(source[i]);
  }
  if (ok) return;
  for (std::int64_t i = 0; i < count; ++i) {
    if (!in_range(source[i], lo, hi)) {
      if constexpr (std::is_same_v<In, std::uint64_t>) {
        if (source[i] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          fastpad::Message message;
          message << "fastpad: row " << row << " of '" << field << "': value " << source[i]
                  << " does not fit " << scalar_name(out_type);
          throw Error(ErrorKind::Overflow, message.str());
        }
      }
      throw Error(ErrorKind::Overflow,
                  overflow_message(field, row, as_int64_for_message(source[i]), out_type));
    }
  }
}

template <class Out>
void pad_row(Out* row_data, const Geometry& geometry, const Placement& placement, Out pad) {
  fill(row_data, placement.dst_begin, pad);
  const std::int64_t tail = placement.dst_begin + placement.count;
  fill(row_data + tail, geometry.width - tail, pad);
}

void check_pad_value(std::int64_t pad_value, Scalar type, const char* field) {
  if (!value_fits(pad_value, type)) {
    fastpad::Message message;
    message << "fastpad: pad value " << pad_value << " for '" << field << "' does not fit "
            << scalar_name(type);
    throw Error(ErrorKind::Overflow, message.str());
  }
}

template <class Offset>
std::int64_t offset_at(const void* offsets, std::int64_t index) {
  return static_cast<std::int64_t>(static_cast<const Offset*>(offsets)[index]);
}

std::int64_t read_offset(const RaggedView& source, std::int64_t index) {
  switch (source.offset_type) {
    case Scalar::Int32: return offset_at<std::int32_t>(source.offsets, index);
    case Scalar::Int64: return offset_at<std::int64_t>(source.offsets, index);
    case Scalar::UInt32: return offset_at<std::uint32_t>(source.offsets, index);
    case Scalar::UInt64: {
      const auto value = static_cast<const std::uint64_t*>(source.offsets)[index];
      return value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                 ? std::numeric_limits<std::int64_t>::max()
                 : static_cast<std::int64_t>(value);
    }
    default: throw Error(ErrorKind::Type, "fastpad: offsets must be int32, int64, uint32 or uint64");
  }
}

}  // namespace

std::size_t scalar_size(Scalar type) noexcept {
  switch (type) {
    case Scalar::Bool:
    case Scalar::Int8:
    case Scalar::UInt8: return 1;
    case Scalar::Int16:
    case Scalar::UInt16: return 2;
    case Scalar::Int32:
    case Scalar::UInt32: return 4;
    case Scalar::Int64:
    case Scalar::UInt64: return 8;
  }
  return 0;
}

const char* scalar_name(Scalar type) noexcept {
  switch (type) {
    case Scalar::Bool: return "bool";
    case Scalar::Int8: return "int8";
    case Scalar::Int16: return "int16";
    case Scalar::Int32: return "int32";
    case Scalar::Int64: return "int64";
    case Scalar::UInt8: return "uint8";
    case Scalar::UInt16: return "uint16";
    case Scalar::UInt32: return "uint32";
    case Scalar::UInt64: return "uint64";
  }
  return "?";
}

std::int64_t scalar_min(Scalar type) noexcept {
  switch (type) {
    case Scalar::Int8: return std::numeric_limits<std::int8_t>::min();
    case Scalar::Int16: return std::numeric_limits<std::int16_t>::min();
    case Scalar::Int32: return std::numeric_limits<std::int32_t>::min();
    case Scalar::Int64: return std::numeric_limits<std::int64_t>::min();
    default: return 0;
  }
}

std::int64_t scalar_max(Scalar type) noexcept {
  switch (type) {
    case Scalar::Bool: return 1;
    case Scalar::Int8: return std::numeric_limits<std::int8_t>::max();
    case Scalar::Int16: return std::numeric_limits<std::int16_t>::max();
    case Scalar::Int32: return std::numeric_limits<std::int32_t>::max();
    case Scalar::UInt8: return std::numeric_limits<std::uint8_t>::max();
    case Scalar::UInt16: return std::numeric_limits<std::uint16_t>::max();
    case Scalar::UInt32: return std::numeric_limits<std::uint32_t>::max();
    default: return std::numeric_limits<std::int64_t>::max();
  }
}

bool value_fits(std::int64_t value, Scalar type) noexcept {
  return value >= scalar_min(type) && value <= scalar_max(type);
}

std::string overflow_message(const char* field, std::int64_t row, std::int64_t value,
                             Scalar type) {
  fastpad::Message message;
  message << "fastpad: row " << row << " of '" << field << "': value " << value
          << " does not fit " << scalar_name(type);
  return message.str();
}

std::int64_t output_width(const std::int64_t* lengths, std::int64_t rows,
                          const PadOptions& options) {
  if (options.max_length < -1) throw Error(ErrorKind::Value, "fastpad: max_length must be >= 0");
  if (options.multiple_of < 0) {
    throw Error(ErrorKind::Value, "fastpad: pad_to_multiple_of must be a positive integer");
  }
  if (options.truncate && options.max_length < 0) {
    throw Error(ErrorKind::Value, "fastpad: truncation=True needs max_length");
  }
  std::int64_t longest = 0;
  for (std::int64_t row = 0; row < rows; ++row) {
    std::int64_t kept = lengths[row];
    if (options.truncate && kept > options.max_length) kept = options.max_length;
    longest = std::max(longest, kept);
  }
  std::int64_t width = longest;
  switch (options.padding) {
    case Padding::Longest: break;
    case Padding::MaxLength: {
      if (options.max_length < 0) {
        throw Error(ErrorKind::Value, "fastpad: padding='max_length' needs max_length");
      }
      if (longest > options.max_length) {
        for (std::int64_t row = 0; row < rows; ++row) {
          if (lengths[row] > options.max_length) {
            fastpad::Message message;
            message << "fastpad: row " << row << " has " << lengths[row]
                    << " tokens, more than max_length=" << options.max_length
                    << " (padding='max_length'); pass truncation=True to cut it";
            throw Error(ErrorKind::Value, message.str());
          }
        }
      }
      width = options.max_length;
      break;
    }
    case Padding::DoNotPad: {
      for (std::int64_t row = 0; row < rows; ++row) {
        std::int64_t kept = lengths[row];
        if (options.truncate && kept > options.max_length) kept = options.max_length;
        if (kept != longest) {
          fastpad::Message message;
          message << "fastpad: padding=False but row " << row << " has " << kept
                  << " tokens and another has " << longest
                  << "; a tensor needs rows of one length (pass padding=True)";
          throw Error(ErrorKind::Value, message.str());
        }
      }
      return width;
    }
  }
  if (options.multiple_of > 0 && width % options.multiple_of != 0) {
    const std::int64_t steps = width / options.multiple_of + 1;
    // Rounding up must not wrap: such a width is far beyond any buffer (found by fuzz_core).
    if (steps > std::numeric_limits<std::int64_t>::max() / options.multiple_of) {
      fastpad::Message message;
      message << "fastpad: rounding the width " << width << " up to a multiple of "
              << options.multiple_of << " exceeds int64; a batch that wide does not fit in memory";
      throw Error(ErrorKind::Memory, message.str());
    }
    width = steps * options.multiple_of;
  }
  return width;
}

namespace {
// Bytes of physical memory, or INT64_MAX when unknown.
std::int64_t physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0 &&
      pages <= std::numeric_limits<std::int64_t>::max() / page_size) {
    return static_cast<std::int64_t>(pages) * page_size;
  }
#endif
  return std::numeric_limits<std::int64_t>::max();
}
}  // namespace

std::int64_t checked_cells(std::int64_t rows, std::int64_t width, Scalar type) {
  const auto element = static_cast<std::int64_t>(scalar_size(type));
  // Limit to what a size_t byte count and a ptrdiff_t index can both hold.
  const std::int64_t limit = std::numeric_limits<std::int64_t>::max() / 8;
  const bool addressable = rows >= 0 && width >= 0 && (width == 0 || rows <= limit / width) &&
                           rows * width <= limit / element;
  // Beyond physical memory an allocation may still succeed (overcommit) and the process is then
  // killed while the padding is written: refuse it here, with the size in the message.
  if (!addressable || rows * width * element > physical_memory()) {
    fastpad::Message message;
    message << "fastpad: a [" << rows << ", " << width << "] " << scalar_name(type) << " batch";
    if (addressable) {
      message << " (" << rows * width * element << " bytes) is larger than the "
              << physical_memory() << " bytes of physical memory";
    } else {
      message << " does not fit in memory";
    }
    throw Error(ErrorKind::Memory, message.str());
  }
  return rows * width;
}

void ragged_lengths(const RaggedView& source, std::int64_t* lengths, const char* field) {
  if (source.rows < 0) throw Error(ErrorKind::Value, "fastpad: offsets must not be empty");
  const std::int64_t first = source.rows >= 0 ? read_offset(source, 0) : 0;
  if (first != 0) {
    fastpad::Message message;
    message << "fastpad: offsets of '" << field << "' must start at 0, got " << first;
    throw Error(ErrorKind::Value, message.str());
  }
  std::int64_t previous = 0;
  for (std::int64_t row = 0; row < source.rows; ++row) {
    const std::int64_t next = read_offset(source, row + 1);
    if (next < previous) {
      fastpad::Message message;
      message << "fastpad: offsets of '" << field << "' decrease at row " << row << " ("
              << previous << " then " << next << ")";
      throw Error(ErrorKind::Value, message.str());
    }
    if (next > source.value_count) {
      fastpad::Message message;
      message << "fastpad: offsets of '" << field << "' run past the values at row " << row
              << " (offset " << next << " > " << source.value_count << " values)";
      throw Error(ErrorKind::Value, message.str());
    }
    lengths[row] = next - previous;
    previous = next;
  }
}

void write_ragged(const Column& out, const Geometry& geometry, const RaggedView& source,
                  std::int64_t pad_value, std::int64_t row_begin, std::int64_t row_end,
                  const char* field) {
  check_pad_value(pad_value, out.type, field);
  dispatch(out.type, [&](auto out_tag) {
    using Out = decltype(out_tag);
    dispatch(source.value_type, [&](auto in_tag) {
      using In = decltype(in_tag);
      const auto* values = static_cast<const In*>(source.values);
      auto* base = static_cast<Out*>(out.data);
      const Out pad = static_cast<Out>(pad_value);
      for (std::int64_t row = row_begin; row < row_end; ++row) {
        const std::int64_t begin = read_offset(source, row);
        const std::int64_t length = read_offset(source, row + 1) - begin;
        const Placement placement = place(geometry, length);
        Out* row_data = base + row * out.width;
        pad_row(row_data, geometry, placement, pad);
        copy_checked(row_data + placement.dst_begin, values + begin + placement.src_begin,
                     placement.count, out.type, field, row);
      }
    });
  });
}

void write_row(const Column& out, const Geometry& geometry, std::int64_t row, const void* values,
               Scalar type, std::int64_t length, std::int64_t pad_value, const char* field) {
  check_pad_value(pad_value, out.type, field);
  dispatch(out.type, [&](auto out_tag) {
    using Out = decltype(out_tag);
    dispatch(type, [&](auto in_tag) {
      using In = decltype(in_tag);
      const Placement placement = place(geometry, length);
      Out* row_data = static_cast<Out*>(out.data) + row * out.width;
      pad_row(row_data, geometry, placement, static_cast<Out>(pad_value));
      copy_checked(row_data + placement.dst_begin,
                   static_cast<const In*>(values) + placement.src_begin, placement.count,
                   out.type, field, row);
    });
  });
}

void write_row_padding(const Column& out, const Geometry& geometry, std::int64_t row,
                       std::int64_t length, std::int64_t pad_value) {
  check_pad_value(pad_value, out.type, "pad");
  dispatch(out.type, [&](auto out_tag) {
    using Out = decltype(out_tag);
    pad_row(static_cast<Out*>(out.data) + row * out.width, geometry, place(geometry, length),
            static_cast<Out>(pad_value));
  });
}

void write_mask(const Column& out, const Geometry& geometry, const std::int64_t* lengths,
                std::int64_t row_begin, std::int64_t row_end) {
  dispatch(out.type, [&](auto out_tag) {
    using Out = decltype(out_tag);
    auto* base = static_cast<Out*>(out.data);
    for (std::int64_t row = row_begin; row < row_end; ++row) {
      const Placement placement = place(geometry, lengths[row]);
      Out* row_data = base + row * out.width;
      pad_row(row_data, geometry, placement, Out{0});
      fill(row_data + placement.dst_begin, placement.count, Out{1});
    }
  });
}

}  // namespace fastpad
