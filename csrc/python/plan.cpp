// Bindings beyond padding (issue 5): flat concatenation for fastpad.flatten / fastpad.windows and
// token-budget batch planning for fastpad.plan_batches. The core logic lives in plan.hpp.
//
// Python.h (through convert.hpp) comes before any standard header, as the C API asks; the comment
// line after it keeps clang-format's include sorting from moving standard headers above it.
#include "python/convert.hpp"
#include "python/functions.hpp"
// (standard and core headers after Python.h)
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "plan.hpp"

namespace fastpad::python {

// Writes the rows of a list field (lists/tuples of ints or 1-D integer arrays) back to back into
// the int64 array `out`, whose size must be the total length.
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

  // Array rows are borrowed now and copied once every list row is unboxed: piece i is
  // vectors[i]'s buffer, which belongs to row pending_rows[i].
  std::vector<IntVector> vectors;
  std::vector<ConcatPiece> pieces;
  std::vector<Py_ssize_t> pending_rows;
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
      IntVector vector;
      py::object copy;
      borrow_array_row(object, name, row, &vector, &copy);
      if (copy) converted.push_back(std::move(copy));
      if (vector.size != length) changed(row);
      pieces.push_back(ConcatPiece{vector.data, vector.type, vector.size, cursor});
      pending_rows.push_back(row);
      vectors.push_back(std::move(vector));
    }
    cursor += length;
  }
  std::size_t bad_piece = 0;
  {
    // Safe without the GIL: only the buffers borrowed by `vectors` (kept exported by their Buffer
    // and alive by `rows` / `converted`) and `out_buffer` are touched; no Python object is.
    py::gil_scoped_release release;
    bad_piece = concat_pieces(pieces.data(), pieces.size(), destination);
  }
  if (bad_piece != pieces.size()) {
    fail(ErrorKind::Overflow, "fastpad: " + row_role(name, pending_rows[bad_piece]) +
                                  " holds a uint64 value that does not fit int64");
  }
}

// Batch b is order[bounds[b]:bounds[b + 1]].
py::tuple plan_batches(const py::object& lengths_object, std::int64_t max_tokens,
                       std::int64_t max_batch_size, std::int64_t multiple_of, bool sort,
                       bool shuffle, std::uint64_t seed) {
  IntVector lengths;
  if (!borrow_int_vector(lengths_object.ptr(), "lengths", &lengths) ||
      lengths.type != Scalar::Int64) {
    fail(ErrorKind::Type, "plan_batches: lengths must be a contiguous 1-D int64 array");
  }
  PlanOptions options;
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

}  // namespace fastpad::python
