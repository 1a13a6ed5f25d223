// Bindings of the ragged transfer (issue 15): only the kept tokens of every row, plus one pad cell
// per row, for fastpad.Packer(ragged_transfer=...). The layout is ragged.hpp's; nothing padded is
// written.
//
// Python.h (through convert.hpp) comes before any standard header, as the C API asks; the comment
// line after it keeps clang-format's include sorting from moving standard headers above it.
#include "python/convert.hpp"
#include "python/functions.hpp"
// (standard and core headers after Python.h)
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pack.hpp"
#include "ragged.hpp"

namespace fastpad::python {

// For every field, writes each row's kept tokens and its pad cell into that field's 1-D output
// (flat size elements, range-checked like pack); writes base (rows entries) then bound (rows
// entries) into `meta`, an int32 or int64 array of 2 * rows elements. `lengths` come from
// measure() on the same fields. Returns the flat size.
std::int64_t pack_ragged(const py::list& specs, const py::list& outputs,
                         const py::sequence& pad_value_list,
                         const py::array_t<std::int64_t, 0>& lengths_array, const py::object& meta,
                         std::int64_t width, const py::int_& keep_limit_arg, bool pad_left,
                         bool truncate_left) {
  const std::int64_t keep_limit = python::keep_limit(keep_limit_arg);
  check_counts(specs, outputs, pad_value_list);
  const std::size_t count = specs.size();
  IntVector lengths;
  const std::int64_t* row_lengths = borrow_lengths(lengths_array.ptr(), &lengths);
  const std::int64_t rows = lengths.size;
  const Geometry geometry{width, keep_limit, pad_left, truncate_left};
  std::vector<std::int64_t> token_start(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> base(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> bound(static_cast<std::size_t>(rows));
  const std::int64_t flat =
      ragged_layout(row_lengths, rows, geometry, token_start.data(), base.data(), bound.data());

  Buffer meta_buffer;
  const std::pair<char*, Scalar> meta_view =
      borrow_flat_output(meta.ptr(), &meta_buffer, "the row layout", 2 * rows);
  const Scalar meta_type = meta_view.second;
  if (meta_type != Scalar::Int32 && meta_type != Scalar::Int64) {
    fail(ErrorKind::Type, "fastpad: the row layout must be int32 or int64");
  }
  const Column meta_column{meta_view.first, meta_type, 2, rows};
  for (std::int64_t row = 0; row < rows; ++row) {
    if (!store_value(meta_column, 0, row, base[row]) ||
        !store_value(meta_column, 1, row, bound[row])) {
      fail(ErrorKind::Overflow, "fastpad: the ragged layout of row " + std::to_string(row) +
                                    " does not fit " + scalar_name(meta_type));
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
      fail(ErrorKind::Type,
           "fastpad: pad values must be ints, got a " + type_name(pad_object.ptr()));
    }
    bool pad_overflow = false;
    const std::int64_t pad_value =
        saturating_int(py::reinterpret_borrow<py::int_>(pad_object), &pad_overflow);
    Buffer out_buffer;
    const std::pair<char*, Scalar> out_view = borrow_flat_output(
        py::object(outputs[index]).ptr(), &out_buffer, "'" + field.name + "'", flat);
    char* const data = out_view.first;
    const Scalar type = out_view.second;
    if (pad_overflow || !value_fits(pad_value, type)) {
      fail(ErrorKind::Overflow, "fastpad: pad value " + py::str(pad_object).cast<std::string>() +
                                    " for '" + field.name + "' does not fit " + scalar_name(type));
    }
    const auto item = static_cast<std::int64_t>(scalar_size(type));
    const Column pads{data, type, 1, flat};
    for (std::int64_t row = 0; row < rows; ++row) store_value(pads, 0, bound[row], pad_value);
    // A window of width 0 at the row's first kept token: write_row places the row at column 0
    // of row `row` (named in errors) and writes nothing past its kept tokens.
    auto window = [&](std::int64_t row) {
      return Column{data + token_start[row] * item, type, rows, 0};
    };
    auto kept_geometry = [&](std::int64_t row) {
      return Geometry{place(geometry, row_lengths[row]).count, keep_limit, false, truncate_left};
    };
    if (field.ragged) {
      // measure() validated these offsets on the same object; re-checked since a mismatch would
      // read past the values. Offsets start at 0, so row r starts at the sum of earlier lengths.
      std::vector<std::int64_t> check(static_cast<std::size_t>(rows));
      ragged_lengths(field.view, check.data(), field.name.c_str());
      const auto source_item = static_cast<std::int64_t>(scalar_size(field.view.value_type));
      std::int64_t source_start = 0;
      for (std::int64_t row = 0; row < rows; ++row) {
        if (check[row] != row_lengths[row]) {
          fail(ErrorKind::Value, "fastpad: offsets of '" + field.name + "' do not match lengths");
        }
        write_row(window(row), kept_geometry(row), row,
                  static_cast<const char*>(field.view.values) + source_start * source_item,
                  field.view.value_type, row_lengths[row], 0, field.name.c_str());
        source_start += row_lengths[row];
      }
      continue;
    }
    PyObject* list = field.rows.ptr();
    for (std::int64_t row = 0; row < rows; ++row) {
      if (PySequence_Fast_GET_SIZE(list) != rows) {
        fail(ErrorKind::Value,
             "fastpad: the rows of '" + field.name + "' changed while being packed");
      }
      py::object held = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(list)[row]);
      PyObject* object = held.ptr();
      const Placement placement = place(geometry, row_lengths[row]);
      if (PyList_Check(object) || PyTuple_Check(object)) {
        write_list_tokens(object, field, row, row_lengths[row], placement.src_begin,
                          placement.count, data + token_start[row] * item, type);
        continue;
      }
      IntVector vector;
      py::object converted;
      borrow_array_row(object, field.name, row, &vector, &converted);
      if (vector.size != row_lengths[row]) {
        fail(ErrorKind::Value,
             "fastpad: " + row_role(field.name, row) + " changed length while it was being packed");
      }
      write_row(window(row), kept_geometry(row), row, vector.data, vector.type, vector.size, 0,
                field.name.c_str());
    }
  }
  return flat;
}

}  // namespace fastpad::python
