// Bindings for fastpad.patch_transformers (issue 10): a type check with no core part.
//
// Python.h (through convert.hpp) comes before any standard header, as the C API asks.
#include "python/convert.hpp"
#include "python/functions.hpp"

namespace fastpad::python {

// Whether `rows` (a list or tuple) holds only exact `list`s whose items are all exact Python
// `int`s: no subclass, no bool, no numpy scalar. transformers turns such rows into int64 tensors
// whatever else they hold, while other token types change its inferred dtype or fail;
// fastpad.patch_transformers takes its fast path only for rows that pass. Type checks only: no
// Python code runs, so the rows cannot change while they are read.
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

}  // namespace fastpad::python
