// Python bindings of the fastpad core: the only file that sees Python objects.
//
// Holding the GIL, it measures and validates the inputs (Python lists of ints, 1-D integer
// buffers, flat values + offsets) and unboxes Python ints straight into the caller's output
// buffers. Work over buffers alone (ragged sources, array rows, masks) runs with the GIL released.
// fastpad::Error and the checks here become ValueError / TypeError / OverflowError / MemoryError
// naming the field and the row.
#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>  // PyLongObject's digits; Python.h includes it from 3.11 on
#endif
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <system_error>
#include <thread>
#include <vector>

#include "buffer_cache.hpp"
#include "message.hpp"
#include "pack.hpp"
#include "plan.hpp"
#include "ragged.hpp"

namespace py = pybind11;
using fastpad::Error;
using fastpad::ErrorKind;
using fastpad::Scalar;

namespace {

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string type_name(PyObject* object) { return Py_TYPE(object)->tp_name; }

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
bool scalar_from_format(const char* format, Py_ssize_t itemsize, Scalar* type) {
  if (format == nullptr) format = "B";
  if (*format == '@' || *format == '=' || *format == '<') ++format;
  if (format[0] == '\0' || format[1] != '\0') return false;
  const char code = format[0];
  if (code == '?') {
    *type = Scalar::Bool;
    return itemsize == 1;
  }
  const bool is_signed = code == 'b' || code == 'h' || code == 'i' || code == 'l' || code == 'q' || code == 'n';
  const bool is_unsigned = code == 'B' || code == 'H' || code == 'I' || code == 'L' || code == 'Q' || code == 'N';
  if (!is_signed && !is_unsigned) return false;
  switch (itemsize) {
    case 1: *type = is_signed ? Scalar::Int8 : Scalar::UInt8; return true;
    case 2: *type = is_signed ? Scalar::Int16 : Scalar::UInt16; return true;
    case 4: *type = is_signed ? Scalar::Int32 : Scalar::UInt32; return true;
    case 8: *type = is_signed ? Scalar::Int64 : Scalar::UInt64; return true;
    default: return false;
  }
}

// A 1-D, C-contiguous integer buffer borrowed from a Python object.
struct IntVector {
  Buffer buffer;
  const void* data = nullptr;
  Scalar type = Scalar::Int64;
  std::int64_t size = 0;
};

// Borrows a 1-D integer buffer from `object`; `role` names it in errors ("row 3 of 'input_ids'",
// "values of 'input_ids'"). Returns false when the object exports no buffer at all, or a strided
// one: callers then read it through as_array_or_none, which makes a contiguous copy of that input
// row (inputs may be copied; outputs never are).
bool borrow_int_vector(PyObject* object, const std::string& role, IntVector* vector,
                       bool allow_bool = false) {
  if (!vector->buffer.acquire(object, PyBUF_RECORDS_RO)) return false;
  const Py_buffer& view = vector->buffer.view();
  if (view.ndim != 1) {
    fastpad::Message message;
    message << "fastpad: " << role << " is a " << view.ndim
            << "-D array; expected a 1-D array of token ids (nesting too deep)";
    fail(ErrorKind::Value, message.str());
  }
  if (!scalar_from_format(view.format, view.itemsize, &vector->type) ||
      (vector->type == Scalar::Bool && !allow_bool)) {
    fastpad::Message message;
    message << "fastpad: " << role << " has element format '" << (view.format ? view.format : "B")
            << "'; expected an integer array (bool and float arrays are not token ids)";
    fail(ErrorKind::Type, message.str());
  }
  if (view.strides != nullptr && view.shape[0] > 1 && view.strides[0] != view.itemsize) {
    vector->buffer.release();
    return false;
  }
  vector->data = view.buf;
  vector->size = view.shape[0];
  return true;
}

// Rows that are not lists, tuples or contiguous buffers but convert through numpy (torch tensors,
// array-likes with __array__, strided arrays) are converted once with numpy.ascontiguousarray.
py::object as_array_or_none(PyObject* row) {
  if (PyObject_CheckBuffer(row) || PyObject_HasAttrString(row, "__array__") ||
      PyObject_HasAttrString(row, "__array_interface__")) {
    return py::module_::import("numpy").attr("ascontiguousarray")(py::handle(row));
  }
  return py::none();
}

std::string row_role(const std::string& field, Py_ssize_t row) {
  return "row " + std::to_string(row) + " of '" + field + "'";
}

[[noreturn]] void bad_row(const std::string& field, Py_ssize_t row, PyObject* object) {
  fastpad::Message message;
  message << "fastpad: " << row_role(field, row) << " is a " << type_name(object)
          << "; expected a list/tuple of ints or a 1-D integer array";
  fail(ErrorKind::Type, message.str());
}

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
  switch (Py_SIZE(item)) {
    case 0: *value = 0; return true;
    case 1: *value = static_cast<std::int64_t>(digits[0]); return true;
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

std::int64_t unbox_general(PyObject* item, const std::string& field, Py_ssize_t row,
                           Py_ssize_t column) {
  if (PyLong_CheckExact(item) || (PyLong_Check(item) && !PyBool_Check(item))) {
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
    if (overflow != 0) {
      fastpad::Message message;
      message << "fastpad: " << row_role(field, row) << ": value at position " << column
              << " does not fit int64";
      fail(ErrorKind::Overflow, message.str());
    }
    return value;
  }
  const bool is_sequence = PyList_Check(item) || PyTuple_Check(item);
  if (!PyBool_Check(item) && !is_sequence && !PyFloat_Check(item) && PyIndex_Check(item)) {
    // numpy / torch integer scalars; `held` keeps the token alive while its __index__ runs.
    py::object held = py::reinterpret_borrow<py::object>(item);
    py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(item));
    if (index) return unbox(index.ptr(), field, row, column);
    // A TypeError from __index__ (numpy arrays of size != 1, numpy bools) gets the message
    // below, naming the row; anything else the token raised propagates as it is.
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw py::error_already_set();
    PyErr_Clear();
  }
  fastpad::Message message;
  message << "fastpad: " << row_role(field, row) << ": token at position " << column << " is ";
  if (is_sequence || PyObject_CheckBuffer(item)) {
    message << "a " << type_name(item) << "; rows must be flat sequences of ints (nesting too deep)";
  } else {
    message << "a " << type_name(item) << " (" << py::repr(item).cast<std::string>()
            << "); token ids must be ints";
  }
  fail(ErrorKind::Type, message.str());
}

// One field of a batch as the Python layer hands it over.
struct Field {
  std::string name;
  py::object rows;     // list/tuple of rows (kind == 0)
  IntVector values;    // ragged values (kind == 1)
  IntVector offsets;   // ragged offsets (kind == 1)
  bool ragged = false;
  fastpad::RaggedView view{};
};

void parse_field(const py::handle& spec, Field* field) {
  // The spec is checked before any cast: a failed pybind11 cast would surface as RuntimeError.
  const Py_ssize_t size = PyTuple_Check(spec.ptr()) ? PyTuple_GET_SIZE(spec.ptr()) : -1;
  if (size < 3 || size > 4 || !PyUnicode_Check(PyTuple_GET_ITEM(spec.ptr(), 0)) ||
      !PyLong_CheckExact(PyTuple_GET_ITEM(spec.ptr(), 1))) {
    fail(ErrorKind::Type, "fastpad: a field spec must be (name, 0, rows) or (name, 1, values, "
                          "offsets), got a " + type_name(spec.ptr()));
  }
  auto item = py::reinterpret_borrow<py::tuple>(spec);
  field->name = item[0].cast<std::string>();
  const long kind = PyLong_AsLong(item[1].ptr());
  if (kind != (size == 3 ? 0 : 1)) {
    if (PyErr_Occurred()) PyErr_Clear();
    fail(ErrorKind::Value, "fastpad: field '" + field->name + "' has spec kind " +
                               py::repr(item[1]).cast<std::string>() +
                               "; expected (name, 0, rows) or (name, 1, values, offsets)");
  }
  if (kind == 0) {
    field->rows = py::reinterpret_borrow<py::object>(item[2]);
    if (!PyList_Check(field->rows.ptr()) && !PyTuple_Check(field->rows.ptr())) {
      fail(ErrorKind::Type, "fastpad: the rows of '" + field->name + "' must be a list or tuple");
    }
    return;
  }
  field->ragged = true;
  if (!borrow_int_vector(item[2].ptr(), "values of '" + field->name + "'", &field->values)) {
    fail(ErrorKind::Type, "fastpad: values of '" + field->name + "' must be a 1-D integer array");
  }
  if (!borrow_int_vector(item[3].ptr(), "offsets of '" + field->name + "'", &field->offsets)) {
    fail(ErrorKind::Type, "fastpad: offsets of '" + field->name + "' must be a 1-D integer array");
  }
  if (field->offsets.size < 1) {
    fail(ErrorKind::Value, "fastpad: offsets of '" + field->name + "' must hold at least one entry (0)");
  }
  if (field->offsets.type != Scalar::Int32 && field->offsets.type != Scalar::Int64 &&
      field->offsets.type != Scalar::UInt32 && field->offsets.type != Scalar::UInt64) {
    fail(ErrorKind::Type, "fastpad: offsets of '" + field->name + "' must be int32 or int64");
  }
  field->view = fastpad::RaggedView{field->values.data, field->values.type, field->values.size,
                                    field->offsets.data, field->offsets.type,
                                    field->offsets.size - 1};
}

Py_ssize_t field_rows(const Field& field) {
  return field.ragged ? static_cast<Py_ssize_t>(field.view.rows) : PySequence_Fast_GET_SIZE(field.rows.ptr());
}

// Length of every row of a list field; array rows are validated here.
void list_lengths(const Field& field, std::int64_t* lengths) {
  PyObject* rows = field.rows.ptr();
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
  PyObject** items = PySequence_Fast_ITEMS(rows);
  for (Py_ssize_t row = 0; row < count; ++row) {
    PyObject* object = items[row];
    if (PyList_Check(object) || PyTuple_Check(object)) {
      lengths[row] = PySequence_Fast_GET_SIZE(object);
      continue;
    }
    IntVector vector;
    if (borrow_int_vector(object, row_role(field.name, row), &vector)) {
      lengths[row] = vector.size;
      continue;
    }
    py::object array = as_array_or_none(object);
    if (array.is_none() || !borrow_int_vector(array.ptr(), row_role(field.name, row), &vector)) {
      bad_row(field.name, row, object);
    }
    lengths[row] = vector.size;
  }
}

fastpad::Padding padding_from(int code) {
  switch (code) {
    case 0: return fastpad::Padding::Longest;
    case 1: return fastpad::Padding::MaxLength;
    case 2: return fastpad::Padding::DoNotPad;
    default: fail(ErrorKind::Value, "fastpad: unknown padding strategy");
  }
}

// measure(fields, padding, max_length, truncate, multiple_of) -> (lengths, width)
// Row lengths of the batch (every field must agree row by row) and the output width.
// Python ints of any size. pybind11's int64 caster turns an int beyond int64 into a TypeError
// naming no argument; this saturates instead (setting *overflow) and the caller decides.
std::int64_t saturating_int(const py::int_& value, bool* overflow) {
  int sign = 0;
  const long long result = PyLong_AsLongLongAndOverflow(value.ptr(), &sign);
  if (result == -1 && PyErr_Occurred()) throw py::error_already_set();
  *overflow = sign != 0;
  if (sign > 0) return std::numeric_limits<std::int64_t>::max();
  if (sign < 0) return std::numeric_limits<std::int64_t>::min();
  return result;
}

py::tuple measure(const py::list& specs, int padding, const py::int_& max_length_arg,
                  bool truncate, const py::int_& multiple_of_arg) {
  // A max_length beyond int64 limits nothing a buffer can hold: it saturates (padding to it is a
  // MemoryError below). A multiple beyond int64 leaves width 0 alone and is a MemoryError else.
  bool max_length_overflow = false;
  bool multiple_overflow = false;
  const std::int64_t max_length = saturating_int(max_length_arg, &max_length_overflow);
  std::int64_t multiple_of = saturating_int(multiple_of_arg, &multiple_overflow);
  const bool huge_multiple = multiple_overflow && multiple_of > 0;
  if (huge_multiple) multiple_of = 0;
  if (specs.empty()) fail(ErrorKind::Value, "fastpad: no ragged field to pad");
  std::vector<std::unique_ptr<Field>> fields;
  for (const auto& spec : specs) {
    fields.push_back(std::make_unique<Field>());
    parse_field(spec, fields.back().get());
  }
  const Py_ssize_t rows = field_rows(*fields[0]);
  py::array_t<std::int64_t> lengths(rows);
  std::int64_t* first = lengths.mutable_data();
  std::vector<std::int64_t> other;
  for (std::size_t index = 0; index < fields.size(); ++index) {
    const Field& field = *fields[index];
    if (field_rows(field) != rows) {
      fastpad::Message message;
      message << "fastpad: field '" << field.name << "' has " << field_rows(field)
              << " rows but '" << fields[0]->name << "' has " << rows;
      fail(ErrorKind::Value, message.str());
    }
    std::int64_t* target = first;
    if (index > 0) {
      other.assign(static_cast<std::size_t>(rows), 0);
      target = other.data();
    }
    if (field.ragged) {
      fastpad::ragged_lengths(field.view, target, field.name.c_str());
    } else {
      list_lengths(field, target);
    }
    if (index > 0) {
      for (Py_ssize_t row = 0; row < rows; ++row) {
        if (other[row] != first[row]) {
          fastpad::Message message;
          message << "fastpad: row " << row << " has " << first[row] << " tokens in '"
                  << fields[0]->name << "' but " << other[row] << " in '" << field.name
                  << "'; every field of a row must have the same length";
          fail(ErrorKind::Value, message.str());
        }
      }
    }
  }
  fastpad::PadOptions options;
  options.padding = padding_from(padding);
  options.max_length = max_length;
  options.truncate = truncate;
  options.multiple_of = multiple_of;
  const std::int64_t width = fastpad::output_width(first, rows, options);
  if (huge_multiple && width > 0 && options.padding != fastpad::Padding::DoNotPad) {
    fastpad::Message message;
    message << "fastpad: rounding the width " << width << " up to a multiple of "
            << py::str(multiple_of_arg).cast<std::string>()
            << " exceeds int64; a batch that wide does not fit in memory";
    fail(ErrorKind::Memory, message.str());
  }
  return py::make_tuple(lengths, width);
}

// A writeable, C-contiguous [rows, width] output buffer; never converted or copied.
fastpad::Column borrow_output(PyObject* object, Buffer* buffer, const std::string& field,
                              Py_ssize_t rows, std::int64_t width) {
  if (!buffer->acquire(object, PyBUF_RECORDS)) {
    fail(ErrorKind::Type, "fastpad: the output for '" + field + "' must be a writeable array");
  }
  const Py_buffer& view = buffer->view();
  Scalar type;
  if (!scalar_from_format(view.format, view.itemsize, &type)) {
    fail(ErrorKind::Type, "fastpad: the output for '" + field + "' must have an integer or bool dtype");
  }
  if (view.ndim != 2 || view.shape[0] != rows || view.shape[1] != width) {
    fastpad::Message message;
    message << "fastpad: the output for '" << field << "' must have shape [" << rows << ", "
            << width << "]";
    fail(ErrorKind::Value, message.str());
  }
  if (!PyBuffer_IsContiguous(&view, 'C')) {
    fail(ErrorKind::Value, "fastpad: the output for '" + field + "' must be C-contiguous");
  }
  return fastpad::Column{view.buf, type, rows, width};
}

// Buffer-backed work done with the GIL released.
struct ArrayRow {
  std::size_t column;  // index into outputs
  std::int64_t row;
  const void* data;
  Scalar type;
  std::int64_t length;
  std::int64_t pad_value;
  const char* field;
};

void write_list_field(const Field& field, const fastpad::Column& out,
                      const fastpad::Geometry& geometry, std::int64_t pad_value,
                      std::size_t column, const std::int64_t* row_lengths,
                      std::vector<IntVector>* borrowed, std::vector<ArrayRow>* array_rows) {
  if (!fastpad::value_fits(pad_value, out.type)) {
    fastpad::Message message;
    message << "fastpad: pad value " << pad_value << " for '" << field.name << "' does not fit "
            << fastpad::scalar_name(out.type);
    fail(ErrorKind::Overflow, message.str());
  }
  PyObject* rows = field.rows.ptr();
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
  const std::int64_t lo = fastpad::scalar_min(out.type);
  const std::int64_t hi = fastpad::scalar_max(out.type);
  // Unboxing a non-int token runs its __index__, arbitrary Python code that may resize the lists
  // being read: every length is checked against the measured one before writing, item arrays are
  // re-read after each token, and the row is held by a strong reference.
  auto changed = [&](Py_ssize_t row) {
    fail(ErrorKind::Value, "fastpad: " + row_role(field.name, row) +
                               " changed length while it was being packed");
  };
  for (Py_ssize_t row = 0; row < count; ++row) {
    if (PySequence_Fast_GET_SIZE(rows) != count) changed(row);
    py::object held = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(rows)[row]);
    PyObject* object = held.ptr();
    if (PyList_Check(object) || PyTuple_Check(object)) {
      const Py_ssize_t length = PySequence_Fast_GET_SIZE(object);
      if (length != row_lengths[row]) changed(row);
      const fastpad::Placement placement = fastpad::place(geometry, length);
      fastpad::write_row_padding(out, geometry, row, length, pad_value);
      // Compact exact ints run no Python code, so the row's item array stays valid across them;
      // after any other token the row's length is re-checked and its items re-read before the
      // next read (as the general `next` below does before every read).
      PyObject** items = PySequence_Fast_ITEMS(object) + placement.src_begin;
      bool reread = false;
      auto next = [&](std::int64_t i) {
        if (reread) {
          if (PySequence_Fast_GET_SIZE(object) != length) changed(row);
          items = PySequence_Fast_ITEMS(object) + placement.src_begin;
          reread = false;
        }
        std::int64_t value;
        if (compact_int(items[i], &value)) return value;
        reread = true;
        return unbox_general(items[i], field.name, row, placement.src_begin + i);
      };
      std::int64_t bad_value = 0;
      std::int64_t written = placement.count;
      const std::int64_t start = row * out.width + placement.dst_begin;
      switch (out.type) {
        case Scalar::Int64:
          written = fastpad::write_values(static_cast<std::int64_t*>(out.data) + start,
                                          placement.count, lo, hi, next, &bad_value);
          break;
        case Scalar::Int32:
          written = fastpad::write_values(static_cast<std::int32_t*>(out.data) + start,
                                          placement.count, lo, hi, next, &bad_value);
          break;
        default:
          for (std::int64_t i = 0; i < placement.count; ++i) {
            const std::int64_t value = next(i);
            if (!fastpad::store_value(out, row, placement.dst_begin + i, value)) {
              bad_value = value;
              written = i;
              break;
            }
          }
      }
      if (written != placement.count) {
        fail(ErrorKind::Overflow,
             fastpad::overflow_message(field.name.c_str(), row, bad_value, out.type));
      }
      continue;
    }
    IntVector vector;
    py::object converted;
    if (!borrow_int_vector(object, row_role(field.name, row), &vector)) {
      converted = as_array_or_none(object);
      if (converted.is_none() ||
          !borrow_int_vector(converted.ptr(), row_role(field.name, row), &vector)) {
        bad_row(field.name, row, object);
      }
    }
    if (vector.size != row_lengths[row]) changed(row);
    if (converted) {
      // Converted rows are written now: their temporary array dies with this iteration.
      fastpad::write_row(out, geometry, row, vector.data, vector.type, vector.size, pad_value,
                         field.name.c_str());
      continue;
    }
    array_rows->push_back(ArrayRow{column, row, vector.data, vector.type, vector.size, pad_value,
                                   field.name.c_str()});
    borrowed->push_back(std::move(vector));
  }
}

// Runs fn(row_begin, row_end) over [0, rows) on up to `threads` threads (the calling one
// included). Exceptions from workers are rethrown on the calling thread, first one wins.
template <class Fn>
void parallel_rows(std::int64_t rows, int threads, Fn&& fn) {
  if (threads <= 1 || rows < 2) {
    fn(std::int64_t{0}, rows);
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
      fn(rows * chunk / chunks, rows * (chunk + 1) / chunks);
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

// pack(fields, outputs, pad_values, lengths, mask, width, keep_limit, pad_left, truncate_left,
//      threads): writes every field and the mask into the caller's buffers.
void pack(const py::list& specs, const py::list& outputs, const py::sequence& pad_value_list,
          const py::array_t<std::int64_t, 0>& lengths_array, const py::object& mask,
          std::int64_t width, const py::int_& keep_limit_arg, bool pad_left, bool truncate_left,
          int threads) {
  // A keep limit beyond int64 (truncation to a huge max_length) keeps every token.
  bool keep_overflow = false;
  std::int64_t keep_limit = saturating_int(keep_limit_arg, &keep_overflow);
  if (keep_overflow && keep_limit < 0) keep_limit = -1;
  const std::size_t count = specs.size();
  if (outputs.size() != count || pad_value_list.size() != count) {
    fail(ErrorKind::Value, "fastpad: fields, outputs and pad_values must have the same length");
  }
  // Pad values are Python ints of any size: one beyond int64 is an OverflowError naming it, not
  // a TypeError from overload resolution.
  std::vector<std::int64_t> pad_values(count);
  for (std::size_t index = 0; index < count; ++index) {
    py::object value = pad_value_list[index];
    if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
      fail(ErrorKind::Type, "fastpad: pad values must be ints, got a " + type_name(value.ptr()));
    }
    bool overflow = false;
    pad_values[index] = saturating_int(py::reinterpret_borrow<py::int_>(value), &overflow);
    if (overflow) {
      fail(ErrorKind::Overflow, "fastpad: pad value " + py::str(value).cast<std::string>() +
                                    " does not fit int64");
    }
  }
  IntVector lengths;
  if (!borrow_int_vector(lengths_array.ptr(), "lengths", &lengths) || lengths.type != Scalar::Int64) {
    fail(ErrorKind::Type, "fastpad: lengths must be a 1-D int64 array");
  }
  const auto* row_lengths = static_cast<const std::int64_t*>(lengths.data);
  const Py_ssize_t rows = static_cast<Py_ssize_t>(lengths.size);
  fastpad::Geometry geometry{width, keep_limit, pad_left, truncate_left};
  // Placement assumes every kept row fits the width; measure() guarantees it, re-checked here
  // because these buffers come from the caller.
  for (Py_ssize_t row = 0; row < rows; ++row) {
    if (row_lengths[row] < 0 || fastpad::place(geometry, row_lengths[row]).count > width) {
      fail(ErrorKind::Value, "fastpad: row " + std::to_string(row) + " does not fit the width");
    }
  }

  std::vector<std::unique_ptr<Field>> fields;
  std::vector<Buffer> output_buffers(count);
  std::vector<fastpad::Column> columns;
  for (std::size_t index = 0; index < count; ++index) {
    fields.push_back(std::make_unique<Field>());
    parse_field(specs[index], fields.back().get());
    if (field_rows(*fields.back()) != rows) {
      fail(ErrorKind::Value, "fastpad: field '" + fields.back()->name + "' does not match lengths");
    }
    columns.push_back(borrow_output(outputs[index].ptr(), &output_buffers[index],
                                    fields.back()->name, rows, width));
  }
  Buffer mask_buffer;
  fastpad::Column mask_column{nullptr, Scalar::Int64, 0, 0};
  if (!mask.is_none()) {
    mask_column = borrow_output(mask.ptr(), &mask_buffer, "attention_mask", rows, width);
  }

  // Python lists need the GIL: unbox them now. Array rows are only borrowed here.
  std::vector<IntVector> borrowed;
  std::vector<ArrayRow> array_rows;
  for (std::size_t index = 0; index < count; ++index) {
    const Field& field = *fields[index];
    if (field.ragged) {
      // Offsets were validated by measure() on this same object; re-validate cheaply since
      // reading past the values would be memory-unsafe.
      std::vector<std::int64_t> check(static_cast<std::size_t>(rows));
      fastpad::ragged_lengths(field.view, check.data(), field.name.c_str());
      for (Py_ssize_t row = 0; row < rows; ++row) {
        if (check[row] != row_lengths[row]) {
          fail(ErrorKind::Value, "fastpad: offsets of '" + field.name + "' do not match lengths");
        }
      }
      continue;
    }
    write_list_field(field, columns[index], geometry, pad_values[index], index, row_lengths,
                     &borrowed, &array_rows);
  }
  for (const ArrayRow& row : array_rows) {
    if (row.length != row_lengths[row.row]) {
      fail(ErrorKind::Value, "fastpad: row " + std::to_string(row.row) + " changed length");
    }
  }

  // Safe without the GIL: everything below reads and writes only buffers that the objects held
  // by `fields`, `borrowed`, `output_buffers` and `mask_buffer` keep alive and exported until
  // this function returns; no Python object is touched. A small batch keeps it: releasing and
  // re-taking it costs more than the few microseconds of buffer work left.
  constexpr std::int64_t kKeepGilCells = 1 << 14;
  std::optional<py::gil_scoped_release> release;
  if (threads > 1 || static_cast<std::int64_t>(rows) * width >= kKeepGilCells) release.emplace();
  parallel_rows(rows, threads, [&](std::int64_t row_begin, std::int64_t row_end) {
    for (std::size_t index = 0; index < count; ++index) {
      if (fields[index]->ragged) {
        fastpad::write_ragged(columns[index], geometry, fields[index]->view, pad_values[index],
                              row_begin, row_end, fields[index]->name.c_str());
      }
    }
    if (mask_column.data != nullptr) {
      fastpad::write_mask(mask_column, geometry, row_lengths, row_begin, row_end);
    }
  });
  for (const ArrayRow& row : array_rows) {
    fastpad::write_row(columns[row.column], geometry, row.row, row.data, row.type, row.length,
                       row.pad_value, row.field);
  }
}


// ---------------------------------------------------------------------------------------------
// Beyond padding (issue 5): flat concatenation for fastpad.flatten / fastpad.windows and
// token-budget batch planning for fastpad.plan_batches. Core logic lives in plan.hpp.
// ---------------------------------------------------------------------------------------------

// A writeable, C-contiguous 1-D int64 output of exactly `size` elements; never converted.
std::int64_t* borrow_int64_output(PyObject* object, Buffer* buffer, const char* operation,
                                  std::int64_t size) {
  if (!buffer->acquire(object, PyBUF_RECORDS)) {
    fail(ErrorKind::Type, std::string(operation) + ": the output must be a writeable array");
  }
  const Py_buffer& view = buffer->view();
  Scalar type;
  if (!scalar_from_format(view.format, view.itemsize, &type) || type != Scalar::Int64) {
    fail(ErrorKind::Type, std::string(operation) + ": the output must be an int64 array");
  }
  if (view.ndim != 1 || view.shape[0] != size || !PyBuffer_IsContiguous(&view, 'C')) {
    fail(ErrorKind::Value, std::string(operation) + ": the output must be a contiguous 1-D array of " +
                               std::to_string(size) + " elements");
  }
  return static_cast<std::int64_t*>(view.buf);
}

// concat_rows(name, rows, out): writes the rows of a list field (lists/tuples of ints or 1-D
// integer arrays) back to back into the int64 array `out`, whose size must be the total length.
void concat_rows(const std::string& name, const py::object& rows, const py::object& out) {
  Field field;
  field.name = name;
  field.rows = rows;
  if (!PyList_Check(rows.ptr()) && !PyTuple_Check(rows.ptr())) {
    fail(ErrorKind::Type, "fastpad: the rows of '" + name + "' must be a list or tuple");
  }
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(rows.ptr());
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(count));
  list_lengths(field, lengths.data());
  std::int64_t total = 0;
  for (const std::int64_t length : lengths) total += length;
  Buffer out_buffer;
  std::int64_t* destination = borrow_int64_output(out.ptr(), &out_buffer, "fastpad.flatten", total);

  struct Pending {
    std::int64_t row;
    std::int64_t start;
    IntVector vector;
  };
  std::vector<Pending> pending;
  std::vector<py::object> converted;  // keeps converted rows alive until they are copied
  // Unboxing a non-int token runs its __index__, arbitrary Python code that may resize the lists
  // being read: sizes are re-checked before every read, item arrays re-read, rows held strongly.
  auto changed = [&](Py_ssize_t row) {
    fail(ErrorKind::Value, "fastpad: " + row_role(name, row) + " changed length while it was read");
  };
  std::int64_t cursor = 0;
  for (Py_ssize_t row = 0; row < count; ++row) {
    if (PySequence_Fast_GET_SIZE(rows.ptr()) != count) changed(row);
    py::object held = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(rows.ptr())[row]);
    PyObject* object = held.ptr();
    const std::int64_t length = lengths[static_cast<std::size_t>(row)];
    if (PyList_Check(object) || PyTuple_Check(object)) {
      for (std::int64_t column = 0; column < length; ++column) {
        if (PySequence_Fast_GET_SIZE(object) != length) changed(row);
        destination[cursor + column] =
            unbox(PySequence_Fast_ITEMS(object)[column], name, row, column);
      }
    } else {
      Pending item{row, cursor, IntVector{}};
      if (!borrow_int_vector(object, row_role(name, row), &item.vector)) {
        converted.push_back(as_array_or_none(object));
        if (converted.back().is_none() ||
            !borrow_int_vector(converted.back().ptr(), row_role(name, row), &item.vector)) {
          bad_row(name, row, object);
        }
      }
      if (item.vector.size != length) changed(row);
      pending.push_back(std::move(item));
    }
    cursor += length;
  }
  std::int64_t bad_row_index = -1;
  {
    // Safe without the GIL: only the buffers borrowed by `pending` (kept exported by their Buffer
    // and alive by `rows` / `converted`) and `out_buffer` are touched; no Python object is.
    py::gil_scoped_release release;
    for (const Pending& item : pending) {
      const std::int64_t copied = fastpad::copy_to_int64(item.vector.data, item.vector.type,
                                                         item.vector.size, destination + item.start);
      if (copied != item.vector.size) {
        bad_row_index = item.row;
        break;
      }
    }
  }
  if (bad_row_index >= 0) {
    fail(ErrorKind::Overflow, "fastpad: " + row_role(name, bad_row_index) +
                                  " holds a uint64 value that does not fit int64");
  }
}

// exact_int_lists(rows): whether `rows` (a list or tuple) holds only exact `list`s whose items are
// all exact Python `int`s: no subclass, no bool, no numpy scalar. transformers turns such rows into
// int64 tensors whatever else they hold, while other token types change its inferred dtype or
// fail; fastpad.patch_transformers takes its fast path only for rows that pass. Type checks only:
// no Python code runs, so the rows cannot change while they are read.
bool exact_int_lists(const py::object& rows) {
  PyObject* outer = rows.ptr();
  if (!PyList_Check(outer) && !PyTuple_Check(outer)) return false;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(outer);
  PyObject** items = PySequence_Fast_ITEMS(outer);
  for (Py_ssize_t row = 0; row < count; ++row) {
    PyObject* item = items[row];
    if (!PyList_CheckExact(item)) return false;
    const Py_ssize_t length = PyList_GET_SIZE(item);
    PyObject** tokens = PySequence_Fast_ITEMS(item);
    for (Py_ssize_t column = 0; column < length; ++column) {
      if (!PyLong_CheckExact(tokens[column])) return false;
    }
  }
  return true;
}

// plan_batches(lengths, max_tokens, max_batch_size, multiple_of, sort, shuffle, seed)
//   -> (order, bounds): batch b is order[bounds[b]:bounds[b + 1]].
py::tuple plan_batches(const py::object& lengths_object, std::int64_t max_tokens,
                       std::int64_t max_batch_size, std::int64_t multiple_of, bool sort,
                       bool shuffle, std::uint64_t seed) {
  IntVector lengths;
  if (!borrow_int_vector(lengths_object.ptr(), "lengths", &lengths) ||
      lengths.type != Scalar::Int64) {
    fail(ErrorKind::Type, "plan_batches: lengths must be a contiguous 1-D int64 array");
  }
  fastpad::PlanOptions options;
  options.max_tokens = max_tokens;
  options.max_batch_size = max_batch_size;
  options.multiple_of = multiple_of;
  options.sort = sort;
  options.shuffle = shuffle;
  options.seed = seed;
  py::array_t<std::int64_t> order(lengths.size);
  std::int64_t* order_data = order.mutable_data();
  const auto* length_data = static_cast<const std::int64_t*>(lengths.data);
  std::vector<std::int64_t> bounds;
  {
    // Safe without the GIL: reads the lengths buffer (exported until `lengths` dies at the end of
    // this function) and writes the freshly allocated `order`, which no other thread can see yet.
    py::gil_scoped_release release;
    bounds = fastpad::plan_batches(length_data, lengths.size, options, order_data);
  }
  py::array_t<std::int64_t> bounds_array(static_cast<py::ssize_t>(bounds.size()));
  std::copy(bounds.begin(), bounds.end(), bounds_array.mutable_data());
  return py::make_tuple(order, bounds_array);
}


// ---------------------------------------------------------------------------------------------
// Ragged transfer (issue 15): only the kept tokens of every row, plus one pad cell per row, for
// fastpad.Packer(ragged_transfer=...). The layout is ragged.hpp's; nothing padded is written.
// ---------------------------------------------------------------------------------------------

// A writeable, C-contiguous 1-D output of exactly `size` elements (any integer or bool type);
// never converted.
std::pair<char*, Scalar> borrow_flat_output(PyObject* object, Buffer* buffer,
                                            const std::string& role, std::int64_t size) {
  if (!buffer->acquire(object, PyBUF_RECORDS)) {
    fail(ErrorKind::Type, "fastpad: the output for " + role + " must be a writeable array");
  }
  const Py_buffer& view = buffer->view();
  Scalar type;
  if (!scalar_from_format(view.format, view.itemsize, &type)) {
    fail(ErrorKind::Type, "fastpad: the output for " + role + " must have an integer or bool dtype");
  }
  if (view.ndim != 1 || view.shape[0] != size || !PyBuffer_IsContiguous(&view, 'C')) {
    fail(ErrorKind::Value, "fastpad: the output for " + role + " must be a contiguous 1-D array of " +
                               std::to_string(size) + " elements");
  }
  return {static_cast<char*>(view.buf), type};
}

// Writes the kept tokens [src_begin, src_begin + count) of list row `row` to `destination`
// (elements of `type`), unboxing as write_list_field does: a token that is not a compact int may
// run Python code, so the row's length is re-checked and its items re-read after it.
void write_list_row_flat(PyObject* object, const Field& field, Py_ssize_t row, std::int64_t length,
                         std::int64_t src_begin, std::int64_t count, char* destination,
                         Scalar type) {
  auto changed = [&]() {
    fail(ErrorKind::Value, "fastpad: " + row_role(field.name, row) +
                               " changed length while it was being packed");
  };
  if (PySequence_Fast_GET_SIZE(object) != length) changed();
  PyObject** items = PySequence_Fast_ITEMS(object) + src_begin;
  bool reread = false;
  auto next = [&](std::int64_t i) {
    if (reread) {
      if (PySequence_Fast_GET_SIZE(object) != length) changed();
      items = PySequence_Fast_ITEMS(object) + src_begin;
      reread = false;
    }
    std::int64_t value;
    if (compact_int(items[i], &value)) return value;
    reread = true;
    return unbox_general(items[i], field.name, row, src_begin + i);
  };
  const std::int64_t lo = fastpad::scalar_min(type);
  const std::int64_t hi = fastpad::scalar_max(type);
  std::int64_t bad_value = 0;
  std::int64_t written = count;
  switch (type) {
    case Scalar::Int64:
      written = fastpad::write_values(reinterpret_cast<std::int64_t*>(destination), count, lo, hi,
                                      next, &bad_value);
      break;
    case Scalar::Int32:
      written = fastpad::write_values(reinterpret_cast<std::int32_t*>(destination), count, lo, hi,
                                      next, &bad_value);
      break;
    default: {
      const fastpad::Column window{destination, type, 1, count};
      for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t value = next(i);
        if (!fastpad::store_value(window, 0, i, value)) {
          bad_value = value;
          written = i;
          break;
        }
      }
    }
  }
  if (written != count) {
    fail(ErrorKind::Overflow, fastpad::overflow_message(field.name.c_str(), row, bad_value, type));
  }
}

// pack_ragged(fields, outputs, pad_values, lengths, meta, width, keep_limit, pad_left,
//             truncate_left) -> flat size
// For every field, writes each row's kept tokens and its pad cell into that field's 1-D output
// (flat size elements, range-checked like pack); writes base (rows entries) then bound (rows
// entries) into `meta`, an int32 or int64 array of 2 * rows elements. `lengths` come from
// measure() on the same fields.
std::int64_t pack_ragged(const py::list& specs, const py::list& outputs,
                         const py::sequence& pad_value_list,
                         const py::array_t<std::int64_t, 0>& lengths_array, const py::object& meta,
                         std::int64_t width, const py::int_& keep_limit_arg, bool pad_left,
                         bool truncate_left) {
  bool keep_overflow = false;
  std::int64_t keep_limit = saturating_int(keep_limit_arg, &keep_overflow);
  if (keep_overflow && keep_limit < 0) keep_limit = -1;
  const std::size_t count = specs.size();
  if (outputs.size() != count || pad_value_list.size() != count) {
    fail(ErrorKind::Value, "fastpad: fields, outputs and pad_values must have the same length");
  }
  IntVector lengths;
  if (!borrow_int_vector(lengths_array.ptr(), "lengths", &lengths) || lengths.type != Scalar::Int64) {
    fail(ErrorKind::Type, "fastpad: lengths must be a 1-D int64 array");
  }
  const auto* row_lengths = static_cast<const std::int64_t*>(lengths.data);
  const std::int64_t rows = lengths.size;
  const fastpad::Geometry geometry{width, keep_limit, pad_left, truncate_left};
  std::vector<std::int64_t> token_start(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> base(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> bound(static_cast<std::size_t>(rows));
  const std::int64_t flat = fastpad::ragged_layout(row_lengths, rows, geometry, token_start.data(),
                                                   base.data(), bound.data());

  Buffer meta_buffer;
  const std::pair<char*, Scalar> meta_view =
      borrow_flat_output(meta.ptr(), &meta_buffer, "the row layout", 2 * rows);
  const Scalar meta_type = meta_view.second;
  if (meta_type != Scalar::Int32 && meta_type != Scalar::Int64) {
    fail(ErrorKind::Type, "fastpad: the row layout must be int32 or int64");
  }
  const fastpad::Column meta_column{meta_view.first, meta_type, 2, rows};
  for (std::int64_t row = 0; row < rows; ++row) {
    if (!fastpad::store_value(meta_column, 0, row, base[row]) ||
        !fastpad::store_value(meta_column, 1, row, bound[row])) {
      fail(ErrorKind::Overflow, "fastpad: the ragged layout of row " + std::to_string(row) +
                                    " does not fit " + fastpad::scalar_name(meta_type));
    }
  }

  for (std::size_t index = 0; index < count; ++index) {
    Field field;
    parse_field(specs[index], &field);
    if (field_rows(field) != rows) {
      fail(ErrorKind::Value, "fastpad: field '" + field.name + "' does not match lengths");
    }
    py::object pad_object = pad_value_list[index];
    if (!PyLong_Check(pad_object.ptr()) || PyBool_Check(pad_object.ptr())) {
      fail(ErrorKind::Type, "fastpad: pad values must be ints, got a " + type_name(pad_object.ptr()));
    }
    bool pad_overflow = false;
    const std::int64_t pad_value =
        saturating_int(py::reinterpret_borrow<py::int_>(pad_object), &pad_overflow);
    Buffer out_buffer;
    const std::pair<char*, Scalar> out_view =
        borrow_flat_output(py::object(outputs[index]).ptr(), &out_buffer, "'" + field.name + "'", flat);
    char* const data = out_view.first;
    const Scalar type = out_view.second;
    if (pad_overflow || !fastpad::value_fits(pad_value, type)) {
      fail(ErrorKind::Overflow, "fastpad: pad value " + py::str(pad_object).cast<std::string>() +
                                    " for '" + field.name + "' does not fit " +
                                    fastpad::scalar_name(type));
    }
    const std::size_t item = fastpad::scalar_size(type);
    const fastpad::Column pads{data, type, 1, flat};
    for (std::int64_t row = 0; row < rows; ++row) fastpad::store_value(pads, 0, bound[row], pad_value);
    // A window of width 0 at the row's first kept token: write_row places the row at column 0
    // of row `row` (named in errors) and writes nothing past its kept tokens.
    auto window = [&](std::int64_t row) {
      return fastpad::Column{data + token_start[row] * static_cast<std::int64_t>(item), type, rows, 0};
    };
    auto kept_geometry = [&](std::int64_t row) {
      return fastpad::Geometry{fastpad::place(geometry, row_lengths[row]).count, keep_limit, false,
                               truncate_left};
    };
    if (field.ragged) {
      // measure() validated these offsets on the same object; re-checked since a mismatch would
      // read past the values. Offsets start at 0, so row r starts at the sum of earlier lengths.
      std::vector<std::int64_t> check(static_cast<std::size_t>(rows));
      fastpad::ragged_lengths(field.view, check.data(), field.name.c_str());
      const std::size_t source_item = fastpad::scalar_size(field.view.value_type);
      std::int64_t source_start = 0;
      for (std::int64_t row = 0; row < rows; ++row) {
        if (check[row] != row_lengths[row]) {
          fail(ErrorKind::Value, "fastpad: offsets of '" + field.name + "' do not match lengths");
        }
        fastpad::write_row(window(row), kept_geometry(row), row,
                           static_cast<const char*>(field.view.values) +
                               source_start * static_cast<std::int64_t>(source_item),
                           field.view.value_type, row_lengths[row], 0, field.name.c_str());
        source_start += row_lengths[row];
      }
      continue;
    }
    PyObject* list = field.rows.ptr();
    for (std::int64_t row = 0; row < rows; ++row) {
      if (PySequence_Fast_GET_SIZE(list) != rows) {
        fail(ErrorKind::Value, "fastpad: the rows of '" + field.name + "' changed while being packed");
      }
      py::object held = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(list)[row]);
      PyObject* object = held.ptr();
      const fastpad::Placement placement = fastpad::place(geometry, row_lengths[row]);
      if (PyList_Check(object) || PyTuple_Check(object)) {
        write_list_row_flat(object, field, row, row_lengths[row], placement.src_begin,
                            placement.count, data + token_start[row] * static_cast<std::int64_t>(item),
                            type);
        continue;
      }
      IntVector vector;
      py::object converted;
      if (!borrow_int_vector(object, row_role(field.name, row), &vector)) {
        converted = as_array_or_none(object);
        if (converted.is_none() ||
            !borrow_int_vector(converted.ptr(), row_role(field.name, row), &vector)) {
          bad_row(field.name, row, object);
        }
      }
      if (vector.size != row_lengths[row]) {
        fail(ErrorKind::Value, "fastpad: " + row_role(field.name, row) +
                                   " changed length while it was being packed");
      }
      fastpad::write_row(window(row), kept_geometry(row), row, vector.data, vector.type,
                         vector.size, 0, field.name.c_str());
    }
  }
  return flat;
}

// ---- Output blocks from the process-wide cache (buffer_cache.hpp, issue 12) ----

constexpr const char* kBlockCapsuleName = "fastpad.block";
// tracemalloc domain of the blocks handed out: numpy's (NPY_TRACE_DOMAIN), so cached outputs are
// traced like the np.empty arrays they replace (a no-op while tracemalloc is not tracing).
constexpr unsigned int kTraceDomain = 389047;

// PyTraceMalloc_Track / _Untrack, looked up at run time: before 3.13, Include/tracemalloc.h
// declares them without extern "C", so C++ code cannot link them by name. Null where not found
// (then blocks are simply not traced).
struct TraceMalloc {
  using Track = int (*)(unsigned int, std::uintptr_t, std::size_t);
  using Untrack = int (*)(unsigned int, std::uintptr_t);
  Track track = nullptr;
  Untrack untrack = nullptr;
};

const TraceMalloc& trace_malloc() {
  static const TraceMalloc functions = [] {
    TraceMalloc found;
#if !defined(_WIN32)
    auto track = reinterpret_cast<TraceMalloc::Track>(dlsym(RTLD_DEFAULT, "PyTraceMalloc_Track"));
    auto untrack =
        reinterpret_cast<TraceMalloc::Untrack>(dlsym(RTLD_DEFAULT, "PyTraceMalloc_Untrack"));
    if (track != nullptr && untrack != nullptr) {
      found.track = track;
      found.untrack = untrack;
    }
#endif
    return found;
  }();
  return functions;
}

// Destructor of the capsule that owns a cached block: runs when the last array, view or tensor
// sharing the block has died (numpy keeps the capsule as the arrays' base; torch.from_numpy keeps
// the array), so the block is never reused while anything can still reach it.
void release_block_capsule(PyObject* capsule) {
  void* block = PyCapsule_GetPointer(capsule, kBlockCapsuleName);
  const auto capacity = reinterpret_cast<std::uintptr_t>(PyCapsule_GetContext(capsule));
  if (block == nullptr) {  // cannot happen (the name is ours); never raise from a destructor
    PyErr_Clear();
    return;
  }
  if (trace_malloc().untrack != nullptr) {
    trace_malloc().untrack(kTraceDomain, reinterpret_cast<std::uintptr_t>(block));
  }
  fastpad::BufferCache::global().release(block, static_cast<std::size_t>(capacity));
}

// cached_empty(rows, width, dtype): an uninitialized, writable, C-contiguous [rows, width] array of
// `dtype` in a cached block; its base is the capsule that gives the block back.
py::object cached_empty(py::ssize_t rows, py::ssize_t width, const py::dtype& dtype) {
  const auto itemsize = static_cast<py::ssize_t>(dtype.itemsize());
  if (rows < 0 || width < 0 || itemsize <= 0) {
    fail(ErrorKind::Value, "fastpad: bad output shape or dtype");
  }
  const py::ssize_t limit = std::numeric_limits<py::ssize_t>::max() / 2;
  if (width != 0 && (rows > limit / width || rows * width > limit / itemsize)) {
    fail(ErrorKind::Memory, "fastpad: a [" + std::to_string(rows) + ", " + std::to_string(width) +
                                "] output does not fit in memory");
  }
  std::size_t capacity = 0;
  const auto bytes = static_cast<std::size_t>(rows * width * itemsize);
  void* block = fastpad::BufferCache::global().acquire(bytes, &capacity);
  PyObject* capsule = PyCapsule_New(block, kBlockCapsuleName, release_block_capsule);
  if (capsule == nullptr) {
    fastpad::BufferCache::global().release(block, capacity);
    throw py::error_already_set();
  }
  // The capacity rides in the capsule's context; set before anything can drop the capsule.
  PyCapsule_SetContext(capsule, reinterpret_cast<void*>(static_cast<std::uintptr_t>(capacity)));
  py::object owner = py::reinterpret_steal<py::object>(capsule);
  if (trace_malloc().track != nullptr) {
    trace_malloc().track(kTraceDomain, reinterpret_cast<std::uintptr_t>(block), bytes);
  }
  auto& api = py::detail::npy_api::get();
  Py_intptr_t shape[2] = {rows, width};
  // PyArray_NewFromDescr steals the descriptor reference, PyArray_SetBaseObject the base's (both
  // also on failure).
  PyObject* array = api.PyArray_NewFromDescr_(api.PyArray_Type_, dtype.inc_ref().ptr(), 2, shape,
                                              nullptr, block,
                                              py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr);
  if (array == nullptr) throw py::error_already_set();
  py::object result = py::reinterpret_steal<py::object>(array);
  if (api.PyArray_SetBaseObject_(array, owner.release().ptr()) != 0) throw py::error_already_set();
  return result;
}

py::dict cache_stats() {
  const fastpad::BufferCacheStats stats = fastpad::BufferCache::global().stats();
  py::dict result;
  result["limit"] = stats.limit;
  result["idle_bytes"] = stats.idle_bytes;
  result["idle_blocks"] = stats.idle_blocks;
  result["live_bytes"] = stats.live_bytes;
  result["live_blocks"] = stats.live_blocks;
  result["hits"] = stats.hits;
  result["misses"] = stats.misses;
  result["evictions"] = stats.evictions;
  return result;
}

}  // namespace

PYBIND11_MODULE(_core, module) {
  module.doc() = "fastpad C++ core: ragged integer rows into padded buffers";

  py::register_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const Error& error) {
      PyObject* type = PyExc_ValueError;
      switch (error.kind()) {
        case ErrorKind::Type: type = PyExc_TypeError; break;
        case ErrorKind::Overflow: type = PyExc_OverflowError; break;
        case ErrorKind::Memory: type = PyExc_MemoryError; break;
        case ErrorKind::Value: break;
      }
      PyErr_SetString(type, error.what());
    }
  });

  module.def("measure", &measure, py::arg("fields"), py::arg("padding"), py::arg("max_length"),
             py::arg("truncate"), py::arg("multiple_of"),
             "Row lengths of a batch (fields must agree row by row) and the padded width.");
  module.def("pack", &pack, py::arg("fields"), py::arg("outputs"), py::arg("pad_values"),
             py::arg("lengths"), py::arg("mask"), py::arg("width"), py::arg("keep_limit"),
             py::arg("pad_left"), py::arg("truncate_left"), py::arg("threads") = 1,
             "Write every field and the attention mask into the given [rows, width] buffers.");
  module.def(
      "checked_cells",
      [](std::int64_t rows, std::int64_t width, int itemsize) {
        const Scalar type = itemsize == 1 ? Scalar::Int8 : itemsize == 2 ? Scalar::Int16 : itemsize == 4 ? Scalar::Int32 : Scalar::Int64;
        return fastpad::checked_cells(rows, width, type);
      },
      py::arg("rows"), py::arg("width"), py::arg("itemsize"),
      "rows * width, or MemoryError when a buffer of that many cells cannot exist.");
  module.def("hardware_threads", []() { return static_cast<int>(std::thread::hardware_concurrency()); },
             "Number of hardware threads (0 when unknown).");

  // Beyond padding (issue 5).
  module.def("concat_rows", &concat_rows, py::arg("name"), py::arg("rows"), py::arg("out"),
             "Write the rows of a list field back to back into a 1-D int64 array of their total length.");
  module.def("plan_batches", &plan_batches, py::arg("lengths"), py::arg("max_tokens"),
             py::arg("max_batch_size"), py::arg("multiple_of"), py::arg("sort"), py::arg("shuffle"),
             py::arg("seed"),
             "Token-budget batches: (order, bounds); batch b is order[bounds[b]:bounds[b + 1]].");

  // Ragged transfer (issue 15).
  module.def("pack_ragged", &pack_ragged, py::arg("fields"), py::arg("outputs"), py::arg("pad_values"),
             py::arg("lengths"), py::arg("meta"), py::arg("width"), py::arg("keep_limit"),
             py::arg("pad_left"), py::arg("truncate_left"),
             "Write each row's kept tokens and one pad cell into flat 1-D outputs, and the per-row "
             "layout (base, bound) into meta; returns the flat size.");

  // fastpad.patch_transformers (issue 10).
  module.def("exact_int_lists", &exact_int_lists, py::arg("rows"),
             "Whether rows (a list or tuple) holds only exact lists of exact Python ints.");

  // Output memory that stays warm between calls (issue 12).
  module.def("cached_empty", &cached_empty, py::arg("rows"), py::arg("width"), py::arg("dtype"),
             "Uninitialized [rows, width] array in a cached block, given back when the last array, "
             "view or tensor using it dies.");
  module.def(
      "set_cache_limit",
      [](std::size_t limit) { fastpad::BufferCache::global().set_limit(limit); }, py::arg("limit"),
      "Most idle bytes the output cache keeps (0: none); frees idle blocks beyond it.");
  module.def("clear_cache", []() { fastpad::BufferCache::global().clear(); },
             "Free every idle block of the output cache.");
  module.def("cache_stats", &cache_stats,
             "Counters of the output cache: limit, idle/live bytes and blocks, hits, misses, "
             "evictions.");
}
