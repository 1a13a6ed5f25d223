#include "python/convert.hpp"

#include <limits>
#include <string>

#include "message.hpp"

namespace fastpad::python {

bool scalar_from_format(const char* format, Py_ssize_t itemsize, Scalar* type) {
  if (format == nullptr) format = "B";
  if (*format == '@' || *format == '=' || *format == '<') ++format;
  if (format[0] == '\0' || format[1] != '\0') return false;
  const char code = format[0];
  if (code == '?') {
    *type = Scalar::Bool;
    return itemsize == 1;
  }
  const bool is_signed =
      code == 'b' || code == 'h' || code == 'i' || code == 'l' || code == 'q' || code == 'n';
  const bool is_unsigned =
      code == 'B' || code == 'H' || code == 'I' || code == 'L' || code == 'Q' || code == 'N';
  if (!is_signed && !is_unsigned) return false;
  switch (itemsize) {
    case 1: *type = is_signed ? Scalar::Int8 : Scalar::UInt8; return true;
    case 2: *type = is_signed ? Scalar::Int16 : Scalar::UInt16; return true;
    case 4: *type = is_signed ? Scalar::Int32 : Scalar::UInt32; return true;
    case 8: *type = is_signed ? Scalar::Int64 : Scalar::UInt64; return true;
    default: return false;
  }
}

bool byte_swapped(const char* format) {
  if (format == nullptr) return false;
  const char order = format[0];
  if (order != '<' && order != '>' && order != '!') return false;
  const bool little = PY_LITTLE_ENDIAN != 0;
  return order == '<' ? !little : little;
}

bool borrow_int_vector(PyObject* object, const std::string& role, IntVector* vector,
                       bool allow_bool) {
  if (!vector->buffer.acquire(object, PyBUF_RECORDS_RO)) return false;
  const Py_buffer& view = vector->buffer.view();
  if (view.ndim != 1) {
    Message message;
    message << "fastpad: " << role << " is a " << view.ndim
            << "-D array; expected a 1-D array of token ids (nesting too deep)";
    fail(ErrorKind::Value, message.str());
  }
  if (byte_swapped(view.format)) {
    // Integers in the other byte order ('>i4' on this little-endian machine): converted by the
    // caller (as_array_or_none makes a native copy), like a strided array.
    vector->buffer.release();
    return false;
  }
  if (!scalar_from_format(view.format, view.itemsize, &vector->type) ||
      (vector->type == Scalar::Bool && !allow_bool)) {
    Message message;
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

py::object as_array_or_none(PyObject* row) {
  if (PyObject_CheckBuffer(row) || PyObject_HasAttrString(row, "__array__") ||
      PyObject_HasAttrString(row, "__array_interface__")) {
    py::module_ numpy = py::module_::import("numpy");
    py::object array = numpy.attr("ascontiguousarray")(py::handle(row));
    py::object dtype = array.attr("dtype");
    if (!dtype.attr("isnative").cast<bool>()) {
      // The other byte order: the same values in this machine's order (one copy).
      array = array.attr("astype")(dtype.attr("newbyteorder")("="));
    }
    return array;
  }
  return py::none();
}

std::string row_role(const std::string& field, Py_ssize_t row) {
  return "row " + std::to_string(row) + " of '" + field + "'";
}

void bad_row(const std::string& field, Py_ssize_t row, PyObject* object) {
  Message message;
  message << "fastpad: " << row_role(field, row) << " is a " << type_name(object)
          << "; expected a list/tuple of ints or a 1-D integer array";
  fail(ErrorKind::Type, message.str());
}

void borrow_array_row(PyObject* object, const std::string& field, Py_ssize_t row, IntVector* vector,
                      py::object* converted) {
  if (borrow_int_vector(object, row_role(field, row), vector)) return;
  *converted = as_array_or_none(object);
  if (converted->is_none() || !borrow_int_vector(converted->ptr(), row_role(field, row), vector)) {
    bad_row(field, row, object);
  }
}

namespace {

// The decimal text of a Python int for a message; long ones are shortened, and one Python refuses
// to print (beyond sys.get_int_max_str_digits()) is described by its size.
std::string int_text(PyObject* item) {
  std::string text;
  PyObject* string = PyObject_Str(item);
  if (string != nullptr) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(string, &size);
    if (utf8 != nullptr) text.assign(utf8, static_cast<std::size_t>(size));
    Py_DECREF(string);
  }
  if (text.empty()) {
    PyErr_Clear();
    return "(an integer too long to print)";
  }
  constexpr std::size_t kShown = 40;
  if (text.size() > kShown) {
    const std::size_t digits = text.size();
    text = text.substr(0, kShown / 2) + "..." + text.substr(digits - kShown / 2) + " (" +
           std::to_string(digits) + " digits)";
  }
  return text;
}

}  // namespace

std::int64_t unbox_general(PyObject* item, const std::string& field, Py_ssize_t row,
                           Py_ssize_t column) {
  if (PyLong_CheckExact(item) || (PyLong_Check(item) && !PyBool_Check(item))) {
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
    if (overflow != 0) {
      Message message;
      message << "fastpad: " << row_role(field, row) << ": value " << int_text(item)
              << " at position " << column << " does not fit int64";
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
  Message message;
  message << "fastpad: " << row_role(field, row) << ": token at position " << column << " is ";
  if (is_sequence || PyObject_CheckBuffer(item)) {
    message << "a " << type_name(item)
            << "; rows must be flat sequences of ints (nesting too deep)";
  } else {
    message << "a " << type_name(item) << " (" << py::repr(item).cast<std::string>()
            << "); token ids must be ints";
  }
  fail(ErrorKind::Type, message.str());
}

void parse_field(const py::handle& spec, Field* field) {
  // The spec is checked before any cast: a failed pybind11 cast would surface as RuntimeError.
  const Py_ssize_t size = PyTuple_Check(spec.ptr()) ? PyTuple_GET_SIZE(spec.ptr()) : -1;
  if (size < 3 || size > 4 || !PyUnicode_Check(PyTuple_GET_ITEM(spec.ptr(), 0)) ||
      !PyLong_CheckExact(PyTuple_GET_ITEM(spec.ptr(), 1))) {
    fail(ErrorKind::Type,
         "fastpad: a field spec must be (name, 0, rows) or (name, 1, values, "
         "offsets), got a " +
             type_name(spec.ptr()));
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
    fail(ErrorKind::Type, "fastpad: values of '" + field->name +
                              "' must be a contiguous 1-D integer array in native byte order");
  }
  if (!borrow_int_vector(item[3].ptr(), "offsets of '" + field->name + "'", &field->offsets)) {
    fail(ErrorKind::Type, "fastpad: offsets of '" + field->name +
                              "' must be a contiguous 1-D integer array in native byte order");
  }
  if (field->offsets.size < 1) {
    fail(ErrorKind::Value,
         "fastpad: offsets of '" + field->name + "' must hold at least one entry (0)");
  }
  if (field->offsets.type != Scalar::Int32 && field->offsets.type != Scalar::Int64 &&
      field->offsets.type != Scalar::UInt32 && field->offsets.type != Scalar::UInt64) {
    fail(ErrorKind::Type, "fastpad: offsets of '" + field->name + "' must be int32 or int64");
  }
  field->view = RaggedView{field->values.data,  field->values.type,  field->values.size,
                           field->offsets.data, field->offsets.type, field->offsets.size - 1};
}

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
    py::object converted;
    borrow_array_row(object, field.name, row, &vector, &converted);
    lengths[row] = vector.size;
  }
}

std::int64_t saturating_int(const py::int_& value, bool* overflow) {
  int sign = 0;
  const long long result = PyLong_AsLongLongAndOverflow(value.ptr(), &sign);
  if (result == -1 && PyErr_Occurred()) throw py::error_already_set();
  *overflow = sign != 0;
  if (sign > 0) return std::numeric_limits<std::int64_t>::max();
  if (sign < 0) return std::numeric_limits<std::int64_t>::min();
  return result;
}

std::int64_t keep_limit(const py::int_& value) {
  bool overflow = false;
  const std::int64_t limit = saturating_int(value, &overflow);
  return overflow && limit < 0 ? -1 : limit;
}

void check_counts(const py::list& specs, const py::list& outputs, const py::sequence& pad_values) {
  if (outputs.size() != specs.size() || pad_values.size() != specs.size()) {
    fail(ErrorKind::Value, "fastpad: fields, outputs and pad_values must have the same length");
  }
}

const std::int64_t* borrow_lengths(PyObject* array, IntVector* vector) {
  if (!borrow_int_vector(array, "lengths", vector) || vector->type != Scalar::Int64) {
    fail(ErrorKind::Type, "fastpad: lengths must be a 1-D int64 array");
  }
  return static_cast<const std::int64_t*>(vector->data);
}

namespace {

// Borrows `object`'s buffer (writeable, with its format) into *buffer and returns its element
// type; `role` names the output in errors ("'input_ids'", "the row layout").
Scalar acquire_output(PyObject* object, Buffer* buffer, const std::string& role) {
  if (!buffer->acquire(object, PyBUF_RECORDS)) {
    fail(ErrorKind::Type, "fastpad: the output for " + role + " must be a writeable array");
  }
  const Py_buffer& view = buffer->view();
  Scalar type;
  if (!scalar_from_format(view.format, view.itemsize, &type)) {
    fail(ErrorKind::Type,
         "fastpad: the output for " + role + " must have an integer or bool dtype");
  }
  return type;
}

}  // namespace

Column borrow_output(PyObject* object, Buffer* buffer, const std::string& field, Py_ssize_t rows,
                     std::int64_t width) {
  const Scalar type = acquire_output(object, buffer, "'" + field + "'");
  const Py_buffer& view = buffer->view();
  if (view.ndim != 2 || view.shape[0] != rows || view.shape[1] != width) {
    Message message;
    message << "fastpad: the output for '" << field << "' must have shape [" << rows << ", "
            << width << "]";
    fail(ErrorKind::Value, message.str());
  }
  if (!PyBuffer_IsContiguous(&view, 'C')) {
    fail(ErrorKind::Value, "fastpad: the output for '" + field + "' must be C-contiguous");
  }
  return Column{view.buf, type, rows, width};
}

std::pair<char*, Scalar> borrow_flat_output(PyObject* object, Buffer* buffer,
                                            const std::string& role, std::int64_t size) {
  const Scalar type = acquire_output(object, buffer, role);
  const Py_buffer& view = buffer->view();
  if (view.ndim != 1 || view.shape[0] != size || !PyBuffer_IsContiguous(&view, 'C')) {
    fail(ErrorKind::Value, "fastpad: the output for " + role +
                               " must be a contiguous 1-D array of " + std::to_string(size) +
                               " elements");
  }
  return {static_cast<char*>(view.buf), type};
}

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
    fail(ErrorKind::Value, std::string(operation) +
                               ": the output must be a contiguous 1-D array of " +
                               std::to_string(size) + " elements");
  }
  return static_cast<std::int64_t*>(view.buf);
}

}  // namespace fastpad::python
