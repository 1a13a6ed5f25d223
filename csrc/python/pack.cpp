// Bindings of padding (fastpad.pad and the front ends built on it): measure, pack, checked_cells.
//
// Holding the GIL, pack unboxes Python lists straight into the caller's output buffers; the work
// over buffers alone (ragged sources, array rows, the mask) runs with the GIL released, split over
// threads by the core (parallel.hpp).
//
// Python.h (through convert.hpp) comes before any standard header, as the C API asks; the comment
// line after it keeps clang-format's include sorting from moving standard headers above it.
#include "python/convert.hpp"
#include "python/functions.hpp"
// (standard and core headers after Python.h)
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "message.hpp"
#include "pack.hpp"
#include "parallel.hpp"

namespace fastpad::python {
namespace {

Padding padding_from(int code) {
  switch (code) {
    case 0: return Padding::Longest;
    case 1: return Padding::MaxLength;
    case 2: return Padding::DoNotPad;
    default: fail(ErrorKind::Value, "fastpad: unknown padding strategy");
  }
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

void write_list_field(const Field& field, const Column& out, const Geometry& geometry,
                      std::int64_t pad_value, std::size_t column, const std::int64_t* row_lengths,
                      std::vector<IntVector>* borrowed, std::vector<ArrayRow>* array_rows) {
  if (!value_fits(pad_value, out.type)) {
    Message message;
    message << "fastpad: pad value " << pad_value << " for '" << field.name << "' does not fit "
            << scalar_name(out.type);
    fail(ErrorKind::Overflow, message.str());
  }
  PyObject* rows = field.rows.ptr();
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
  const auto item = static_cast<std::int64_t>(scalar_size(out.type));
  // Unboxing a non-int token runs its __index__, arbitrary Python code that may resize the lists
  // being read: every length is checked against the measured one before writing, item arrays are
  // re-read after each such token (write_list_tokens), and the row is held by a strong reference.
  auto changed = [&](Py_ssize_t row) {
    fail(ErrorKind::Value,
         "fastpad: " + row_role(field.name, row) + " changed length while it was being packed");
  };
  for (Py_ssize_t row = 0; row < count; ++row) {
    if (PySequence_Fast_GET_SIZE(rows) != count) changed(row);
    py::object held = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(rows)[row]);
    PyObject* object = held.ptr();
    if (PyList_Check(object) || PyTuple_Check(object)) {
      const Py_ssize_t length = PySequence_Fast_GET_SIZE(object);
      if (length != row_lengths[row]) changed(row);
      const Placement placement = place(geometry, length);
      write_row_padding(out, geometry, row, length, pad_value);
      char* destination =
          static_cast<char*>(out.data) + (row * out.width + placement.dst_begin) * item;
      write_list_tokens(object, field, row, length, placement.src_begin, placement.count,
                        destination, out.type);
      continue;
    }
    IntVector vector;
    py::object converted;
    borrow_array_row(object, field.name, row, &vector, &converted);
    if (vector.size != row_lengths[row]) changed(row);
    if (converted) {
      // Converted rows are written now: their temporary array dies with this iteration.
      write_row(out, geometry, row, vector.data, vector.type, vector.size, pad_value,
                field.name.c_str());
      continue;
    }
    array_rows->push_back(ArrayRow{column, row, vector.data, vector.type, vector.size, pad_value,
                                   field.name.c_str()});
    borrowed->push_back(std::move(vector));
  }
}

}  // namespace

// Row lengths of the batch (every field must agree row by row) and the output width.
py::tuple measure(const py::list& specs, int padding, const py::int_& max_length_arg, bool truncate,
                  const py::int_& multiple_of_arg) {
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
      Message message;
      message << "fastpad: field '" << field.name << "' has " << field_rows(field) << " rows but '"
              << fields[0]->name << "' has " << rows;
      fail(ErrorKind::Value, message.str());
    }
    std::int64_t* target = first;
    if (index > 0) {
      other.assign(static_cast<std::size_t>(rows), 0);
      target = other.data();
    }
    if (field.ragged) {
      ragged_lengths(field.view, target, field.name.c_str());
    } else {
      list_lengths(field, target);
    }
    if (index > 0) {
      for (Py_ssize_t row = 0; row < rows; ++row) {
        if (other[row] != first[row]) {
          Message message;
          message << "fastpad: row " << row << " has " << first[row] << " tokens in '"
                  << fields[0]->name << "' but " << other[row] << " in '" << field.name
                  << "'; every field of a row must have the same length";
          fail(ErrorKind::Value, message.str());
        }
      }
    }
  }
  PadOptions options;
  options.padding = padding_from(padding);
  options.max_length = max_length;
  options.truncate = truncate;
  options.multiple_of = multiple_of;
  const std::int64_t width = output_width(first, rows, options);
  if (huge_multiple && width > 0 && options.padding != Padding::DoNotPad) {
    Message message;
    message << "fastpad: rounding the width " << width << " up to a multiple of "
            << py::str(multiple_of_arg).cast<std::string>()
            << " exceeds int64; a batch that wide does not fit in memory";
    fail(ErrorKind::Memory, message.str());
  }
  return py::make_tuple(lengths, width);
}

// Writes every field and the mask into the caller's buffers.
void pack(const py::list& specs, const py::list& outputs, const py::sequence& pad_value_list,
          const py::array_t<std::int64_t, 0>& lengths_array, const py::object& mask,
          std::int64_t width, const py::int_& keep_limit_arg, bool pad_left, bool truncate_left,
          int threads) {
  const std::int64_t keep_limit = python::keep_limit(keep_limit_arg);
  check_counts(specs, outputs, pad_value_list);
  const std::size_t count = specs.size();
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
      fail(ErrorKind::Overflow,
           "fastpad: pad value " + py::str(value).cast<std::string>() + " does not fit int64");
    }
  }
  IntVector lengths;
  const std::int64_t* row_lengths = borrow_lengths(lengths_array.ptr(), &lengths);
  const Py_ssize_t rows = static_cast<Py_ssize_t>(lengths.size);
  Geometry geometry{width, keep_limit, pad_left, truncate_left};
  // Placement assumes every kept row fits the width; measure() guarantees it, re-checked here
  // because these buffers come from the caller.
  for (Py_ssize_t row = 0; row < rows; ++row) {
    if (row_lengths[row] < 0 || place(geometry, row_lengths[row]).count > width) {
      fail(ErrorKind::Value, "fastpad: row " + std::to_string(row) + " does not fit the width");
    }
  }

  std::vector<std::unique_ptr<Field>> fields;
  std::vector<Buffer> output_buffers(count);
  std::vector<Column> columns;
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
  Column mask_column{nullptr, Scalar::Int64, 0, 0};
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
      ragged_lengths(field.view, check.data(), field.name.c_str());
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
        write_ragged(columns[index], geometry, fields[index]->view, pad_values[index], row_begin,
                     row_end, fields[index]->name.c_str());
      }
    }
    if (mask_column.data != nullptr) {
      write_mask(mask_column, geometry, row_lengths, row_begin, row_end);
    }
  });
  for (const ArrayRow& row : array_rows) {
    write_row(columns[row.column], geometry, row.row, row.data, row.type, row.length, row.pad_value,
              row.field);
  }
}

// rows * width, or Error(Memory) when a buffer of that many cells of `itemsize` bytes cannot exist.
std::int64_t checked_cells(std::int64_t rows, std::int64_t width, int itemsize) {
  const Scalar type = itemsize == 1   ? Scalar::Int8
                      : itemsize == 2 ? Scalar::Int16
                      : itemsize == 4 ? Scalar::Int32
                                      : Scalar::Int64;
  return fastpad::checked_cells(rows, width, type);
}

}  // namespace fastpad::python
