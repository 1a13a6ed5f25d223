// Python-to-core conversion for the bindings (csrc/python/*.cpp): Python objects in, the core's
// views (pack.hpp) out, every failure a fastpad::Error naming the field and the row.
//
// Everything here runs holding the GIL. It borrows 1-D integer inputs and [rows, width] outputs
// through the buffer protocol (inputs may be copied by numpy when they are not contiguous; outputs
// never are), parses the field specs the Python layer hands over, measures list rows, and unboxes
// Python ints. The unboxing is the hot path of a padded list batch: compact_int, unbox and
// write_list_tokens are inline here so that every loop over tokens inlines them.
#pragma once

// Python.h first, as the C API asks (it sets feature macros the standard headers read).
#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>  // PyLongObject's digits; Python.h includes it from 3.11 on
#endif
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "pack.hpp"

namespace fastpad::python {

namespace py = pybind11;

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}

inline std::string type_name(PyObject* object) { return Py_TYPE(object)->tp_name; }

// RAII owner of a Py_buffer.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept : view_(other.view_), held_(other.held_) { other.held_ = false; }
  ~Buffer() {
    if (held_) PyBuffer_Release(&view_);
  }
  // Returns false (with no Python error set) when `object` does not export a buffer.
  bool acquire(PyObject* object, int flags) {
    if (!PyObject_CheckBuffer(object)) return false;
    if (PyObject_GetBuffer(object, &view_, flags) != 0) throw py::error_already_set();
    held_ = true;
    return true;
  }
  const Py_buffer& view() const { return view_; }
  void release() {
    if (held_) PyBuffer_Release(&view_);
    held_ = false;
  }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

// Maps a buffer-protocol format (native byte order only) to a Scalar.
bool scalar_from_format(const char* format, Py_ssize_t itemsize, Scalar* type);

// Whether a buffer-protocol format names the byte order this machine does not use ('>' or '!'
// on a little-endian one).
bool byte_swapped(const char* format);

// A 1-D, C-contiguous integer buffer borrowed from a Python object.
struct IntVector {
  Buffer buffer;
  const void* data = nullptr;
  Scalar type = Scalar::Int64;
  std::int64_t size = 0;
};

// Borrows a 1-D integer buffer from `object`; `role` names it in errors ("row 3 of 'input_ids'",
// "values of 'input_ids'"). Returns false when the object exports no buffer at all, a strided
// one or one in the other byte order: callers then read it through as_array_or_none, which makes
// a contiguous, native copy of that input row (inputs may be copied; outputs never are).
bool borrow_int_vector(PyObject* object, const std::string& role, IntVector* vector,
                       bool allow_bool = false);

// Rows that are not lists, tuples or contiguous native buffers but convert through numpy (torch
// tensors, array-likes with __array__, strided or byte-swapped arrays) are converted once with
// numpy.ascontiguousarray (and to the native byte order). None for anything else.
py::object as_array_or_none(PyObject* row);

// "row 3 of 'input_ids'".
std::string row_role(const std::string& field, Py_ssize_t row);

// TypeError for a row that is neither a list/tuple nor a 1-D integer array.
[[noreturn]] void bad_row(const std::string& field, Py_ssize_t row, PyObject* object);

// Borrows row `row` of `field` that is not a list or tuple: its own contiguous buffer, else
// numpy's contiguous copy of it, which is stored in *converted (left empty when no copy was made)
// and must outlive *vector's use. Any other object is bad_row.
void borrow_array_row(PyObject* object, const std::string& field, Py_ssize_t row, IntVector* vector,
                      py::object* converted);

// The value of an exact Python int small enough to be read straight from its digits (|value| <
// 2**60 before 3.12, < 2**30 from 3.12 on); false for anything else, which takes the general path.
// Reads the object only: no Python code runs and no error is set.
inline bool compact_int(PyObject* item, std::int64_t* value) {
  if (!PyLong_CheckExact(item)) return false;  // bools, subclasses, numpy scalars: slow path
#if PY_VERSION_HEX >= 0x030C0000
  auto* number = reinterpret_cast<PyLongObject*>(item);
  if (!PyUnstable_Long_IsCompact(number)) return false;
  *value = static_cast<std::int64_t>(PyUnstable_Long_CompactValue(number));
  return true;
#else
  // Before 3.12 an int is a sign-and-magnitude array of PyLong_SHIFT-bit digits whose count is
  // |Py_SIZE|, its sign the sign of the value; two digits always fit an int64.
  static_assert(2 * PyLong_SHIFT < 63, "two digits must fit an int64");
  const digit* digits = reinterpret_cast<PyLongObject*>(item)->ob_digit;
  const Py_ssize_t size = Py_SIZE(item);
  // One positive digit first: the token ids of every vocabulary (below 2**30) take this branch.
  if (size == 1) {
    *value = static_cast<std::int64_t>(digits[0]);
    return true;
  }
  switch (size) {
    case 0: *value = 0; return true;
    case -1: *value = -static_cast<std::int64_t>(digits[0]); return true;
    case 2:
      *value = static_cast<std::int64_t>(digits[0]) |
               (static_cast<std::int64_t>(digits[1]) << PyLong_SHIFT);
      return true;
    case -2:
      *value = -(static_cast<std::int64_t>(digits[0]) |
                 (static_cast<std::int64_t>(digits[1]) << PyLong_SHIFT));
      return true;
    default: return false;
  }
#endif
}

// Unboxes one token; bools, floats, None and strings are rejected (a bool is an int in Python but
// never a token id). Tokens that are not compact exact ints may run Python code (__index__).
std::int64_t unbox_general(PyObject* item, const std::string& field, Py_ssize_t row,
                           Py_ssize_t column);

inline std::int64_t unbox(PyObject* item, const std::string& field, Py_ssize_t row,
                          Py_ssize_t column) {
  std::int64_t value;
  if (compact_int(item, &value)) return value;
  return unbox_general(item, field, row, column);
}

// One field of a batch as the Python layer hands it over.
struct Field {
  std::string name;
  py::object rows;    // list/tuple of rows (kind == 0)
  IntVector values;   // ragged values (kind == 1)
  IntVector offsets;  // ragged offsets (kind == 1)
  bool ragged = false;
  RaggedView view{};
};

// Parses (name, 0, rows) or (name, 1, values, offsets) into *field; the ragged buffers stay
// borrowed (and the view valid) while *field lives.
void parse_field(const py::handle& spec, Field* field);

inline Py_ssize_t field_rows(const Field& field) {
  return field.ragged ? static_cast<Py_ssize_t>(field.view.rows)
                      : PySequence_Fast_GET_SIZE(field.rows.ptr());
}

// Length of every row of a list field; array rows are validated here.
void list_lengths(const Field& field, std::int64_t* lengths);

// Python ints of any size. pybind11's int64 caster turns an int beyond int64 into a TypeError
// naming no argument; this saturates instead (setting *overflow) and the caller decides.
std::int64_t saturating_int(const py::int_& value, bool* overflow);

// The arguments pack and pack_ragged share. keep_limit: a keep limit beyond int64 (truncation
// to a huge max_length) keeps every token (-1). check_counts: fields, outputs and pad values
// come one per field. borrow_lengths: the 1-D int64 row lengths measure() returned, borrowed.
std::int64_t keep_limit(const py::int_& value);
void check_counts(const py::list& specs, const py::list& outputs, const py::sequence& pad_values);
const std::int64_t* borrow_lengths(PyObject* array, IntVector* vector);

// A writeable, C-contiguous [rows, width] output buffer of an integer or bool type, borrowed
// into *buffer; never converted or copied.
Column borrow_output(PyObject* object, Buffer* buffer, const std::string& field, Py_ssize_t rows,
                     std::int64_t width);

// A writeable, C-contiguous 1-D output of exactly `size` elements (any integer or bool type);
// never converted. `role` names it in errors ("'input_ids'", "the row layout").
std::pair<char*, Scalar> borrow_flat_output(PyObject* object, Buffer* buffer,
                                            const std::string& role, std::int64_t size);

// A writeable, C-contiguous 1-D int64 output of exactly `size` elements; never converted.
// `operation` prefixes the errors ("fastpad.flatten").
std::int64_t* borrow_int64_output(PyObject* object, Buffer* buffer, const char* operation,
                                  std::int64_t size);

// Unboxes the kept tokens [src_begin, src_begin + count) of the list or tuple `object`, row `row`
// of `field` measured at `length` tokens, handing each to store(i, value), which returns false
// when the value does not fit the output: then Error(Overflow) names the row. A token that is not
// a compact int may run Python code (__index__) that resizes the row: after such a token, and
// before the next read, the row's length is re-checked (Error(Value)) and its item array re-read.
// Compact ints run no Python code, so the item array stays valid across them and the loop over
// them is a type check, a digit read and a store. The caller holds a strong reference to `object`.
template <class Store>
inline void unbox_tokens(PyObject* object, const Field& field, Py_ssize_t row, std::int64_t length,
                         std::int64_t src_begin, std::int64_t count, Scalar type, Store&& store) {
  auto changed = [&]() {
    fail(ErrorKind::Value,
         "fastpad: " + row_role(field.name, row) + " changed length while it was being packed");
  };
  if (PySequence_Fast_GET_SIZE(object) != length) changed();
  PyObject** items = PySequence_Fast_ITEMS(object) + src_begin;
  auto overflow = [&](std::int64_t value) {
    fail(ErrorKind::Overflow, overflow_message(field.name.c_str(), row, value, type));
  };
  for (std::int64_t i = 0; i < count; ++i) {
    std::int64_t value;
    if (compact_int(items[i], &value)) {
      if (!store(i, value)) overflow(value);
      continue;
    }
    value = unbox_general(items[i], field.name, row, src_begin + i);
    if (!store(i, value)) overflow(value);
    if (i + 1 < count) {
      if (PySequence_Fast_GET_SIZE(object) != length) changed();
      items = PySequence_Fast_ITEMS(object) + src_begin;
    }
  }
}

// unbox_tokens into `destination`, `count` elements of `type`, range-checked.
inline void write_list_tokens(PyObject* object, const Field& field, Py_ssize_t row,
                              std::int64_t length, std::int64_t src_begin, std::int64_t count,
                              char* destination, Scalar type) {
  switch (type) {
    case Scalar::Int64: {
      auto* out = reinterpret_cast<std::int64_t*>(destination);
      unbox_tokens(object, field, row, length, src_begin, count, type,
                   [out](std::int64_t i, std::int64_t value) {
                     out[i] = value;
                     return true;
                   });
      break;
    }
    case Scalar::Int32: {
      auto* out = reinterpret_cast<std::int32_t*>(destination);
      unbox_tokens(object, field, row, length, src_begin, count, type,
                   [out](std::int64_t i, std::int64_t value) {
                     if (value < std::numeric_limits<std::int32_t>::min() ||
                         value > std::numeric_limits<std::int32_t>::max()) {
                       return false;
                     }
                     out[i] = static_cast<std::int32_t>(value);
                     return true;
                   });
      break;
    }
    default: {
      const Column window{destination, type, 1, count};
      unbox_tokens(object, field, row, length, src_begin, count, type,
                   [&window](std::int64_t i, std::int64_t value) {
                     return store_value(window, 0, i, value);
                   });
    }
  }
}

}  // namespace fastpad::python
